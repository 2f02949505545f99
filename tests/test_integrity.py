"""Evaluation integrity: provenance of the finalized model, leak flags, hashes in every record."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from actors.supervisor import RunSupervisor
from ftdojo import agents, config, training
from ftdojo.messages import Candidate, DataRecipe, Plan, RunKey, SourceMapping, TrainConfig

SRC = SourceMapping(source="algebra_drills", prompt="Solve for x: {equation}", answer="{solution}")


def _plan(i: str = "p0") -> Plan:
    return Plan(plan_id=i, hypothesis="h", recipe=DataRecipe(sources=[SRC], max_examples=64), train=TrainConfig(steps=4, batch_size=4, max_length=256))


class Scripted:
    """An agent that trains once, then hands back whatever ``pick`` makes of the result."""

    def __init__(self, pick) -> None:
        self.pick = pick

    def peers(self):
        return frozenset({"curator", "trainer"})

    async def run(self, ctx):
        exp = await ctx.iterate(_plan())
        return self.pick(ctx, exp)


def _run(tmp_path: Path, monkeypatch, pick):
    monkeypatch.setattr(agents, "make", lambda cfg: Scripted(pick))
    prof = config.load_profile("tiny", [])
    key = RunKey(task="math-linear", agent="naive-sft", seed=0, profile="tiny", config_hash="0" * 16)
    return asyncio.run(RunSupervisor(key, config.load_agent("naive-sft"), prof, str(tmp_path / "run")).run())


def test_honest_candidate_passes_provenance_and_record_carries_hashes(math_domain, tmp_path, monkeypatch) -> None:
    rec = _run(tmp_path, monkeypatch, lambda ctx, exp: Candidate(base_model=ctx.card.base_model, checkpoint=exp.train.checkpoint))
    assert rec.provenance.ok and not rec.provenance_flagged
    assert rec.provenance.checkpoint_sha256 == exp_digest(rec)
    assert len(rec.test_sha256) == 64 and len(rec.task_spec_hash) >= 12 and rec.code_version


def exp_digest(rec) -> str:
    return training.checkpoint_sha256(rec.final.checkpoint)


def test_substituted_base_model_is_flagged(math_domain, tiny_model, tmp_path, monkeypatch) -> None:
    rec = _run(tmp_path, monkeypatch, lambda ctx, exp: Candidate(base_model=tiny_model))
    assert rec.provenance_flagged and "is not the task's base model" in rec.provenance.reason


def test_checkpoint_not_from_this_run_is_flagged(math_domain, tmp_path, monkeypatch) -> None:
    def foreign(ctx, exp):
        other = tmp_path / "elsewhere"
        shutil.copytree(exp.train.checkpoint, other)
        return Candidate(base_model=ctx.card.base_model, checkpoint=str(other))

    rec = _run(tmp_path, monkeypatch, foreign)
    assert rec.provenance_flagged and "not written by this run's trainer" in rec.provenance.reason


def test_checkpoint_swapped_after_training_is_flagged(math_domain, tmp_path, monkeypatch) -> None:
    def tamper(ctx, exp):
        weights = next(Path(exp.train.checkpoint).glob("*.safetensors"))
        blob = bytearray(weights.read_bytes())
        blob[-8:] = bytes(8)  # other weights, same file name and size
        weights.write_bytes(bytes(blob))
        return Candidate(base_model=ctx.card.base_model, checkpoint=exp.train.checkpoint)

    rec = _run(tmp_path, monkeypatch, tamper)
    assert rec.provenance_flagged and "changed after training" in rec.provenance.reason


class HostileThenHonest:
    """A backbone's bad day: a transform that phones home, then a plain recipe."""

    def peers(self):
        return frozenset({"curator", "trainer", "validator"})

    async def run(self, ctx):
        evil = SRC.model_copy(update={"transform": "import socket\ndef transform(row):\n    socket.create_connection(('1.1.1.1', 80), timeout=1)\n"})
        self.first = await ctx.iterate(_plan("p0").model_copy(update={"recipe": DataRecipe(sources=[evil])}), validate=True)
        second = await ctx.iterate(_plan("p1"))
        return Candidate(base_model=ctx.card.base_model, checkpoint=second.train.checkpoint)


def test_a_sandbox_violation_fails_one_iteration_and_the_run_goes_on(math_domain, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(agents, "make", lambda cfg: HostileThenHonest())
    prof = config.load_profile("tiny", [])
    key = RunKey(task="math-linear", agent="naive-sft", seed=0, profile="tiny", config_hash="0" * 16)
    rec = asyncio.run(RunSupervisor(key, config.load_agent("naive-sft"), prof, str(tmp_path / "run")).run())
    first, second = rec.experiments
    assert first.status == "failed" and first.error.startswith("sandbox ") and first.train is None
    assert second.status == "ok" and rec.status == "ok" and rec.provenance.ok


def test_a_run_that_trains_on_a_little_of_the_leak_trap_is_flagged_and_named(math_domain, tmp_path, monkeypatch) -> None:
    from ftdojo import report

    crawl = SourceMapping(source="math_quiz_crawl", prompt="{question}", answer="{answer}", max_rows=30)
    recipe = DataRecipe(sources=[SRC.model_copy(update={"max_rows": 1500}), crawl])

    class Greedy:
        def peers(self):
            return frozenset({"curator", "trainer"})

        async def run(self, ctx):
            plan = _plan().model_copy(update={"recipe": recipe})
            exp = await ctx.iterate(plan)
            return Candidate(base_model=ctx.card.base_model, checkpoint=exp.train.checkpoint)

    monkeypatch.setattr(agents, "make", lambda cfg: Greedy())
    key = RunKey(task="math-linear", agent="naive-sft", seed=0, profile="tiny", config_hash="0" * 16)
    rec = asyncio.run(RunSupervisor(key, config.load_agent("naive-sft"), config.load_profile("tiny", []), str(tmp_path / "run")).run())
    assert 20 <= rec.experiments[0].curated.per_source["math_quiz_crawl"] <= 30  # after the curator's filters
    assert rec.leak["test"] < 0.05 <= rec.leak["test[math_quiz_crawl]"] and rec.leak["test[algebra_drills]"] == 0.0
    assert rec.leak_flagged and not report.headline(rec)
    assert "of source math_quiz_crawl" in report.summarize([rec]).flagged[0].why


@pytest.mark.ray
def test_a_hostile_transform_through_real_ray_fails_its_iteration_with_the_typed_error(ray_cluster, math_domain, tmp_path, monkeypatch) -> None:
    """The peers are Ray actors: the curator's SandboxViolation must cross the actor boundary as itself."""
    class AlsoAMissingColumn(HostileThenHonest):
        async def run(self, ctx):
            typo = SRC.model_copy(update={"prompt": "Solve for x: {equaton}"})
            self.typo = await ctx.iterate(_plan("p9").model_copy(update={"recipe": DataRecipe(sources=[typo])}))
            return await super().run(ctx)

    monkeypatch.setattr(agents, "make", lambda cfg: AlsoAMissingColumn())
    prof = config.load_profile("tiny", [])
    key = RunKey(task="math-linear", agent="naive-sft", seed=0, profile="tiny", config_hash="0" * 16)
    rec = asyncio.run(RunSupervisor(key, config.load_agent("naive-sft"), prof, str(tmp_path / "run"), "ray").run())
    typo, first, second = rec.experiments
    assert typo.status == "rejected" and typo.error.startswith("recipe source 'algebra_drills': template ") and "\n" not in typo.error
    assert first.status == "failed" and first.train is None
    assert first.error.startswith("sandbox network: ") or first.error.startswith("sandbox exception: "), first.error
    assert "\n" not in first.error and "Traceback" not in first.error and "RayTaskError" not in first.error
    assert second.status == "ok" and rec.status == "ok" and rec.provenance.ok


def test_test_questions_hidden_in_the_rationale_are_flagged(math_domain, tmp_path, monkeypatch) -> None:
    """The leak check reads the whole training text: a test question as the rationale (input clean) counts."""
    from ftdojo import report

    crawl = SourceMapping(source="math_quiz_crawl", prompt="Give the answer {answer}.", rationale="{question}", answer="{answer}", max_rows=30)
    recipe = DataRecipe(sources=[SRC.model_copy(update={"max_rows": 600}), crawl], decontaminate=False)

    class Sly:
        def peers(self):
            return frozenset({"curator", "trainer"})

        async def run(self, ctx):
            exp = await ctx.iterate(_plan().model_copy(update={"recipe": recipe}))
            return Candidate(base_model=ctx.card.base_model, checkpoint=exp.train.checkpoint)

    monkeypatch.setattr(agents, "make", lambda cfg: Sly())
    key = RunKey(task="math-linear", agent="naive-sft", seed=0, profile="tiny", config_hash="0" * 16)
    rec = asyncio.run(RunSupervisor(key, config.load_agent("naive-sft"), config.load_profile("tiny", []), str(tmp_path / "run")).run())
    assert rec.experiments[0].status == "ok"
    assert not any(s.input.startswith("Solve") for s in rec.experiments[0].curated.samples if s.source == "math_quiz_crawl")
    assert rec.leak["test[math_quiz_crawl]"] >= 0.05 and rec.leak["test[algebra_drills]"] == 0.0
    assert rec.leak_flagged and not report.headline(rec)
