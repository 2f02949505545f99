"""LLM data synthesis: a recipe's synthesis steps, their data model (a scripted OpenAI-compatible server), the
token meter, the cache, and the run's leak check over what the model wrote."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from pathlib import Path

import pytest
import yaml
from scripted_llm import ScriptedLLM

from ftdojo import config, datafiles, prompts, repository, synthesis
from ftdojo.config import BackboneConfig
from ftdojo.errors import ConfigError, UserError
from ftdojo.messages import Budget, DataRecipe, Example, Plan, RunKey, Synthesis, TrainConfig
from ftdojo.registry import get_task


def _env():
    from ftdojo.dojo import DojoEnv, EnvHandle

    return EnvHandle(DojoEnv("math-linear", "tiny-random", Budget()))


def _gold(body: dict) -> str:
    return re.search(r"Correct answer: (.*)$", body["messages"][1]["content"]).group(1)


def _input(body: dict) -> str:
    return body["messages"][1]["content"].split("Input:\n", 1)[1].split("\n\nCorrect answer:")[0]


def _curate(url: str, recipe: DataRecipe, ws: Path, plan_id: str = "p0", tokens: int = 100_000, cache: str = "auto",
            model: str = "writer"):
    from actors.curator import Curator

    cur = Curator(_env(), str(ws), data_model=BackboneConfig(kind="llm", model=model, base_url=url, cache=cache), data_tokens=tokens)
    data = asyncio.run(cur.curate(Plan(plan_id=plan_id, hypothesis="h", recipe=recipe, train=TrainConfig())))
    return cur, data


def _drills(domain, n: int) -> list[dict]:
    return datafiles.read_rows(repository.raw_dir(domain) / "algebra_drills.csv", "csv")[:n]


def test_rationales_from_the_data_model_change_the_training_set_as_planned_and_replay_from_the_cache(math_domain, tmp_path) -> None:
    """Six drill rows sent for rationales: each kept example is the row's input, the model's reasoning and the
    gold answer in the task's format; a reply that reasons to another answer is dropped as ``disagrees``; the
    requests carry the task and the row, are counted and transcribed in row order (the first row's reply comes
    last); a second curation replays from the cache."""
    rows = _drills(math_domain, 6)

    def reply(body: dict) -> str:
        gold = _gold(body)
        if _input(body) == f"Solve for x: {rows[0]['equation']}":
            time.sleep(0.5)  # requests run concurrently: this one finishes after the others
        if gold in ("-4", "9"):  # rows the model gets wrong
            return "Subtract and divide.\nAnswer: 12345"
        return f"Move the constant to the right, then divide by the coefficient.\nAnswer: {gold}"

    step = Synthesis(name="drill_reasons", source="algebra_drills", produce="rationale", prompt="Solve for x: {equation}",
                     answer="{solution}", max_rows=6, instruction="Keep it to one sentence.")
    recipe = DataRecipe(sources=[], synthesis=[step], decontaminate=False)
    model = f"writer-{uuid.uuid4().hex[:8]}"  # the on-disk cache outlives a test session: a model it has not seen
    with ScriptedLLM(reply) as srv:
        cur, data = _curate(srv.url, recipe, tmp_path / "a", model=model)
    wrong = sum(str(r["solution"]) in ("-4", "9") for r in rows)
    assert wrong >= 1 and len(srv.requests) == 6 and data.sources["drill_reasons"].rows == 6
    assert data.n_examples == 6 - wrong and data.dropped.get("disagrees", 0) == wrong
    sent = srv.requests[0]["messages"]
    assert "Solve for x:" in sent[1]["content"] and "Correct answer:" in sent[1]["content"]
    card = asyncio.run(_env().describe())
    assert "Keep it to one sentence." in sent[0]["content"] and card.answer_format in sent[0]["content"]
    by_input = {e.input: e.completion for e in datafiles.read_models(Path(data.path), Example)}
    r = next(r for r in rows if f"Solve for x: {r['equation']}" in by_input)
    assert by_input[f"Solve for x: {r['equation']}"] == f"Move the constant to the right, then divide by the coefficient.\nAnswer: {r['solution']}"
    assert cur.usage().requests == 6 and cur.usage().tokens == 6 * 120
    assert [x.role for x in cur.transcript()] == ["data:drill_reasons"] * 6 and all(x.model == model for x in cur.transcript())
    assert [x.request["messages"][1]["content"].split("\n")[1] for x in cur.transcript()] == [f"Solve for x: {r['equation']}" for r in rows]
    assert cur.transcript()[0].t > cur.transcript()[1].t  # listed by row, not by when each came back
    with ScriptedLLM(lambda body: pytest.fail("a replayed curation asked the endpoint")) as srv:
        again, replayed = _curate(srv.url, recipe, tmp_path / "b", model=model)
    assert replayed.sha256 == data.sha256 and again.usage().cache_hits == 6 and again.usage().requests == 0


def test_answers_and_paraphrases_from_the_data_model(math_domain, tmp_path) -> None:
    """An ``answer`` step keeps what the task's extractor reads from the model's solution (an unparseable reply is
    dropped); a ``paraphrase`` step replaces the input and keeps the gold answer."""
    def reply(body: dict) -> str:
        if "Rewrite it" in body["messages"][0]["content"]:
            return "What value of x makes this true? " + _input(body).removeprefix("Solve for x: ")
        return "I am not sure." if "(x" in _input(body) else "x equals 7 after dividing.\nAnswer: 7"

    answer = Synthesis(name="solved", source="algebra_drills", produce="answer", prompt="Solve for x: {equation}", max_rows=8)
    para = Synthesis(name="reworded", source="algebra_drills", produce="paraphrase", prompt="Solve for x: {equation}",
                     answer="{solution}", max_rows=3, where={"form": "ax+b=c"})
    with ScriptedLLM(reply) as srv:
        _, data = _curate(srv.url, DataRecipe(sources=[], synthesis=[answer, para], decontaminate=False), tmp_path, cache="off")
    exs = datafiles.read_models(Path(data.path), Example)
    solved = [e for e in exs if e.source == "solved"]
    unparseable = sum("(x" in r["equation"] for r in _drills(math_domain, 8))
    assert unparseable >= 1 and len(solved) == 8 - unparseable and data.sources["solved"].dropped.get("unparseable", 0) == unparseable
    assert all(e.completion == "x equals 7 after dividing.\nAnswer: 7" for e in solved)
    one_step = [r for r in datafiles.read_rows(repository.raw_dir(math_domain) / "algebra_drills.csv", "csv") if r["form"] == "ax+b=c"][:3]
    reworded = {e.input: e.completion for e in exs if e.source == "reworded"}
    assert len(one_step) == 3 and reworded == {f"What value of x makes this true? {r['equation']}": f"Answer: {r['solution']}" for r in one_step}


def test_the_data_token_budget_meters_synthesis(math_domain, tmp_path) -> None:
    """Rows past ``budget.max_data_tokens`` are dropped as ``data_tokens`` (the step does not fail); a budget of 0
    turns synthesis off with an error naming the field; without a data model the error says what to set."""
    step = Synthesis(name="r", source="algebra_drills", produce="rationale", prompt="{equation}", answer="{solution}", max_rows=12)
    recipe = DataRecipe(sources=[], synthesis=[step], decontaminate=False)
    with ScriptedLLM(lambda body: f"Because.\nAnswer: {_gold(body)}") as srv:
        cur, data = _curate(srv.url, recipe, tmp_path, tokens=250, cache="off")
    sent = len(srv.requests)
    assert 3 <= sent <= 2 + synthesis.CONCURRENCY and data.dropped["data_tokens"] == 12 - sent and data.n_examples == sent
    assert cur.usage().tokens == 120 * sent
    with pytest.raises(UserError, match=r"budget.max_data_tokens is 0 in the profile"):
        _curate("http://127.0.0.1:9/v1", recipe, tmp_path, "p1", tokens=0)
    from actors.curator import Curator

    with pytest.raises(UserError, match=r"recipe synthesis 'r': this agent has no data model; set data_model"):
        asyncio.run(Curator(_env(), str(tmp_path)).curate(Plan(plan_id="p2", hypothesis="h", recipe=recipe, train=TrainConfig())))


def test_a_data_model_must_be_an_endpoint(tmp_path) -> None:
    bad = tmp_path / "a.yaml"
    bad.write_text(yaml.safe_dump({"name": "a", "policy": "ft-agent", "data_model": {"kind": "heuristic"}}))
    with pytest.raises(ConfigError, match=r"data_model.kind: llm"):
        config.load_agent(str(bad))
    ok = tmp_path / "b.yaml"
    ok.write_text(yaml.safe_dump({"name": "b", "policy": "ft-agent", "backbone": {"kind": "llm", "model": "m", "base_url": "u"}}))
    assert config.load_agent(str(ok)).synthesizer.model == "m"  # unset: the backbone writes too
    assert config.load_agent("ft-agent").synthesizer is None


def test_synthesized_data_that_copies_test_items_is_flagged(math_domain, tmp_path) -> None:
    """A whole FT-Agent run whose planner (a scripted endpoint) plans a paraphrase step and whose data model
    "paraphrases" into the sealed test items: the curator's filters cannot see the test split, so the examples
    train, and the referee's leak check flags the run; the data model's exchanges are in the run's transcript,
    its tokens in the usage and the cost."""
    from actors.supervisor import RunSupervisor

    test_inputs = [i["input"] for i in datafiles.read_items(repository.sealed_path(get_task("math-linear"), math_domain))]
    step = Synthesis(name="copies", source="algebra_drills", produce="paraphrase", prompt="Solve for x: {equation}",
                     answer="{solution}", max_rows=len(test_inputs))
    plan = json.dumps({"hypothesis": "more phrasings", "recipe": DataRecipe(sources=[], synthesis=[step]).model_dump(),
                       "train": TrainConfig(steps=2, batch_size=4, lr=2e-3).model_dump()})
    verdict = json.dumps({"findings": [], "decision": "stop"})
    copied = iter(test_inputs * 2)

    def reply(body: dict) -> str:
        system = body["messages"][0]["content"]
        if system.startswith("You write training data"):
            return next(copied)
        return verdict if "diagnostician" in system.lower()[:200] else plan

    with ScriptedLLM(reply) as srv:
        agent = tmp_path / "a.yaml"
        agent.write_text(yaml.safe_dump({"name": "ft-agent-copier", "policy": "ft-agent", "backbone": {
            "kind": "llm", "model": "planner", "base_url": srv.url, "cache": "off", "usd_per_1m_tokens": 2.0},
            "data_model": {"kind": "llm", "model": "writer", "base_url": srv.url, "cache": "off", "usd_per_1m_tokens": 10.0}}))
        prof = config.load_profile("tiny", ["budget.max_iterations=1"])
        key = RunKey(task="math-linear", agent="ft-agent-copier", seed=0, profile="tiny", config_hash="0" * 16)
        rec = asyncio.run(RunSupervisor(key, config.load_agent(str(agent)), prof, str(tmp_path / "ws")).run())
    assert rec.status == "ok" and rec.leak_flagged and rec.leak["test"] > 0.5
    [exp] = [e for e in rec.experiments if e.curated]
    assert exp.curated.per_source["copies"] > 0 and exp.train is not None  # what the curator could check, it passed
    data = [x for x in rec.transcript if x.role == "data:copies"]
    assert len(data) == len(test_inputs) == rec.usage.data_requests and all(x.model == "writer" for x in data)
    assert rec.usage.data_tokens == 120 * len(test_inputs) and rec.usage.llm_tokens == 120 * rec.usage.llm_requests
    assert rec.usage.llm_cost_usd == pytest.approx((rec.usage.llm_tokens * 2.0 + rec.usage.data_tokens * 10.0) / 1e6)
    planner = next(x for x in rec.transcript if x.role == "planner")
    assert "(writer)" in planner.request["messages"][0]["content"]  # the planner is told which model writes
    assert rec.prompts["synthesis_paraphrase"] == prompts.digest("synthesis_paraphrase")


def test_a_run_with_synthesis_replays_offline_from_the_cache_to_the_same_record(math_domain, tmp_path) -> None:
    """An FT-Agent run whose planner and data model are a scripted endpoint, recorded; the same run again with
    the endpoint gone and ``cache: replay``: the same plans, training set, transcript replies, losses and test
    scores, with no request sent."""
    from actors.supervisor import RunSupervisor

    step = Synthesis(name="reasons", source="algebra_drills", produce="rationale", prompt="Solve for x: {equation}",
                     answer="{solution}", max_rows=6)
    plan = json.dumps({"hypothesis": "drills with written reasoning", "recipe": DataRecipe(sources=[], synthesis=[step]).model_dump(),
                       "train": TrainConfig(steps=2, batch_size=4, lr=2e-3).model_dump()})
    verdict = json.dumps({"findings": [], "decision": "stop"})

    def reply(body: dict) -> str:
        system = body["messages"][0]["content"]
        if system.startswith("You write training data"):
            return f"Undo the constant, then the coefficient.\nAnswer: {_gold(body)}"
        return verdict if "diagnostician" in system.lower()[:200] else plan

    nonce = uuid.uuid4().hex[:8]  # requests the persistent cache has not seen

    def run(url: str, cache: str, name: str):
        agent = tmp_path / f"{name}.yaml"
        agent.write_text(yaml.safe_dump({"name": "ft-agent-synth", "policy": "ft-agent",
                                         "backbone": {"kind": "llm", "model": f"planner-{nonce}", "base_url": url, "cache": cache},
                                         "data_model": {"kind": "llm", "model": f"writer-{nonce}", "base_url": url, "cache": cache}}))
        key = RunKey(task="math-linear", agent="ft-agent-synth", seed=0, profile="tiny", config_hash="0" * 16)
        prof = config.load_profile("tiny", ["budget.max_iterations=1"])
        return asyncio.run(RunSupervisor(key, config.load_agent(str(agent)), prof, str(tmp_path / name)).run())

    with ScriptedLLM(reply) as srv:
        first = run(srv.url, "auto", "recorded")
    assert first.usage.data_requests == 6 and first.usage.llm_requests == len(srv.requests) - 6
    again = run("http://127.0.0.1:9/v1", "replay", "replayed")
    assert again.status == first.status == "ok" and not first.fallback_to_base
    assert again.usage.llm_requests == again.usage.data_requests == 0 and again.usage.data_cache_hits == 6
    assert [e.plan for e in again.experiments] == [e.plan for e in first.experiments]
    assert [e.curated.sha256 for e in again.experiments if e.curated] == [e.curated.sha256 for e in first.experiments if e.curated]
    assert [e.train.losses for e in again.experiments if e.train] == [e.train.losses for e in first.experiments if e.train]
    assert [x.reply for x in again.transcript] == [x.reply for x in first.transcript] and again.transcript_sha256 != ""
    assert again.test.score == first.test.score and again.test.item_scores == first.test.item_scores
