"""Data curator: executes a DataRecipe against the raw repository.

Per source: select rows (``where``), map fields into the task's input and
answer format through the mapping's templates, cap rows; data scripts make
examples from whole sources in the sandbox, synthesis steps have the data
model write for a source's rows (``ftdojo.synthesis``); then filter
(answer length, parseability by the task's own extractor, duplicates,
overlap with dev), mix by weight and cap the total. The result is a JSONL
file of ``Example`` rows in the run's workspace plus per-source and
per-reason counts, so the diagnostician can tell what each source gave.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ftdojo import overlap, sandbox, scoring, templating
from ftdojo.config import BackboneConfig
from ftdojo.errors import SandboxViolation, UserError
from ftdojo.messages import (
    CuratedData,
    DataRecipe,
    DataScript,
    Example,
    Exchange,
    LLMUsage,
    Plan,
    SourceMapping,
    SourceStats,
    Synthesis,
    TaskCard,
)
from ftdojo.paths import sha256_file
from ftdojo.dojo import EnvHandle
from ftdojo.runtime import Handle
from ftdojo.registry import get_domain
from ftdojo.datafiles import select, write_models
from ftdojo.synthesis import DataModel

N_SAMPLES = 5


class RecipeError(UserError):
    """A recipe that names a missing field or source."""


def render(template: str, row: dict[str, Any], source: str) -> str:
    try:
        return templating.render(template, row)
    except (IndexError, TypeError) as e:
        raise RecipeError(f"recipe source {source!r}: template {template!r} does not fit the row ({e}); fields: {sorted(row)}") from None
    except KeyError as e:
        raise RecipeError(f"recipe source {source!r}: template {template!r} names field {e}; fields: {sorted(row)}") from None


class Curator:
    """Builds training sets; holds a handle to the run's DojoEnv (plain or actor)."""

    def __init__(self, env: EnvHandle, workspace: str, seed: int = 0, limits: sandbox.Limits = sandbox.Limits(),
                 data_model: BackboneConfig | None = None, data_tokens: int = 0) -> None:
        self.env = env
        self.limits = limits  # of agent-written code (transforms and data scripts)
        self.data_model = DataModel(data_model, data_tokens) if data_model is not None else None
        self.workspace = Path(workspace)
        self.seed = seed
        self._card: TaskCard | None = None
        self._verifier: Any = None

    async def card(self) -> TaskCard:
        if self._card is None:
            self._card = await self.env.describe()
        return self._card

    async def curate(self, plan: Plan) -> CuratedData:
        card = await self.card()
        recipe = plan.recipe
        if recipe.verify and not card.verifier:
            raise RecipeError(f"recipe field verify: task {card.task_id} offers no answer verifier (no built-in task does: "
                              "none of the paper's tasks can compute gold answers); set verify: false and check targets "
                              "with require_parseable, agreement between sources, per-source losses or a data script")
        self._verifier = get_domain(card.domain).verifier if recipe.verify else None
        rng = random.Random(f"{self.seed}:{plan.plan_id}")
        drops: dict[str, Counter[str]] = defaultdict(Counter)  # per source, per filter
        selected: Counter[str] = Counter()
        pools: list[tuple[SourceMapping, list[Example]]] = []
        for m in recipe.sources:
            rows = select((await self.env.read_source(m.source)).dicts(), m.where)
            selected[m.source] += len(rows)
            if m.transform is not None:
                rows = await self._transform(plan.plan_id, m, rows, drops[m.source])
            pools.append((m, self._map_rows(m, rows, card, recipe, drops[m.source])))
        steps: list[DataScript | Synthesis] = [*recipe.scripts, *recipe.synthesis]
        for step in steps:  # examples made by agent-written code or by the data model, as {input, answer, rationale}
            what = "script" if isinstance(step, DataScript) else "synthesis"
            if step.name in selected:
                raise RecipeError(f"recipe {what} {step.name!r}: the name is taken by another source or step of the recipe; "
                                  "give it another name")
            if isinstance(step, DataScript):
                made = await self._script(plan.plan_id, step)
                selected[step.name] += len(made)
            else:
                made, n = await self._synthesize(card, step, drops[step.name])
                selected[step.name] += n
            for with_rationale in (False, True):
                m = SourceMapping(source=step.name, prompt="{input}", answer="{answer}", weight=step.weight,
                                  rationale="{rationale}" if with_rationale else None)
                rows = [r for r in made if bool(r.get("rationale")) == with_rationale]
                pools.append((m, self._map_rows(m, rows, card, recipe, drops[step.name])))
        dev_index = None
        if recipe.decontaminate:
            dev_index = overlap.OverlapIndex([d.input for d in await self.env.read_dev()])
        seen: set[str] = set()
        clean: list[tuple[SourceMapping, list[Example]]] = []
        for m, pool in pools:  # filter before mixing, so upsampling is not undone by dedupe
            keep = []
            for ex in pool:
                if recipe.dedupe and ex.input in seen:
                    drops[m.source]["duplicate"] += 1
                elif dev_index is not None and dev_index.contaminated(ex.text):
                    drops[m.source]["dev_overlap"] += 1
                else:
                    seen.add(ex.input)
                    keep.append(ex)
            clean.append((m, keep))
        stats = {}
        for name in selected:
            exs = [ex for m, pool in clean if m.source == name for ex in pool]
            stats[name] = SourceStats(
                rows=selected[name], dropped=dict(drops[name]), kept=len(exs),
                input_chars=round(sum(len(e.input) for e in exs) / len(exs), 1) if exs else 0.0,
                completion_chars=round(sum(len(e.completion) for e in exs) / len(exs), 1) if exs else 0.0,
                max_completion_chars=max((len(e.completion) for e in exs), default=0))
        dropped = sum(drops.values(), Counter())
        kept = self._mix(clean, recipe, rng)
        if recipe.max_examples is not None:
            kept = kept[: recipe.max_examples]
        path = self.workspace / plan.plan_id / "train.jsonl"
        write_models(path, kept)
        return CuratedData(
            plan_id=plan.plan_id,
            path=str(path),
            sha256=sha256_file(path),
            n_examples=len(kept),
            per_source=dict(Counter(e.source for e in kept)),
            dropped=dict(dropped),
            samples=kept[:N_SAMPLES],
            sources=stats,
        )

    async def _transform(
        self, plan_id: str, m: SourceMapping, rows: list[dict[str, Any]], dropped: Counter[str]
    ) -> list[dict[str, Any]]:
        """The mapping's agent-written transform, run in the sandbox; None drops a row."""
        import asyncio

        ws = self.workspace / plan_id / "sandbox"
        results = await asyncio.to_thread(sandbox.run, m.transform or "", "transform", rows, ws, self.limits)
        out = []
        for i, r in enumerate(results):
            if r is None:
                dropped["transform"] += 1
            elif isinstance(r, dict) and all(isinstance(k, str) for k in r):
                out.append(r)
            else:
                raise SandboxViolation("bad_output", f"source {m.source!r}: transform returned {type(r).__name__} for row {i}; return a dict or None")
        return out

    async def _script(self, plan_id: str, script: DataScript) -> list[dict[str, str]]:
        """The script's examples, made in the sandbox from whole sources (typed errors as for a transform)."""
        import asyncio

        sources = {name: (await self.env.read_source(name)).dicts() for name in script.inputs}
        n, cap = sum(len(v) for v in sources.values()), self.limits.max_rows
        if n > cap:
            raise SandboxViolation("bad_output", f"script {script.name!r}: {n} input rows exceed the sandbox limit of {cap}")
        code = script.code + "\n\ndef _ftdojo_script(job):\n    return script(job)\n"  # the entry: the sandbox calls it once
        ws = self.workspace / plan_id / "sandbox"
        [made] = await asyncio.to_thread(sandbox.run, code, "_ftdojo_script", [sources], ws, self.limits)
        if not isinstance(made, list):
            raise SandboxViolation("bad_output", f"script {script.name!r} returned {type(made).__name__}; return a list of "
                                                 '{"input": ..., "answer": ..., "rationale": ...} dicts')
        for i, ex in enumerate(made):
            if not (isinstance(ex, dict) and isinstance(ex.get("input"), str) and isinstance(ex.get("answer"), (str, int, float))
                    and isinstance(ex.get("rationale", ""), str)):
                raise SandboxViolation("bad_output", f"script {script.name!r}: example {i} is not "
                                                     '{"input": str, "answer": str, "rationale": str (optional)}')
        return [{"input": ex["input"], "answer": str(ex["answer"]), "rationale": ex.get("rationale", "")} for ex in made]

    async def _synthesize(self, card: TaskCard, step: Synthesis, dropped: Counter[str]) -> tuple[list[dict[str, str]], int]:
        """The data model's examples for the step's rows, and how many rows it sent."""
        if self.data_model is None:
            raise RecipeError(f"recipe synthesis {step.name!r}: this agent has no data model; set data_model (or an llm "
                              "backbone) in the agent's config, or drop the step")
        rows = select((await self.env.read_source(step.source)).dicts(), step.where)[: step.max_rows]
        pairs = [(render(step.prompt, r, step.source), "" if step.produce == "answer" else render(step.answer, r, step.source).strip())
                 for r in rows]
        made, why = await self.data_model.write(card, step, pairs)
        dropped.update(why)
        return made, len(rows)

    def usage(self) -> LLMUsage:
        """What the data model has spent."""
        return self.data_model.usage() if self.data_model else LLMUsage()

    def transcript(self) -> list[Exchange]:
        """The data model's exchanges."""
        return self.data_model.transcript() if self.data_model else []

    def release(self) -> None:
        """Stop the data model's server, if the run started one."""
        if self.data_model is not None:
            self.data_model.release()

    def _map_rows(
        self, m: SourceMapping, rows: list[dict[str, Any]], card: TaskCard, recipe: DataRecipe, dropped: Counter[str]
    ) -> list[Example]:
        out: list[Example] = []
        for row in rows:  # rows the mapping's ``where`` selected
            answer = render(m.answer, row, m.source).strip()
            completion = card.answer_template.format(answer=answer)
            if m.rationale:
                completion = f"{render(m.rationale, row, m.source).strip()}\n{completion}"
            if len(answer) < recipe.min_answer_chars:
                dropped["short_answer"] += 1
                continue
            if recipe.require_parseable and scoring.extract(completion, card.answer_pattern) is None:
                dropped["unparseable"] += 1
                continue
            task_input = render(m.prompt, row, m.source)
            if self._verifier is not None and self._verifier(task_input, answer) is False:
                dropped["verifier"] += 1
                continue
            out.append(Example(input=task_input, completion=completion, source=m.source))
            if m.max_rows is not None and len(out) >= m.max_rows:
                break
        return out

    @staticmethod
    def _mix(pools: list[tuple[SourceMapping, list[Example]]], recipe: DataRecipe, rng: random.Random) -> list[Example]:
        """Weighted mix: each source contributes in proportion to weight x size, shuffled."""
        mixed: list[Example] = []
        for m, pool in pools:
            take = min(len(pool), round(len(pool) * min(m.weight, 1.0)))
            mixed += rng.sample(pool, take)
            repeats = m.weight - 1.0
            while repeats > 0 and pool:  # weight > 1 upsamples
                mixed += rng.sample(pool, min(len(pool), round(len(pool) * min(repeats, 1.0))))
                repeats -= 1.0
        rng.shuffle(mixed)
        return mixed


class CuratorHandle(Handle):
    """The run's curator, in-process or a Ray actor."""

    actor = Curator

    async def curate(self, plan: Plan) -> CuratedData:
        return await self._call(Curator.curate, plan)

    async def usage(self) -> LLMUsage:
        return await self._call(Curator.usage)

    async def transcript(self) -> list[Exchange]:
        return await self._call(Curator.transcript)

    async def release(self) -> None:
        await self._call(Curator.release)
