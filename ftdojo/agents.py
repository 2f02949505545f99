"""Agent policies and their registry.

An agent decides *what* to try; the run supervisor owns *how* an iteration
runs (curate -> validate -> train -> evaluate -> record). Agents see the task
only through the ``RunContext`` the supervisor gives them: the task card,
``iterate(plan)`` and ``evaluate(candidate)`` on dev. They return the
candidate they want finalized, or None to fall back to the base model.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

from ftdojo.config import AgentConfig
from ftdojo.errors import UnknownName
from ftdojo.messages import (
    Candidate,
    DataRecipe,
    EvalReport,
    Experiment,
    Plan,
    SourceMapping,
    TaskCard,
    TrainConfig,
)
from ftdojo.runtime import call
from ftdojo.search import best_node


class RunContext(Protocol):
    card: TaskCard
    seed: int
    train: TrainConfig
    diagnostician: Any

    async def propose(self, history: list[Experiment], base: TrainConfig, steps_left: int, prompt: Any) -> Plan | Experiment: ...

    async def iterate(self, plan: Plan, validate: bool = False) -> Experiment: ...

    async def evaluate(self, candidate: Candidate) -> EvalReport: ...

    async def record(self, exp: Experiment) -> None: ...

    async def usage(self) -> dict[str, float]: ...


class Agent(Protocol):
    async def run(self, ctx: RunContext) -> Candidate | None: ...


def naive_recipe(card: TaskCard) -> DataRecipe:
    """Every raw source, mapped the way its card suggests; no curation."""
    mappings = [
        SourceMapping(
            source=s.name, prompt=s.suggested_prompt, answer=s.suggested_answer, rationale=s.suggested_rationale
        )
        for s in card.sources
        if s.suggested_prompt and s.suggested_answer
    ]
    return DataRecipe(sources=mappings, dedupe=False, decontaminate=False)


class ZeroShot:
    """The base model as is, with the task's prompt: the floor every agent must beat."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    async def run(self, ctx: RunContext) -> Candidate | None:
        candidate = Candidate(base_model=ctx.card.base_model, prompt=self.config.prompt)
        await ctx.evaluate(candidate)
        return candidate


class NaiveSFT:
    """One iteration: every raw source, the default config, no validation or feedback."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    async def run(self, ctx: RunContext) -> Candidate | None:
        plan = Plan(
            plan_id="it0",
            hypothesis="Fine-tuning on all available data in the task format teaches format and content.",
            recipe=naive_recipe(ctx.card),
            train=ctx.train.model_copy(update={"seed": ctx.seed}),
            prompt=self.config.prompt,
        )
        exp = await ctx.iterate(plan)
        return _candidate(ctx.card, exp if exp.status == "ok" else None)


def _candidate(card: TaskCard, exp: Experiment | None) -> Candidate | None:
    if exp is None or exp.train is None or exp.train.checkpoint is None:
        return None
    return Candidate(base_model=card.base_model, checkpoint=exp.train.checkpoint, prompt=exp.plan.prompt)


class FTAgent:
    """Plan -> curate -> fail-fast validate -> train -> evaluate -> diagnose, over a tree of experiments.

    Plans that fail validation cost no training and do not count against
    ``max_iterations`` (trained iterations); proposals are capped at twice that.
    The final candidate is the best node by dev (``ftdojo.search``).
    """

    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    async def run(self, ctx: RunContext) -> Candidate | None:
        card, history = ctx.card, []
        budget = card.budget
        trained = 0
        for _ in range(2 * budget.max_iterations):
            usage = await ctx.usage()
            left = int(budget.max_train_steps - usage["train_steps"])
            if trained >= budget.max_iterations or left < 1 or usage["wall_s"] > budget.max_wall_s:
                break
            plan = await ctx.propose(history, ctx.train.model_copy(update={"seed": ctx.seed}), left, self.config.prompt)
            if isinstance(plan, Experiment):  # the planner failed; the supervisor recorded it, the planner sees it next time
                history.append(plan)
                continue
            exp = await ctx.iterate(plan, validate=self.config.failfast)
            trained += exp.train is not None
            parent = next((e for e in history if e.id == plan.parent), None)
            fb = await call(ctx.diagnostician, "diagnose", exp, best_node(history, card.direction), parent, card)
            exp = exp.model_copy(update={"feedback": fb})
            await ctx.record(exp)
            history.append(exp)
            if fb.decision == "stop":
                break
        return _candidate(card, best_node(history, card.direction))


class RandomSearch:
    """Baseline: random source subsets, mappings, filters and hyper-parameters; best by dev."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    async def run(self, ctx: RunContext) -> Candidate | None:
        rng = random.Random(f"random-search:{ctx.seed}:{ctx.card.task_id}")
        card, history = ctx.card, []
        usable = [s for s in card.sources if s.suggested_prompt and s.suggested_answer]
        for i in range(card.budget.max_iterations):
            left = int(card.budget.max_train_steps - (await ctx.usage())["train_steps"])
            if left < 1 or not usable:
                break
            chosen = rng.sample(usable, rng.randint(1, len(usable)))
            recipe = DataRecipe(
                sources=[SourceMapping(source=s.name, prompt=s.suggested_prompt, answer=s.suggested_answer,  # type: ignore[arg-type]
                                       rationale=s.suggested_rationale if rng.random() < 0.5 else None) for s in chosen],
                require_parseable=rng.random() < 0.5, dedupe=rng.random() < 0.5, decontaminate=True,
            )
            train = ctx.train.model_copy(update={
                "lr": 10 ** rng.uniform(-4, -2.5), "steps": min(left, rng.choice([50, 100, 150])), "seed": ctx.seed,
            })
            plan = Plan(plan_id=f"it{i}", hypothesis="random draw", recipe=recipe, train=train, prompt=self.config.prompt)
            history.append(await ctx.iterate(plan))
        return _candidate(card, best_node(history, card.direction))


POLICIES: dict[str, Callable[[AgentConfig], Agent]] = {
    "zero-shot": ZeroShot, "naive-sft": NaiveSFT, "ft-agent": FTAgent, "random-search": RandomSearch,
}


def make(config: AgentConfig) -> Agent:
    if config.policy not in POLICIES:
        raise UnknownName("agent policy", config.policy, list(POLICIES))
    return POLICIES[config.policy](config)
