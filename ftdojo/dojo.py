"""The dojo boundary: what an agent may see (``DojoEnv``) and what it may not (``Referee``).

``DojoEnv`` is built without any reference to the test split: it knows the
raw folder and the dev file, nothing else, so no agent-facing call can return
a test item or score. It also keeps the run's budget ledger.

``Referee`` is held by the run supervisor only. It scores the final
candidate on the sealed test split, records the split's content hash,
checks every training set the run built for n-gram overlap with dev and test,
and checks the candidate's provenance (the task's base model plus a checkpoint
this run's trainer wrote, unchanged since).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from ftdojo import datafiles, evaluation, overlap, repository, runtime
from ftdojo.runtime import Handle
from ftdojo.errors import AccessDenied, BudgetExceeded, UserError
from ftdojo.messages import (Budget, Candidate, DevItem, EvalBackend, EvalReport, Provenance, RowLookup, SourceInfo, SourceRows,
                             TaskCard, Usage)
from ftdojo.datafiles import atomic_write_text
from ftdojo.paths import run_code_version, sealed_dir, sha256_file, sha256_json
from ftdojo.tasking import Row, TaskSpec
from ftdojo.registry import get_domain, get_task

N_SAMPLES = 3


class DojoEnv:
    """Agent-facing view of one task for one run."""

    def __init__(self, task_id: str, base_model: str, budget: Budget, eval_batch_size: int = 32, threads: int = 1,
                 cap: tuple[int | None, int | None] = (None, None), use_gpu: bool = False, precision: str = "auto",
                 backend: EvalBackend = EvalBackend()):
        runtime.warm("torch")  # for the first evaluate
        self._task = capped(get_task(task_id), cap)
        self._domain = get_domain(self._task.domain)
        self._raw = repository.materialize(self._domain)
        self._dev_path = repository.dev_path(self._task, self._domain)
        self._dev = datafiles.read_items(self._dev_path)
        self._base_model = base_model
        self._budget = budget
        self._eval_batch = eval_batch_size
        self._threads = threads
        self._use_gpu, self._precision, self._backend = use_gpu, precision, backend
        self._started = time.monotonic()
        self.dev_evals = 0
        self.train_steps = 0

    def describe(self) -> TaskCard:
        t = self._task
        return TaskCard(
            task_id=t.id,
            domain=t.domain,
            description=t.description,
            instruction=t.instruction,
            answer_format=t.answer_format,
            answer_template=t.answer_template,
            answer_pattern=t.answer_pattern,
            metric=t.metric,
            direction=t.direction,
            categories=list(t.categories) or sorted({i["category"] for i in self._dev}),
            base_model=self._base_model,
            budget=self._budget,
            sources=[self._source_info(s.name) for s in self._domain.sources],
            dev_size=len(self._dev),
            verifier=self._domain.verifier is not None,
        )

    def _source_info(self, name: str) -> SourceInfo:
        spec = self._domain.source(name)
        rows = self._rows(name)
        hint = spec.suggestion(self._task.id)
        return SourceInfo(
            name=spec.name,
            format=spec.format,
            fields=spec.fields or {c: c for c in (rows[0] if rows else {})},
            rows=len(rows),
            readme=(self._raw / f"{name}.md").read_text(),
            samples=rows[:N_SAMPLES],
            suggested_prompt=hint.prompt,
            suggested_answer=hint.answer,
            suggested_rationale=hint.rationale,
        )

    def read_source(self, name: str) -> SourceRows:
        """Rows of one raw source, by catalog name only (no paths)."""
        return SourceRows.of(name, self._rows(name))

    def _rows(self, name: str) -> list[Row]:
        if "/" in name or "\\" in name or name.startswith("."):
            raise AccessDenied(f"source names are catalog names, not paths: {name!r}")
        spec = self._domain.source(name)
        return datafiles.read_rows(self._raw / f"{spec.name}.{spec.format}", spec.format)

    def lookup(self, req: RowLookup) -> SourceRows:
        """A window of a source's rows (those whose fields equal ``req.where``), for a planner's look-up."""
        rows = datafiles.select(self._rows(req.source), req.where)
        return SourceRows.of(req.source, rows[req.offset : req.offset + req.n])

    def read_dev(self) -> list[DevItem]:
        return [DevItem(**item) for item in self._dev]

    def charge_train_steps(self, steps: int) -> None:
        """Reserve optimizer steps before training; raises when over budget."""
        if self.train_steps + steps > self._budget.max_train_steps:
            raise BudgetExceeded("train_steps", self._budget.max_train_steps, self.train_steps + steps)
        self.train_steps += steps

    def check_wall(self) -> None:
        used = time.monotonic() - self._started
        if used > self._budget.max_wall_s:
            raise BudgetExceeded("wall_s", self._budget.max_wall_s, used)

    def evaluate(self, candidate: Candidate, probe: bool = False) -> EvalReport:
        """Score a candidate on dev, or on its first ``Budget.probe_items`` items for a probe; each call is
        charged to the budget as one dev evaluation."""
        if self.dev_evals >= self._budget.max_dev_evals:
            raise BudgetExceeded("dev_evals", self._budget.max_dev_evals, self.dev_evals + 1)
        self.dev_evals += 1
        where = evaluation.setting(self._use_gpu, self._precision)
        limit = self._budget.probe_items if probe else None
        return _memoised(self._task, self._dev_path, candidate, "dev", self._eval_batch, self._threads, where, self._backend, limit)

    def release(self) -> None:
        """Free what dev evaluation holds on the run's GPUs (vLLM's base server, the evaluator's base) before
        the referee's test evaluation needs them; a later ``evaluate`` starts them again."""
        from ftdojo import serving

        serving.stop_all()
        if self._use_gpu:
            from ftdojo import models

            models.release_base()

    def usage(self) -> Usage:
        return Usage(dev_evals=self.dev_evals, train_steps=self.train_steps, wall_s=time.monotonic() - self._started)


class EnvHandle(Handle):
    """The run's environment, in-process or a Ray actor: what the curator, validator and trainer may call."""

    actor = DojoEnv
    on_device = True

    async def describe(self) -> TaskCard:
        return await self._call(DojoEnv.describe)

    async def read_source(self, name: str) -> SourceRows:
        return await self._call(DojoEnv.read_source, name)

    async def read_dev(self) -> list[DevItem]:
        return await self._call(DojoEnv.read_dev)

    async def lookup(self, req: RowLookup) -> SourceRows:
        return await self._call(DojoEnv.lookup, req)

    async def charge_train_steps(self, steps: int) -> None:
        await self._call(DojoEnv.charge_train_steps, steps)

    async def check_wall(self) -> None:
        await self._call(DojoEnv.check_wall)

    async def evaluate(self, candidate: Candidate, probe: bool = False) -> EvalReport:
        return await self._call(DojoEnv.evaluate, candidate, probe)

    async def usage(self) -> Usage:
        return await self._call(DojoEnv.usage)

    async def release(self) -> None:
        await self._call(DojoEnv.release)


class Referee:
    """Sealed-side scoring and integrity checks; never handed to an agent."""

    def __init__(self, task_id: str, eval_batch_size: int = 32, threads: int = 1, leak_threshold: float = overlap.DEFAULT_THRESHOLD,
                 cap: tuple[int | None, int | None] = (None, None), use_gpu: bool = False, precision: str = "auto",
                 backend: EvalBackend = EvalBackend()):
        self._task = capped(get_task(task_id), cap)
        domain = get_domain(self._task.domain)
        repository.materialize(domain)
        self._path: Path = repository.sealed_path(self._task, domain)
        self._dev_inputs = [i["input"] for i in datafiles.read_items(repository.dev_path(self._task, domain))]
        self._eval_batch = eval_batch_size
        self._threads = threads
        self._leak_threshold = leak_threshold
        self._use_gpu, self._precision, self._backend = use_gpu, precision, backend
        _preflight(backend, use_gpu, precision)

    def test_sha256(self) -> str:
        return sha256_file(self._path)

    def finalize(self, candidate: Candidate) -> EvalReport:
        """Score the final candidate on the sealed test split (the base model's report is memoised)."""
        where = evaluation.setting(self._use_gpu, self._precision)
        return _memoised(self._task, self._path, candidate, "test", self._eval_batch, self._threads, where, self._backend)

    def release(self) -> None:
        """Stop the test evaluation's server: the run's reservation goes to the next run."""
        from ftdojo import serving

        serving.stop_all()

    def provenance(self, candidate: Candidate, base_model: str, produced: dict[str, str]) -> Provenance:
        """The candidate must be the task's base model, plus (optionally) a checkpoint this run's
        trainer wrote, unchanged since: ``produced`` maps checkpoint paths to their digests."""
        from ftdojo import methods, models, training

        def bad(reason: str, digest: str | None = None) -> Provenance:
            return Provenance(ok=False, reason=reason, base_model=base_model, checkpoint_sha256=digest)

        def same(a: str, b: str) -> bool:
            try:
                return models.resolve(a) == models.resolve(b)
            except Exception:  # noqa: BLE001 - an unresolvable model is a substitution too
                return False

        if not same(candidate.base_model, base_model):
            return bad(f"candidate base model {candidate.base_model!r} is not the task's base model {base_model!r}")
        if candidate.checkpoint is None:
            return Provenance(ok=True, base_model=base_model)
        ckpt = str(Path(candidate.checkpoint))
        if not Path(ckpt).is_dir():
            return bad(f"checkpoint {ckpt} does not exist")
        digest = training.checkpoint_sha256(ckpt)
        if ckpt not in produced:
            return bad(f"checkpoint {ckpt} was not written by this run's trainer", digest)
        if produced[ckpt] != digest:
            return bad(f"checkpoint {ckpt} changed after training (sha256 {digest[:12]} != {produced[ckpt][:12]})", digest)
        trained_on = methods.of_checkpoint(ckpt).trained_on(Path(ckpt))
        if trained_on and not same(trained_on, base_model):
            return bad(f"checkpoint was trained on {trained_on!r}, not on {base_model!r}", digest)
        return Provenance(ok=True, base_model=base_model, checkpoint_sha256=digest)

    def leak_check(self, training_inputs: list[str], sources: list[str] | None = None) -> dict[str, float]:
        """Share of training texts (each example's whole text: input, rationale and answer,
        ``Example.text``) that hold a dev or test item; with ``sources`` (one name per text) also each
        source's own share overlapping test, as ``test[<source>]``, so that a small leaky source mixed
        into a large clean set is still caught."""
        test_index = overlap.OverlapIndex([i["input"] for i in datafiles.read_items(self._path)])
        hits = [test_index.contaminated(t, self._leak_threshold) for t in training_inputs]
        out = {
            "dev": overlap.contamination_rate(training_inputs, overlap.OverlapIndex(self._dev_inputs), self._leak_threshold),
            "test": sum(hits) / len(hits) if hits else 0.0,
        }
        for name in sorted(set(sources or ())):
            mine = [h for h, s in zip(hits, sources, strict=True) if s == name]
            out[f"test[{name}]"] = sum(mine) / len(mine)
        return out


def _preflight(backend: EvalBackend, use_gpu: bool, precision: str) -> None:
    """A server backend that cannot start where this process evaluates fails the run before it trains."""
    if backend.backend == "server":
        from ftdojo import serving

        why = serving.preflight(backend, evaluation.setting(use_gpu, precision)[0])
        if why:
            raise UserError(why)


def capped(task: TaskSpec, cap: tuple[int | None, int | None]) -> TaskSpec:
    """The task with the profile's evaluation caps (max new tokens, samples per item) applied: a smoke
    profile runs a reasoning task's thousands of tokens and several samples in seconds."""
    tokens, samples = cap
    update: dict[str, int] = {}
    if tokens is not None and task.max_new_tokens > tokens:
        update["max_new_tokens"] = tokens
    if samples is not None and task.samples > samples:
        update["samples"] = samples
        update["pass_k"] = min(task.pass_k, samples)
    return replace(task, **update) if update else task


def _memoised(task: TaskSpec, items_path: Path, candidate: Candidate, split: str, batch: int, threads: int,
              where: tuple[str, str] = ("cpu", "fp32"), backend: EvalBackend = EvalBackend(), limit: int | None = None) -> EvalReport:
    """Evaluate (the first ``limit`` items only, when given), reusing the base model's report from an identical
    earlier evaluation.

    Greedy decoding of the same model on the same items with the same batch, threads, device, dtype and code gives
    the same report, so a zero-shot agent's seeds (and any agent that falls back to the base model)
    evaluate once. Memos live beside the sealed splits: a test report holds test answers. A trained
    adapter is unique to its run and is never memoised."""
    memo = None
    if candidate.checkpoint is None:
        import torch

        from ftdojo import models

        weights = sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in Path(models.resolve(candidate.base_model)).rglob("*") if p.is_file())
        key = sha256_json({
            "task": task.spec_hash(), "split": split, "items": sha256_file(items_path), "candidate": candidate.model_dump(mode="json"),
            "model": weights, "batch": batch, "threads": threads, "code": run_code_version(get_domain(task.domain)), "torch": torch.__version__,
            **({"device": where[0], "dtype": where[1]} if where != ("cpu", "fp32") else {}),
            **({"backend": backend.model_dump(mode="json")} if backend.backend != "local" else {}),
            **({"limit": limit} if limit is not None else {}),
        })
        memo = sealed_dir() / "evals" / f"{task.id}-{split}-{key[:24]}.json"
    t0 = time.perf_counter()
    if memo is not None and memo.exists():
        report = EvalReport.model_validate_json(memo.read_text())
        return report.model_copy(update={"cached": True, "wall_s": time.perf_counter() - t0})
    items = datafiles.read_items(items_path)[:limit]
    if backend.backend == "server":
        from ftdojo import serving

        report = serving.evaluate(task, items, candidate, split, backend, *where)
    else:
        report = evaluation.evaluate(task, items, candidate, split, batch, threads, *where)  # type: ignore[arg-type]
    if memo is not None:
        memo.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write_text(memo, report.model_dump_json())
    return report
