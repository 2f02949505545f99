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
