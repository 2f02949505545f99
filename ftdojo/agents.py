"""Agent policies and their registry.

An agent decides *what* to try; the run supervisor owns *how* an iteration
runs (curate -> validate -> train -> evaluate -> record). Agents see the task
only through the ``RunContext`` the supervisor gives them: the task card,
``iterate(plan)`` and ``evaluate(candidate)`` on dev. They return the
candidate they want finalized, or None to fall back to the base model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ftdojo.config import AgentConfig
from ftdojo.errors import UnknownName
from ftdojo.messages import Candidate, DataRecipe, EvalReport, Experiment, Plan, SourceMapping, TaskCard, TrainConfig


class RunContext(Protocol):
    card: TaskCard
    seed: int
    train: TrainConfig

    async def iterate(self, plan: Plan) -> Experiment: ...

    async def evaluate(self, candidate: Candidate) -> EvalReport: ...


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
        if exp.status != "ok" or exp.train is None or exp.train.checkpoint is None:
            return None
        return Candidate(base_model=ctx.card.base_model, checkpoint=exp.train.checkpoint, prompt=plan.prompt)


POLICIES: dict[str, Callable[[AgentConfig], Agent]] = {"zero-shot": ZeroShot, "naive-sft": NaiveSFT}


def make(config: AgentConfig) -> Agent:
    if config.policy not in POLICIES:
        raise UnknownName("agent policy", config.policy, list(POLICIES))
    return POLICIES[config.policy](config)
