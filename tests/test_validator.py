"""Fail-fast: every kind of broken plan is caught before any full training."""

from __future__ import annotations

import asyncio

import pytest

from actors.curator import Curator
from actors.validator import Validator
from ftdojo.dojo import DojoEnv, EnvHandle
from ftdojo.messages import ValidateRequest, Budget, DataRecipe, Plan, SourceMapping, TrainConfig


def _plan(**kw) -> Plan:
    recipe = kw.pop("recipe", DataRecipe(sources=[SourceMapping(source="algebra_drills", prompt="Solve for x: {equation}", answer="{solution}")]))
    train = TrainConfig(**{"steps": 20, "batch_size": 8, "lr": 3e-3, "warmup_steps": 0, **kw})
    return Plan(plan_id=kw.get("plan_id", "p"), hypothesis="h", recipe=recipe, train=train)


@pytest.fixture()
def parts(math_domain, tiny_model, tmp_path):
    env = DojoEnv("math-linear", tiny_model, Budget(max_train_steps=100))
    return env, Curator(EnvHandle(env), str(tmp_path)), Validator(EnvHandle(env), str(tmp_path), smoke_steps=6)


def _validate(parts, plan: Plan):
    env, curator, validator = parts

    async def go():
        data = await curator.curate(plan)
        return await validator.validate(ValidateRequest(plan=plan, data=data, card=env.describe()))

    return asyncio.run(go())


BROKEN = {
    "answers in the wrong format": (
        dict(recipe=DataRecipe(sources=[SourceMapping(source="algebra_drills", prompt="Solve for x: {equation}", answer="x equals {solution}")])),
        "targets_parseable",
    ),
    "max length that truncates the answers": (dict(max_length=40), "truncation"),
    "diverging learning rate": (dict(lr=5.0), "learning_rate"),
    "empty recipe": (dict(recipe=DataRecipe(sources=[SourceMapping(source="algebra_drills", prompt="{equation}", answer="{solution}", where={"form": "cubic"})])), "non_empty"),
    "target module the model lacks": (dict(target_modules=["q_proj", "qkv_fused"]), "target_modules"),
    "more steps than the budget": (dict(steps=500), "fits_budget"),
    "a micro-batch that cannot fit in memory": (dict(batch_size=512, max_length=4096), "memory"),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=lambda c: c.replace(" ", "-"))
def test_broken_plans_fail_fast(parts, case) -> None:
    overrides, check = BROKEN[case]
    report = _validate(parts, _plan(**overrides))
    failed = {c.name for c in report.checks if c.status == "fail"}
    assert not report.passed and check in failed, [c.model_dump() for c in report.checks]
    assert "smoke_train" not in {c.name for c in report.checks}  # nothing costly ran
    assert parts[0].usage().train_steps == 0


def test_good_plan_passes_with_a_falling_smoke_loss(parts) -> None:
    # the answer template of math tasks is 'Answer: {answer}': the curator applies it
    report = _validate(parts, _plan())
    assert report.passed, [c.model_dump() for c in report.checks if c.status != "pass"]
    names = {c.name for c in report.checks}
    assert {"non_empty", "well_formed", "targets_parseable", "truncation", "loss_mask", "prompt_prefix", "duplicates",
            "dev_overlap", "target_modules", "learning_rate", "fits_budget", "memory", "smoke_train"} <= names
    assert len(report.smoke_losses) == 6 and report.smoke_losses[-1] < report.smoke_losses[0]
    assert report.memory_estimate_mb and report.memory_estimate_mb > 0


def test_smoke_train_catches_a_loss_that_does_not_fall(parts) -> None:
    report = _validate(parts, _plan(lr=1e-6))
    smoke = next(c for c in report.checks if c.name == "smoke_train")
    assert smoke.status == "fail" and "loss" in smoke.reason


def test_the_memory_estimate_follows_the_device_the_method_and_the_length() -> None:
    from actors.validator import Arch, memory_estimate_mb

    arch = Arch(modules=set(), params=135_000_000, hidden=576, layers=30, heads=9)  # the bundled model's shape
    lora, full = TrainConfig(method="lora", batch_size=8, max_length=256), TrainConfig(method="full", batch_size=8, max_length=256)
    lora_cpu = memory_estimate_mb(arch, lora, 1e6, "cpu", True)
    assert memory_estimate_mb(arch, full, arch.params, "cpu", True) > lora_cpu + 135e6 * 16 / 2**20  # grads and Adam of every weight
    # on CPU (eager attention) doubling the length more than doubles the activations; on a GPU (SDPA) it doubles them,
    # and the process's cached base stays in host memory
    act = {d: [memory_estimate_mb(arch, lora.model_copy(update={"max_length": n}), 1e6, d, True) - memory_estimate_mb(
        arch, lora.model_copy(update={"max_length": 8}), 1e6, d, True) for n in (200, 400)] for d in ("cpu", "cuda")}
    assert act["cpu"][1] > 2.2 * act["cpu"][0] and act["cuda"][1] == pytest.approx(act["cuda"][0] * (400 - 8) / (200 - 8))
    assert lora_cpu > memory_estimate_mb(arch, lora, 1e6, "cuda", True) + 4 * 135e6 / 2**20  # the fp32 base cached in host memory
