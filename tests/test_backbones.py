"""The LLM backbone against a scripted OpenAI-compatible server: validation, retries, tokens, replay."""

from __future__ import annotations

import asyncio
import json

import pytest

from actors.diagnostician import Diagnostician
from scripted_llm import ScriptedLLM
from tests_helpers import card, diagnose

from ftdojo import agents, backbones, config
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
    proposals = 2 * 2 + agents.MAX_PROBES  # trained fits and probes each cap the proposals
    assert len(rec.experiments) == proposals and all(e.status == "failed" and e.plan is None for e in rec.experiments)
    assert "no valid PlanProposal" in rec.experiments[0].error
    assert set(rec.prompts) == {"planner", "diagnostician", "retry", "synthesis_rationale", "synthesis_answer", "synthesis_paraphrase"} and all(len(h) == 16 for h in rec.prompts.values())
    assert rec.usage.llm_requests == 2 * proposals and rec.usage.llm_retries == proposals and rec.usage.llm_tokens == 120 * 2 * proposals


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


def _cfg(url: str, model: str, **kw) -> BackboneConfig:
    return BackboneConfig(kind="llm", model=model, base_url=url, cache="off", **{"max_retries": 1, **kw})  # type: ignore[arg-type]


def test_a_reasoning_model_gets_requests_it_accepts_from_the_first_one(tmp_path) -> None:
    """GPT-5 and the o-series reject max_tokens and any temperature but 1: the family's defaults send
    max_completion_tokens (a cap that leaves room to reason), no temperature, the reasoning effort asked for,
    and the extra body fields; the server refuses nothing."""
    with ScriptedLLM([GOOD], reasoning=True) as srv:
        bb = LLMBackbone(_cfg(srv.url, "gpt-5-mini", reasoning_effort="low", extra_body={"service_tier": "flex"}), cache_dir=tmp_path)
        plan = asyncio.run(bb.propose(CARD, [], None, TrainConfig()))
    assert plan.train.steps == 42 and not srv.refused and not bb.adjusted
    sent = srv.requests[0]
    assert sent["max_completion_tokens"] == 16384 and "max_tokens" not in sent and "temperature" not in sent
    assert sent["reasoning_effort"] == "low" and sent["service_tier"] == "flex"
    assert backbones.llm.family("openai/o4-mini") == "reasoning" and backbones.llm.family("gpt-4o-mini") == "chat"


def test_an_unknown_model_that_refuses_like_a_reasoning_model_is_adapted_to_and_plans(tmp_path) -> None:
    """A model the family table does not know, behind an endpoint that answers like OpenAI's reasoning models:
    each refusal (max_tokens, then temperature) moves or drops that setting once, the request is sent again,
    and later requests go right the first time."""
    with ScriptedLLM([GOOD], reasoning=True) as srv:
        bb = LLMBackbone(_cfg(srv.url, "acme-thinker-2"), cache_dir=tmp_path)
        first = asyncio.run(bb.propose(CARD, [], None, TrainConfig()))
        second = asyncio.run(bb.propose(CARD.model_copy(update={"task_id": "t2"}), [], None, TrainConfig()))
    assert first.train.steps == second.train.steps == 42
    assert [("max_tokens" in r, "temperature" in r) for r in srv.refused] == [(True, True), (False, True)]
    assert len(srv.requests) == 2 and all(r["max_completion_tokens"] == 1024 and "temperature" not in r for r in srv.requests)
    assert [a.split(":")[0] for a in bb.adjusted] == ["max_tokens", "temperature"]


def test_a_setting_the_user_chose_is_not_dropped_silently(tmp_path) -> None:
    with ScriptedLLM([GOOD], reasoning=True) as srv:
        bb = LLMBackbone(_cfg(srv.url, "gpt-5", temperature=0.3), cache_dir=tmp_path)
        with pytest.raises(BackboneError, match=r"refused the request for gpt-5 \(backbone.temperature in the agent's config\): "
                                                r"Unsupported value: 'temperature' does not support 0.3"):
            asyncio.run(bb.propose(CARD, [], None, TrainConfig()))


def test_the_answer_schema_goes_as_response_format_and_an_endpoint_without_it_falls_back(tmp_path) -> None:
    from ftdojo.messages import PlanProposal

    with ScriptedLLM([GOOD]) as srv:
        asyncio.run(LLMBackbone(_cfg(srv.url, "gpt-4o-mini"), cache_dir=tmp_path).propose(CARD, [], None, TrainConfig()))
    fmt = srv.requests[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "PlanProposal"
    assert fmt["json_schema"]["schema"] == PlanProposal.model_json_schema() and srv.requests[0]["temperature"] == 0.0
    with ScriptedLLM([GOOD], schemas=False) as srv:
        bb = LLMBackbone(_cfg(srv.url, "local-model"), cache_dir=tmp_path)
        for task in ("a", "b"):
            assert asyncio.run(bb.propose(CARD.model_copy(update={"task_id": task}), [], None, TrainConfig())).train.steps == 42
    assert len(srv.refused) == 1 and all("response_format" not in r for r in srv.requests) and bb.adjusted[0].startswith("response_format")
    with ScriptedLLM([GOOD], schemas=False) as srv:
        asyncio.run(LLMBackbone(_cfg(srv.url, "m", structured_output="off"), cache_dir=tmp_path).propose(CARD, [], None, TrainConfig()))
    assert not srv.refused  # off: never sent


def test_a_reasoning_model_that_spends_its_cap_thinking_says_to_raise_it(tmp_path) -> None:
    with ScriptedLLM([""], reasoning=True, finish="length") as srv:
        bb = LLMBackbone(_cfg(srv.url, "o3", max_tokens=512), cache_dir=tmp_path)
        with pytest.raises(BackboneError, match=r"o3 used its whole completion cap \(max_completion_tokens=512\).*raise backbone.max_tokens"):
            asyncio.run(bb.propose(CARD, [], None, TrainConfig()))
    assert bb.usage().tokens == 120  # what it spent still counts


def test_ft_agent_plans_come_from_a_reasoning_model(math_domain, tmp_path) -> None:
    """A whole FT-Agent run whose endpoint refuses what reasoning models refuse: every plan is the model's
    (none falls back to the base model), and every request the run sent was accepted."""
    import yaml

    from actors.supervisor import RunSupervisor
    from ftdojo.messages import RunKey

    plan = json.dumps({"hypothesis": "drills in the answer format", "recipe": DataRecipe(sources=[SourceMapping(
        source="algebra_drills", prompt="Solve for x: {equation}", answer="{solution}")]).model_dump(),
        "train": TrainConfig(steps=2, batch_size=4, lr=2e-3).model_dump()})
    verdict = json.dumps({"findings": [], "decision": "continue"})
    reply = lambda body: verdict if "diagnostician" in body["messages"][0]["content"].lower()[:200] else plan  # noqa: E731
    with ScriptedLLM(reply, reasoning=True) as srv:
        agent_yaml = tmp_path / "reasoner.yaml"
        agent_yaml.write_text(yaml.safe_dump({"name": "ft-agent-gpt5", "policy": "ft-agent",
                                              "backbone": {"kind": "llm", "model": "gpt-5-mini", "base_url": srv.url, "cache": "off"}}))
        prof = config.load_profile("tiny", ["budget.max_iterations=2"])
        key = RunKey(task="math-linear", agent="ft-agent-gpt5", seed=0, profile="tiny", config_hash="0" * 16)
        rec = asyncio.run(RunSupervisor(key, config.load_agent(str(agent_yaml)), prof, str(tmp_path / "ws")).run())
    assert rec.status == "ok" and not rec.fallback_to_base and not srv.refused
    trained = [e for e in rec.experiments if e.status != "failed"]
    assert trained and all(e.plan is not None and e.plan.hypothesis == "drills in the answer format" for e in trained)
    assert rec.usage.llm_requests == len(srv.requests) >= 2


def test_the_planner_sees_dev_errors_budget_left_curation_and_rows_it_looks_up(math_domain, tmp_path) -> None:
    """Two iterations of FT-Agent on an LLM endpoint. Before its first plan the model looks up rows of a
    source (they come back in the next request, are counted, and cost prompt tokens); its second plan is
    asked with the first experiment's dev errors (input, gold, the model's output), the budget left and
    what curation did to each source."""
    import yaml

    from actors.supervisor import RunSupervisor
    from ftdojo.messages import RunKey

    plan = json.dumps({"hypothesis": "drills", "recipe": DataRecipe(sources=[SourceMapping(
        source="algebra_drills", prompt="Solve for x: {equation}", answer="{solution}")]).model_dump(),
        "train": TrainConfig(steps=2, batch_size=4, lr=2e-3).model_dump()})
    look = json.dumps({"lookup": {"source": "algebra_drills", "where": {}, "offset": 3, "n": 4}, "why": "see the drill format"})
    verdict = json.dumps({"findings": [], "decision": "continue"})
    planner_calls = []

    def reply(body: dict) -> str:
        if "diagnostician" in body["messages"][0]["content"][:200]:
            return verdict
        planner_calls.append(body)
        return look if len(planner_calls) == 1 else plan

    with ScriptedLLM(reply, count_tokens=True) as srv:
        agent_yaml = tmp_path / "looker.yaml"
        agent_yaml.write_text(yaml.safe_dump({"name": "ft-agent-looker", "policy": "ft-agent",
                                              "backbone": {"kind": "llm", "model": "scripted", "base_url": srv.url, "cache": "off"}}))
        prof = config.load_profile("tiny", ["budget.max_iterations=2", "budget.max_train_steps=50"])
        key = RunKey(task="math-linear", agent="ft-agent-looker", seed=0, profile="tiny", config_hash="0" * 16)
        rec = asyncio.run(RunSupervisor(key, config.load_agent(str(agent_yaml)), prof, str(tmp_path / "ws")).run())
    assert rec.status == "ok" and len(rec.experiments) == 2 and rec.usage.llm_lookups == 1
    first, after_look, second = planner_calls
    rows = json.loads(after_look["messages"][-1]["content"])
    from ftdojo import datafiles, repository
    from ftdojo.registry import get_domain

    raw = datafiles.read_rows(repository.materialize(get_domain("math")) / "algebra_drills.csv", "csv")
    assert rows["lookup"]["source"] == "algebra_drills" and [r["equation"] for r in rows["rows"]] == [r["equation"] for r in raw[3:7]]
    assert rows["lookups_left"] == 2 and after_look["messages"][-2] == {"role": "assistant", "content": look}
    tokens = [x.tokens for x in rec.transcript if x.role == "planner"]
    assert tokens[1] - tokens[0] >= len(after_look["messages"][-1]["content"]) // 4  # the rows are charged as prompt tokens
    asked = json.loads(second["messages"][1]["content"])
    it0 = asked["history"][0]
    assert it0["dev"]["errors"] and {"input", "expected", "output", "extracted", "category"} <= set(it0["dev"]["errors"][0])
    assert len(it0["dev"]["errors"]) <= 5 and all(len(e["output"]) <= 330 for e in it0["dev"]["errors"])
    drills = it0["curation"]["sources"]["algebra_drills"]
    assert drills["rows"] == len(raw) and drills["kept"] == it0["curation"]["per_source"]["algebra_drills"] and "dropped" in drills
    assert drills["completion_chars"] > 0
    left = asked["budget_left"]
    assert left["train_steps"] == 50 - 2 and left["iterations"] == 1 and left["dev_evals"] == prof.budget.max_dev_evals - 1
    assert json.loads(first["messages"][1]["content"])["budget_left"]["train_steps"] == 50


def test_look_ups_are_bounded_and_an_unknown_source_is_answered_with_the_error(tmp_path) -> None:
    """max_lookups=2: an unknown source gets the environment's error back (it still counts), the second look-up
    is the last, and a third asked for instead of a plan does not validate: the model is told and plans."""
    from ftdojo.errors import UnknownName
    from ftdojo.messages import SourceRows

    async def lookup(req):
        if req.source != "s":
            raise UnknownName("source", req.source, ["s"])
        return SourceRows.of("s", [{"q": f"q{i}", "a": str(i)} for i in range(req.offset, req.offset + req.n)])

    ask = lambda src: json.dumps({"lookup": {"source": src, "n": 2}})  # noqa: E731
    with ScriptedLLM([ask("nope"), ask("s"), ask("s"), GOOD]) as srv:
        bb = LLMBackbone(_cfg(srv.url, "gpt-4o-mini", max_lookups=2), cache_dir=tmp_path)
        plan = asyncio.run(bb.propose(CARD, [], None, TrainConfig(), lookup=lookup))
    assert plan.train.steps == 42 and bb.usage().lookups == 2 and bb.usage().retries == 1 and len(srv.requests) == 4
    error = json.loads(srv.requests[1]["messages"][-1]["content"])
    assert "unknown source 'nope'; valid: s" in error["error"] and error["lookups_left"] == 1
    rows = json.loads(srv.requests[2]["messages"][-1]["content"])
    assert rows["rows"] == [{"q": "q0", "a": "0"}, {"q": "q1", "a": "1"}] and rows["next"] == "reply with a plan"
    assert "PlannerAnswer" in json.dumps(srv.requests[0]["response_format"]) and srv.requests[2]["response_format"]["json_schema"]["name"] == "PlanProposal"
    assert "did not validate" in srv.requests[3]["messages"][-1]["content"]


def test_an_llm_plan_may_probe_and_name_its_parent_and_a_parent_not_in_the_run_is_refused_by_name(tmp_path) -> None:
    """The answer schema offers ``probe`` and ``parent``; a probe from the base model becomes a probe plan, a
    named trained node is continued, and a node the run does not have fails with the trained ids listed."""
    from tests_helpers import experiment, propose

    from actors.planner import Planner
    from ftdojo.messages import PlanProposal

    assert {"probe", "parent"} <= set(PlanProposal.model_json_schema()["properties"])
    history = [experiment("it0", 0.4), experiment("it1", 0.6)]
    answers = [json.loads(GOOD) | {"probe": True, "parent": "base"},
               json.loads(GOOD) | {"parent": "it0", "train": {**json.loads(GOOD)["train"], "init": "parent"}},
               json.loads(GOOD) | {"parent": "it7"}]
    with ScriptedLLM([json.dumps(a) for a in answers]) as srv:
        planner = Planner(_backbone(srv.url, tmp_path, cache="off", retries=0))  # the same request thrice
        probe = propose(planner, CARD, history, TrainConfig(), 100)
        cont = propose(planner, CARD, history, TrainConfig(), 100)
        with pytest.raises(BackboneError, match=r"plan parent 'it7' is not a trained experiment of this run \(trained: \['it0', 'it1'\]\)"):
            propose(planner, CARD, history, TrainConfig(), 100)
    assert probe.probe and probe.parent is None and probe.train.init == "base"
    assert not cont.probe and cont.parent == "it0" and cont.train.init == "parent"
    assert srv.requests[0]["response_format"]["json_schema"]["schema"]["properties"]["probe"]["type"] == "boolean"
