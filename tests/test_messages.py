"""The protocol: every message round-trips through JSON unchanged, and is strict."""

from __future__ import annotations

import pydantic
import pytest

from ftdojo import messages as m


def _samples() -> list[m.Message]:
    plan = m.Plan(
        plan_id="it0",
        hypothesis="h",
        recipe=m.DataRecipe(sources=[m.SourceMapping(source="s", prompt="{q}", answer="{a}", rationale="{r}")]),
        train=m.TrainConfig(steps=3),
        prompt=m.PromptSpec(system="sys"),
    )
    curated = m.CuratedData(
        plan_id="it0", path="/x", sha256="0" * 64, n_examples=1, per_source={"s": 1}, dropped={"duplicate": 2},
        samples=[m.Example(input="q", completion="Answer: 1", source="s")],
    )
    val = m.ValidationReport(plan_id="it0", checks=[m.Check(name="non_empty", status="pass", reason="1 row", value=1)])
    tr = m.TrainResult(plan_id="it0", status="ok", losses=[2.0, 1.0], steps=2, tokens=10, tokens_per_s=5.0)
    ev = m.EvalReport(
        split="dev", score=0.5, n=2, per_category={"a": 0.5}, parse_failure_rate=0.5,
        errors=[m.ErrorSample(input="q", expected="1", output="x", extracted=None, category="a")],
    )
    fb = m.Feedback(plan_id="it0", findings=[m.Finding(level="training", code="underfit", message="loss high")], decision="continue")
    exp = m.Experiment(id="it0", parent=None, plan=plan, curated=curated, validation=val, train=tr, dev=ev, feedback=fb, status="ok")
    card = m.TaskCard(
        task_id="t", domain="d", description="x", instruction="i", answer_format="f", answer_template="Answer: {answer}",
        answer_pattern=r"Answer:\s*(\d+)", metric="exact", direction="max", categories=["a"], base_model="b",
        budget=m.Budget(), dev_size=2,
        sources=[m.SourceInfo(name="s", format="jsonl", fields={"q": "question"}, rows=1, readme="r", samples=[{"q": "1"}])],
    )
    key = m.RunKey(task="t", agent="a", seed=0, profile="p", config_hash="abc")
    rec = m.RunRecord(
        key=key, status="ok", base_model="b", task_spec_hash="h", test_sha256="0" * 64,
        final=m.Candidate(base_model="b", checkpoint="/c"), dev=ev, test=ev.model_copy(update={"split": "test"}),
        experiments=[exp], leak={"dev": 0.0, "test": 0.1}, leak_flagged=True, usage={"dev_evals": 1},
    )
    return [plan, curated, val, tr, ev, fb, exp, card, key, rec, m.DevItem(id="1", input="q", answer="1", category="a")]


@pytest.mark.parametrize("msg", _samples(), ids=lambda x: x.kind)
def test_round_trip(msg: m.Message) -> None:
    again = type(msg).model_validate_json(msg.model_dump_json())
    assert again == msg
    assert again.model_dump_json() == msg.model_dump_json()


def test_messages_are_frozen_and_strict() -> None:
    plan = _samples()[0]
    with pytest.raises(pydantic.ValidationError):
        plan.hypothesis = "changed"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="extra"):
        m.TrainConfig(steps=1, learning_rate=3)  # type: ignore[call-arg]


def test_every_message_has_kind_and_field_docs() -> None:
    for cls in m.Message.__subclasses__():
        assert "kind" in cls.model_fields, cls
        for name, f in cls.model_fields.items():
            assert name == "kind" or f.description, f"{cls.__name__}.{name} has no docstring"


def test_validation_report_passed_reads_checks() -> None:
    ok = m.ValidationReport(plan_id="p", checks=[m.Check(name="a", status="warn", reason="r")])
    bad = m.ValidationReport(plan_id="p", checks=[m.Check(name="a", status="fail", reason="r")])
    assert ok.passed and not bad.passed
