"""Small builders shared by tests."""

from __future__ import annotations

from ftdojo.messages import (
    Budget,
    DataRecipe,
    EvalReport,
    Experiment,
    Plan,
    SourceMapping,
    TaskCard,
    TrainConfig,
    TrainResult,
)


def card(**over: object) -> TaskCard:
    """A minimal task card for unit tests of agent components."""
    base = dict(
        task_id="t", domain="d", description="x", instruction="i", answer_format="Answer: <n>", answer_template="Answer: {answer}",
        answer_pattern=r"Answer:\s*(-?\d+)", metric="numeric", direction="max", categories=["a", "b"], base_model="m",
        budget=Budget(max_iterations=3), sources=[], dev_size=100,
    )
    return TaskCard(**{**base, **over})


def experiment(i: str = "it0", score: float = 0.5) -> Experiment:
    plan = Plan(plan_id=i, hypothesis="h", recipe=DataRecipe(sources=[SourceMapping(source="s", prompt="{q}", answer="{a}")]), train=TrainConfig())
    return Experiment(
        id=i, parent=None, plan=plan, status="ok",
        train=TrainResult(plan_id=i, status="ok", losses=[2.0, 1.0], steps=2, checkpoint="/c"),
        dev=EvalReport(split="dev", score=score, n=10, per_category={"a": score}, parse_failure_rate=0.0, errors=[]),
    )


def diagnose(diagnostician, exp: Experiment, best: Experiment | None, parent: Experiment | None, task: TaskCard | None = None):
    """The diagnostician's feedback on ``exp`` (its request model built from the parts)."""
    import asyncio

    from ftdojo.messages import DiagnoseRequest

    return asyncio.run(diagnostician.diagnose(DiagnoseRequest(experiment=exp, best=best, parent=parent, card=task or card())))


def propose(planner, task: TaskCard, history: list[Experiment], base: TrainConfig, steps_left: int) -> Plan:
    import asyncio

    from ftdojo.messages import ProposeRequest

    return asyncio.run(planner.propose(ProposeRequest(card=task, history=history, base=base, steps_left=steps_left)))
