"""Agent policies and their registry.

An agent decides *what* to try; the run supervisor owns *how* an iteration
runs (curate -> validate -> train -> evaluate), the run's single experiment
history and its record. An agent reaches the task only through the
``RunContext`` the supervisor gives it — the task card, ``propose``,
``iterate``, ``diagnose``, ``evaluate`` on dev, ``usage`` and ``history`` —
and declares the peers it needs (``peers``); the supervisor spawns exactly
those. It returns the candidate it wants finalized, or None to fall back to
the base model.

Adding a policy is one class here under ``@policy("name")`` and a YAML in
``configs/agents/`` whose ``policy`` names it; nothing else changes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal, Protocol, TypeVar

from ftdojo import config, recipes
from ftdojo.config import AgentConfig
from ftdojo.errors import UnknownName
from ftdojo.messages import Candidate, DataRecipe, EvalReport, Experiment, Plan, PromptSpec, TaskCard, TrainConfig, Usage
from ftdojo.search import best_node

MAX_PROBES = 4
"""Probes an FT-Agent run may propose beside its full fits (the heuristic's: two candidates from the base model,
then a continuation of a leader that overturned the first and its refinement)."""

Peer = Literal["curator", "validator", "trainer", "planner", "diagnostician"]


class RunContext(Protocol):
    """What the supervisor offers an agent: no referee, no test split, no supervisor internals."""

    card: TaskCard
    seed: int
    train: TrainConfig
    """The agent's training config with the profile's overrides and the run's seed."""

    async def propose(self, steps_left: int, prompt: PromptSpec) -> Plan | None:
        """The planner's next plan over the run's history; None when the planner failed (recorded)."""
        ...

    async def iterate(self, plan: Plan, validate: bool = False) -> Experiment:
        """Curate, (validate,) train and evaluate one plan; every failure becomes the experiment's status."""
        ...

    async def diagnose(self, exp: Experiment) -> Experiment:
        """The experiment with the diagnostician's feedback attached, as recorded in the history."""
        ...

    async def evaluate(self, candidate: Candidate) -> EvalReport: ...

    async def usage(self) -> Usage: ...

    async def history(self) -> list[Experiment]: ...


class Agent(Protocol):
    def peers(self) -> frozenset[Peer]:
        """The peer actors this agent's run needs."""
        ...

    async def run(self, ctx: RunContext) -> Candidate | None: ...


POLICIES: dict[str, Callable[[AgentConfig], Agent]] = {}
"""Policy name -> agent class, filled by ``@policy``."""

A = TypeVar("A")


def policy(name: str) -> Callable[[A], A]:
    """Register an agent class under the policy name an agent YAML gives."""

    def register(cls: A) -> A:
        POLICIES[name] = cls  # type: ignore[assignment]
        return cls

    return register


def candidate_of(card: TaskCard, exp: Experiment | None) -> Candidate | None:
    """The candidate an experiment trained, or None when it trained nothing."""
    if exp is None or exp.train is None or exp.train.checkpoint is None:
        return None
    return Candidate(base_model=card.base_model, checkpoint=exp.train.checkpoint, prompt=exp.plan.prompt)  # type: ignore[union-attr]


@policy("zero-shot")
class ZeroShot:
    """The base model as is, with the task's prompt: the floor every agent must beat."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    def peers(self) -> frozenset[Peer]:
        return frozenset()

    async def run(self, ctx: RunContext) -> Candidate | None:
        candidate = Candidate(base_model=ctx.card.base_model, prompt=self.config.prompt)
        await ctx.evaluate(candidate)
        return candidate


@policy("naive-sft")
class NaiveSFT:
    """One iteration: every raw source, the default config, no validation or feedback."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    def peers(self) -> frozenset[Peer]:
        return frozenset({"curator", "trainer"})

    async def run(self, ctx: RunContext) -> Candidate | None:
        plan = Plan(
            plan_id="it0",
            hypothesis="Fine-tuning on all available data in the task format teaches format and content.",
            recipe=recipes.naive(ctx.card),
            train=ctx.train,
            prompt=self.config.prompt,
        )
        exp = await ctx.iterate(plan)
        return candidate_of(ctx.card, exp if exp.status == "ok" else None)


@policy("ft-agent")
class FTAgent:
    """Plan -> curate -> fail-fast validate -> train -> evaluate -> diagnose, over a tree of experiments.

    Plans that fail validation cost no training and, like probes (``Plan.probe``), do not count against
    ``max_iterations`` (trained full fits); proposals are capped at twice that plus ``MAX_PROBES``. The
    diagnostician's ``stop`` ends the run; ``continue`` and ``branch`` choose where the next plan builds
    (``actors.planner``). The final candidate is the best full fit by dev (``ftdojo.search``), or the best
    probe when no full fit trained.
    """

    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    def peers(self) -> frozenset[Peer]:
        need: set[Peer] = {"curator", "trainer", "planner", "diagnostician"}
        return frozenset(need | {"validator"} if self.config.failfast else need)

    async def run(self, ctx: RunContext) -> Candidate | None:
        budget = ctx.card.budget
        trained = 0
        for _ in range(2 * budget.max_iterations + MAX_PROBES):
            usage = await ctx.usage()
            left = budget.max_train_steps - usage.train_steps
            if trained >= budget.max_iterations or left < 1 or usage.dev_evals >= budget.max_dev_evals or usage.wall_s > budget.max_wall_s:
                break
            plan = await ctx.propose(left, self.config.prompt)
            if plan is None:  # the planner failed; the history shows it, the planner sees it next time
                continue
            exp = await ctx.iterate(plan, validate=self.config.failfast)
            trained += exp.train is not None and not plan.probe
            exp = await ctx.diagnose(exp)
            if exp.feedback is not None and exp.feedback.decision == "stop":
                break
        history = await ctx.history()
        return candidate_of(ctx.card, best_node(history, ctx.card.direction) or best_node(history, ctx.card.direction, probes=True))


@policy("reference")
class Reference:
    """The suite authors' recipe for a built-in task (``recipes.reference``), trained once with the whole
    step budget: the ceiling the report normalises each agent's score by,
    (agent - zero-shot) / (reference - zero-shot)."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    def peers(self) -> frozenset[Peer]:
        return frozenset({"curator", "trainer"})

    async def run(self, ctx: RunContext) -> Candidate | None:
        from ftdojo.registry import get_domain

        card = ctx.card
        roles = {s.name: s.role for s in get_domain(card.domain).sources}
        steps = min(card.budget.max_train_steps, card.budget.max_iterations * ctx.train.steps)
        plan = Plan(plan_id="it0", hypothesis="The suite's reference recipe: worked reasoning (with the clean sources "
                    "where the input shows the answer), noise left out, one fit over the whole step budget.",
                    recipe=recipes.reference(card, roles), train=ctx.train.model_copy(update={"steps": steps}),
                    prompt=self.config.prompt)
        exp = await ctx.iterate(plan)
        return candidate_of(card, exp if exp.status == "ok" else None)


@policy("random-search")
class RandomSearch:
    """Baseline: random source subsets, mappings, filters and hyper-parameters; best by dev."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    def peers(self) -> frozenset[Peer]:
        return frozenset({"curator", "trainer"})

    async def run(self, ctx: RunContext) -> Candidate | None:
        rng = random.Random(f"random-search:{ctx.seed}:{ctx.card.task_id}")
        card = ctx.card
        usable = recipes.mappable(card)
        for i in range(card.budget.max_iterations):
            left = card.budget.max_train_steps - (await ctx.usage()).train_steps
            if left < 1 or not usable:
                break
            chosen = rng.sample(usable, rng.randint(1, len(usable)))
            recipe = DataRecipe(
                sources=[recipes.suggested(s, rationale=rng.random() < 0.5) for s in chosen],
                require_parseable=rng.random() < 0.5, dedupe=rng.random() < 0.5, decontaminate=True,
            )
            train = ctx.train.model_copy(update={"lr": 10 ** rng.uniform(-4, -2.5), "steps": min(left, rng.choice([50, 100, 150]))})
            plan = Plan(plan_id=f"it{i}", hypothesis="random draw", recipe=recipe, train=train, prompt=self.config.prompt)
            await ctx.iterate(plan)
        return candidate_of(card, best_node(await ctx.history(), card.direction))


def load(name: str) -> AgentConfig:
    """An agent YAML (name or path) whose policy is a registered one."""
    return config.load_agent(name, sorted(POLICIES))


def make(cfg: AgentConfig) -> Agent:
    if cfg.policy not in POLICIES:
        raise UnknownName("agent policy", cfg.policy, list(POLICIES))
    return POLICIES[cfg.policy](cfg)
