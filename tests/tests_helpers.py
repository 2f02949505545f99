"""Small builders shared by tests."""

from __future__ import annotations

from ftdojo.messages import (
    DataRecipe,
    EvalReport,
    Experiment,
    Plan,
    SourceMapping,
    TrainConfig,
    TrainResult,
)


def experiment(i: str = "it0", score: float = 0.5) -> Experiment:
    plan = Plan(plan_id=i, hypothesis="h", recipe=DataRecipe(sources=[SourceMapping(source="s", prompt="{q}", answer="{a}")]), train=TrainConfig())
    return Experiment(
        id=i, parent=None, plan=plan, status="ok",
        train=TrainResult(plan_id=i, status="ok", losses=[2.0, 1.0], steps=2, checkpoint="/c"),
        dev=EvalReport(split="dev", score=score, n=10, per_category={"a": score}, parse_failure_rate=0.0, errors=[]),
    )
