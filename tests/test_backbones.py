"""The LLM backbone against a scripted OpenAI-compatible server: validation, retries, tokens, replay."""

from __future__ import annotations

import asyncio
import json

import pytest

from actors.diagnostician import Diagnostician
from scripted_llm import ScriptedLLM
from tests_helpers import card, diagnose

from ftdojo import backbones, config
from ftdojo.backbones import BackboneError, LLMBackbone
from ftdojo.config import BackboneConfig
from ftdojo.messages import (
    DataRecipe,
    Feedback,
    Finding,
    SourceMapping,
    TrainConfig,
)

CARD = card()
GOOD = json.dumps({
    "hypothesis": "use clean data",
    "recipe": DataRecipe(sources=[SourceMapping(source="s", prompt="{q}", answer="{a}")]).model_dump(),
    "train": TrainConfig(steps=42, lr=2e-4).model_dump(),
})


def _backbone(url: str, tmp_path, cache: str = "auto", retries: int = 2) -> LLMBackbone:
    cfg = BackboneConfig(kind="llm", model="scripted", base_url=url, max_retries=retries, cache=cache)  # type: ignore[arg-type]
    return LLMBackbone(cfg, cache_dir=tmp_path / "cache")


def test_valid_answer_becomes_a_plan_and_tokens_are_counted(tmp_path) -> None:
    with ScriptedLLM([f"Here is my plan:\n```json\n{GOOD}\n```"]) as srv:
        bb = _backbone(srv.url, tmp_path)
        p = asyncio.run(bb.propose(CARD, [], None, TrainConfig()))
        hyp, recipe, train = p.hypothesis, p.recipe, p.train
    assert hyp == "use clean data" and recipe.sources[0].source == "s" and train.steps == 42
    assert bb.usage().tokens == 120 and bb.usage().requests == 1 and bb.usage().retries == 0
    assert "FT-Agent's planner" in srv.requests[0]["messages"][0]["content"]


def test_garbage_is_retried_with_the_validation_error_fed_back(tmp_path) -> None:
    with ScriptedLLM(["I think you should train more.", '{"hypothesis": "x", "recipe": {"sources": "all"}}', GOOD]) as srv:
        bb = _backbone(srv.url, tmp_path)
        train = asyncio.run(bb.propose(CARD, [], None, TrainConfig())).train
    assert train.steps == 42 and bb.usage().retries == 2 and bb.usage().tokens == 360
    last = srv.requests[2]["messages"]
    assert last[-1]["role"] == "user" and "did not validate" in last[-1]["content"] and "recipe.sources" in last[-1]["content"]
    assert last[-2] == {"role": "assistant", "content": '{"hypothesis": "x", "recipe": {"sources": "all"}}'}


def test_persistent_garbage_raises_after_bounded_retries(tmp_path) -> None:
    with ScriptedLLM(["no"]) as srv:
        bb = _backbone(srv.url, tmp_path, retries=2)
        with pytest.raises(BackboneError, match="no valid PlanProposal from scripted after 3 attempts"):
            asyncio.run(bb.propose(CARD, [], None, TrainConfig()))
    assert len(srv.requests) == 3


def test_replay_cache_reproduces_offline_and_misses_loudly(tmp_path) -> None:
    with ScriptedLLM(["garbage", GOOD]) as srv:
        first = asyncio.run(_backbone(srv.url, tmp_path).propose(CARD, [], None, TrainConfig()))
    # the server is gone: replay answers from disk, identically, with no request
    replayer = _backbone("http://127.0.0.1:9/v1", tmp_path, cache="replay")
    assert asyncio.run(replayer.propose(CARD, [], None, TrainConfig())) == first
    assert replayer.usage().requests == 0 and replayer.usage().cache_hits == 2
    other = CARD.model_copy(update={"task_id": "other"})
    with pytest.raises(BackboneError, match="replay cache miss"):
        asyncio.run(replayer.propose(other, [], None, TrainConfig()))


def test_unreachable_endpoint_is_a_backbone_error(tmp_path) -> None:
    bb = _backbone("http://127.0.0.1:9/v1", tmp_path, cache="off")
    with pytest.raises(BackboneError, match="127.0.0.1:9"):
        asyncio.run(bb.structured("s", "u", backbones.Verdict))


def test_llm_diagnosis_extends_the_rule_findings(tmp_path) -> None:
    from tests_helpers import experiment

    verdict = json.dumps({"findings": [{"level": "data", "code": "llm_note", "message": "try fewer sources"}], "decision": "stop"})
    rules = Feedback(plan_id="it0", findings=[Finding(level="training", code="underfit", message="m")], decision="continue")
    with ScriptedLLM([verdict]) as srv:
        v = asyncio.run(_backbone(srv.url, tmp_path).diagnose(experiment(), rules))
        fb = diagnose(Diagnostician(backbone=_backbone(srv.url, tmp_path / "other")), experiment(), None, None)
    assert [f.code for f in v.findings] == ["llm_note"] and v.decision == "stop"  # the backbone's own verdict
    assert "rule_findings" in srv.requests[0]["messages"][1]["content"] and "underfit" in srv.requests[0]["messages"][1]["content"]
    codes = [f.code for f in fb.findings]  # the diagnostician: the rules' findings, then the LLM's, and its decision
    assert codes[0] == "underfit" and codes[-1] == "llm_note" and fb.decision == "stop"


def test_llm_agent_run_survives_garbage_and_keeps_going(math_domain, tmp_path) -> None:
    """End to end: a backbone that only answers garbage fails each iteration with the reason; the run finishes."""
    import yaml

    from actors.supervisor import RunSupervisor
    from ftdojo.messages import RunKey

    with ScriptedLLM(["Sure! Let's fine-tune."]) as srv:
        agent_yaml = tmp_path / "llm-agent.yaml"
        agent_yaml.write_text(yaml.safe_dump({
            "name": "llm-agent", "policy": "ft-agent",
            "backbone": {"kind": "llm", "model": "scripted", "base_url": srv.url, "max_retries": 1, "cache": "off"},
        }))
        prof = config.load_profile("tiny", ["budget.max_iterations=2"])
        key = RunKey(task="math-linear", agent="llm-agent", seed=0, profile="tiny", config_hash="0" * 16)
        rec = asyncio.run(RunSupervisor(key, config.load_agent(str(agent_yaml)), prof, str(tmp_path / "ws")).run())
    assert rec.status == "ok" and rec.fallback_to_base and rec.test is not None
    assert len(rec.experiments) == 4 and all(e.status == "failed" and e.plan is None for e in rec.experiments)
    assert "no valid PlanProposal" in rec.experiments[0].error
    assert set(rec.prompts) == {"planner", "diagnostician", "retry"} and all(len(h) == 16 for h in rec.prompts.values())
    assert rec.usage.llm_requests == 8 and rec.usage.llm_retries == 4 and rec.usage.llm_tokens == 960


def test_a_plan_that_sets_resources_is_refused_and_the_schema_does_not_offer_them(tmp_path) -> None:
    """Workers, GPUs and precision belong to the profile: an LLM plan that sets one does not validate
    (the error names the field and goes back to the model), and the schema it is shown has none of them."""
    greedy = json.loads(GOOD)
    greedy["train"] = {**greedy["train"], "num_workers": 8, "use_gpu": True, "precision": "bf16"}
    with ScriptedLLM([json.dumps(greedy), GOOD]) as srv:
        bb = _backbone(srv.url, tmp_path)
        train = asyncio.run(bb.propose(CARD, [], None, TrainConfig())).train
    system, retry = srv.requests[0]["messages"][0]["content"], srv.requests[1]["messages"][-1]["content"]
    schema = system.split("matching this schema:\n", 1)[1]
    assert not {"num_workers", "use_gpu", "precision", "gpus", "workers"} & set(json.loads(schema)["$defs"]["TrainConfig"]["properties"])
    assert "train.num_workers: Extra inputs are not permitted" in retry and bb.usage().retries == 1
    assert train.steps == 42 and "num_workers" not in TrainConfig.model_fields
