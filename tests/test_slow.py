"""Slow tier: the real bundled model (SmolLM2-135M-Instruct) and a real OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from ftdojo import config, evaluation, models, sft
from ftdojo.messages import PromptSpec, RunKey

pytestmark = pytest.mark.slow


def test_bundled_model_converts_once_and_generates() -> None:
    path = Path(models.resolve(models.BUNDLED))
    assert (path / "model.safetensors").exists() and (path / ".complete").exists()
    model, tok = models.load(models.BUNDLED)
    prompt = sft.render_prompt(tok, PromptSpec(), "Answer briefly.", "What is the capital of France?")
    out = evaluation.generate(model, tok, [prompt], max_new_tokens=12)[0]
    assert "Paris" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_model():
    path = models.resolve(models.BUNDLED)
    port = _free_port()
    exe = Path(sys.executable).parent / "transformers"
    proc = subprocess.Popen(
        [str(exe), "serve", path, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("transformers serve did not come up in 120 s")
        yield path, f"{url}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_llm_agent_against_transformers_serve_survives_garbage(served_model, math_domain, tmp_path) -> None:
    """The 135M model cannot produce a valid plan: retries happen, iterations fail with the reason, the run goes on."""
    from actors.supervisor import RunSupervisor

    model_path, url = served_model
    agent_yaml = tmp_path / "served.yaml"
    agent_yaml.write_text(yaml.safe_dump({
        "name": "ft-agent-served", "policy": "ft-agent",
        "backbone": {"kind": "llm", "model": model_path, "base_url": url, "max_retries": 1, "max_tokens": 96,
                     "cache": "record"},
    }))
    prof = config.load_profile("tiny", ["budget.max_iterations=1"])
    key = RunKey(task="math-linear", agent="ft-agent-served", seed=0, profile="tiny", config_hash="0" * 16)
    rec = asyncio.run(RunSupervisor(key, config.load_agent(str(agent_yaml)), prof, str(tmp_path / "ws")).run())
    assert rec.status == "ok" and rec.test is not None
    assert rec.usage.llm_requests >= 2 and rec.usage.llm_retries >= 1 and rec.usage.llm_tokens > 0
    failed = [e for e in rec.experiments if e.status == "failed"]
    assert failed and all("no valid PlanProposal" in e.error for e in failed)
    assert rec.fallback_to_base
    from ftdojo import transcripts  # what the served model was asked and answered, refusals included

    answered = [x for x in rec.transcript if not x.error]
    assert len(answered) == rec.usage.llm_requests and rec.transcript_sha256 == transcripts.digest(rec.transcript)
    assert all(x.model == model_path and x.request["messages"][0]["role"] == "system" for x in answered)


def test_ft_agent_llm_with_the_bundled_model_writing_its_data_finishes_with_a_complete_transcript(math_domain, tmp_path) -> None:
    """``ft-agent-llm`` whose planner is a scripted endpoint (the 135M model cannot plan) and whose data model is
    the bundled model behind ``transformers serve``, started by the run (``data_model.base_url: bundled``): the
    plan's synthesis step sends four rows, the served model writes for each, what it wrote is curated and trained
    on, every exchange is in the transcript, hashed into the record, and the server is gone when the run ends."""
    import json

    import psutil

    from actors.supervisor import RunSupervisor
    from ftdojo import transcripts
    from ftdojo.messages import DataRecipe, Synthesis, TrainConfig
    from scripted_llm import ScriptedLLM

    step = Synthesis(name="written", source="worked_solutions", produce="rationale", prompt="{problem}", answer="{final}", max_rows=4)
    plan = json.dumps({"hypothesis": "worked reasoning written by the data model",
                       "recipe": DataRecipe(sources=[], synthesis=[step], decontaminate=False).model_dump(),
                       "train": TrainConfig(steps=2, batch_size=2, lr=2e-3).model_dump()})
    verdict = json.dumps({"findings": [], "decision": "stop"})
    def serving_bundled() -> set[int]:  # other tests' servers of the same model (the module's served_model) may be up
        path = models.resolve(models.BUNDLED)
        return {p.pid for p in psutil.process_iter(["cmdline"]) if "serve" in (cmd := p.info["cmdline"] or []) and path in cmd}

    before = serving_bundled()
    llm = yaml.safe_load((config.CONFIG_DIR / "agents" / "ft-agent-llm.yaml").read_text())
    with ScriptedLLM(lambda body: verdict if "diagnostician" in body["messages"][0]["content"][:200] else plan) as srv:
        llm["backbone"] |= {"base_url": srv.url, "model": "scripted-planner", "cache": "off"}
        llm["data_model"] = {"kind": "llm", "model": "bundled", "base_url": "bundled", "max_tokens": 48, "cache": "off"}
        agent_yaml = tmp_path / "ft-agent-llm.yaml"
        agent_yaml.write_text(yaml.safe_dump(llm))
        prof = config.load_profile("tiny", ["budget.max_iterations=1"])
        key = RunKey(task="math-linear", agent="ft-agent-llm", seed=0, profile="tiny", config_hash="0" * 16)
        rec = asyncio.run(RunSupervisor(key, config.load_agent(str(agent_yaml)), prof, str(tmp_path / "ws")).run())
    assert rec.status == "ok" and rec.test is not None
    written = [x for x in rec.transcript if x.role == "data:written"]
    assert len(written) == 4 == rec.usage.data_requests and rec.usage.data_tokens > 0
    assert all(x.error is None and x.reply.strip() and x.model == models.resolve(models.BUNDLED) for x in written)
    assert "Correct answer:" in written[0].request["messages"][1]["content"] and written[0].request["max_tokens"] == 48
    roles = [x.role for x in rec.transcript]
    assert roles[0] == "planner" and roles[-1] == "diagnostician" and rec.transcript_sha256 == transcripts.digest(rec.transcript)
    [exp] = [e for e in rec.experiments if e.curated]
    got = exp.curated.sources["written"]
    assert got.rows == 4 and got.kept + sum(got.dropped.values()) == 4
    if got.kept:  # what the 135M model wrote is checked like any training data: trained, or rejected with the reason
        failed = [c for c in exp.validation.checks if c.status == "fail"]
        assert (exp.status == "ok" and exp.train is not None) or (exp.status == "rejected" and failed), exp.validation
    assert not serving_bundled() - before, "the data model's server outlived the run"
