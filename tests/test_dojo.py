"""The dojo boundary: no agent-facing call reaches the test split; budgets are charged."""

from __future__ import annotations

import inspect
import json

import pytest
from pydantic_core import to_jsonable_python

from ftdojo import datafiles, evaluation, paths, repository
from ftdojo.dojo import DojoEnv, Referee
from ftdojo.errors import AccessDenied, BudgetExceeded, UnknownName
from ftdojo.messages import Budget, Candidate, PromptSpec, RowLookup


@pytest.fixture()
def env(math_domain, tiny_model) -> DojoEnv:
    return DojoEnv("math-arith", tiny_model, Budget(max_dev_evals=1, max_train_steps=10), eval_batch_size=64)


def _test_inputs(math_domain) -> set[str]:
    task = next(t for t in math_domain.tasks if t.id == "math-arith")
    return {i["input"] for i in datafiles.read_items(repository.sealed_path(task, math_domain))}


def test_no_agent_facing_call_returns_a_test_item(env, math_domain, tiny_model) -> None:
    test_inputs = _test_inputs(math_domain)
    outputs = [env.describe(), env.read_dev(), env.evaluate(Candidate(base_model=tiny_model)), env.usage()]
    outputs += [env.read_source(s.name) for s in math_domain.sources if s.role != "leak"]
    outputs += [env.lookup(RowLookup(source=s.name, n=20)) for s in math_domain.sources if s.role != "leak"]
    blob = json.dumps(to_jsonable_python(outputs), default=str)
    # the leak trap is agent-readable by design (its rows are near-copies of test items, and the card
    # shows a few); a run that trains on it is flagged. Nothing else may carry a test item.
    trap = json.dumps([env.read_source(s.name).model_dump() for s in math_domain.sources if s.role == "leak"])
    leaked = [t for t in test_inputs if t in blob and t not in trap]
    assert not leaked, leaked[:3]
    assert any(t in trap for t in test_inputs)
    # structurally: the env holds no path to the sealed folder
    sealed_root = str(repository.sealed_path(math_domain.tasks[0], math_domain).parents[2])
    assert sealed_root not in json.dumps({k: str(v) for k, v in vars(env).items()})
    public = {n for n, _ in inspect.getmembers(env, inspect.ismethod) if not n.startswith("_")}
    assert public == {"describe", "read_source", "lookup", "read_dev", "evaluate", "charge_train_steps", "check_wall", "usage", "release"}


def test_source_names_cannot_be_paths(env) -> None:
    for bad in ["../../sealed/math/x", "/etc/passwd", ".hidden"]:
        with pytest.raises(AccessDenied):
            env.read_source(bad)
    with pytest.raises(UnknownName, match="valid: algebra_drills"):
        env.read_source("nope")
    with pytest.raises(AccessDenied):
        env.lookup(RowLookup(source="../../sealed/math/x"))


def test_dev_evaluations_and_train_steps_are_charged(env, tiny_model) -> None:
    env.evaluate(Candidate(base_model=tiny_model))
    with pytest.raises(BudgetExceeded, match="dev_evals"):
        env.evaluate(Candidate(base_model=tiny_model))
    env.charge_train_steps(6)
    with pytest.raises(BudgetExceeded, match="train_steps used 12 of 10"):
        env.charge_train_steps(6)
    assert env.usage().dev_evals == 1 and env.usage().train_steps == 6


def test_referee_scores_test_and_hashes_it(math_domain, tiny_model) -> None:
    ref = Referee("math-arith", eval_batch_size=64)
    report = ref.finalize(Candidate(base_model=tiny_model))
    assert report.split == "test" and report.n == 120
    assert len(ref.test_sha256()) == 64


def test_the_base_models_test_report_is_computed_once_per_setting(math_domain, tiny_model, monkeypatch) -> None:
    ref = Referee("math-arith", eval_batch_size=48)  # a batch size no other test uses: a fresh memo
    first = ref.finalize(Candidate(base_model=tiny_model))
    assert not first.cached
    calls: list[int] = []
    real = evaluation.generate
    monkeypatch.setattr(evaluation, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = ref.finalize(Candidate(base_model=tiny_model))
    assert again.cached and calls == [] and again.item_scores == first.item_scores and again.score == first.score
    other = ref.finalize(Candidate(base_model=tiny_model, prompt=PromptSpec(system="Answer briefly.")))
    assert not other.cached and calls == [1]  # another prompt is another evaluation
    memos = list((paths.sealed_dir() / "evals").glob("math-arith-test-*.json"))
    assert memos and all((m.parent.stat().st_mode & 0o077) == 0 for m in memos)  # test answers stay sealed


def test_a_memoised_dev_evaluation_is_still_charged(math_domain, tiny_model) -> None:
    env = DojoEnv("math-arith", tiny_model, Budget(max_dev_evals=2), eval_batch_size=48)
    first, again = env.evaluate(Candidate(base_model=tiny_model)), env.evaluate(Candidate(base_model=tiny_model))
    assert again.cached and again.item_scores == first.item_scores and env.usage().dev_evals == 2
    with pytest.raises(BudgetExceeded):
        env.evaluate(Candidate(base_model=tiny_model))


def test_leak_check_flags_test_copies_not_clean_data(math_domain) -> None:
    ref = Referee("math-arith")
    test_inputs = sorted(_test_inputs(math_domain))
    raw = repository.raw_dir(math_domain)
    clean = [r["question"] for r in datafiles.read_rows(raw / "gradeschool_qa.jsonl", "jsonl")[:500]]
    assert ref.leak_check(clean)["test"] == 0.0
    seeded = clean[:450] + [f"Can someone help? {t}" for t in test_inputs[:50]]
    assert ref.leak_check(seeded)["test"] == pytest.approx(0.1)


def test_an_item_shorter_than_the_n_gram_is_found_inside_a_longer_text() -> None:
    from ftdojo import overlap

    index = overlap.OverlapIndex(["Capital of Peru?", "What is 17 times 23 exactly?"])
    assert index.contaminated("Let me recall: capital of Peru? It is Lima.\nAnswer: Lima")
    assert index.contaminated("Step 1. What is 17 times 23 exactly? 17*23 = 391")
    assert not index.contaminated("What is 17 times 24 exactly? 408")
    assert not index.contaminated("The capital of Chile is Santiago.")
