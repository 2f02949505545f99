"""Planner: proposes the next iteration's Plan from the task card and the experiment tree.

The reasoning is delegated to a planner backbone (``ftdojo.backbones``: the
heuristic rules or an LLM), which returns a ``PlanProposal``. The planner owns
what does not depend on the backbone: choosing the parent (the best node, or
the last one for the ``linear`` ablation), unique plan ids, and clipping the
plan to the budget that is left. A plan that trains longer on the same data
continues its parent's checkpoint (``TrainConfig.init="parent"``) rather than
repeating the parent's training from the base model.
"""

from __future__ import annotations

from ftdojo.backbones import PlannerBackbone
from ftdojo.dojo import EnvHandle
from ftdojo.messages import Exchange, LLMUsage, Plan, PlanProposal, ProposeRequest
from ftdojo.runtime import Handle
from ftdojo.search import best_node


class Planner:
    def __init__(self, backbone: PlannerBackbone, linear: bool = False, env: EnvHandle | None = None) -> None:
        self.backbone = backbone
        self.linear = linear
        self.env = env  # for the backbone's look-ups of source rows

    def usage(self) -> LLMUsage:
        return self.backbone.usage()

    def transcript(self) -> list[Exchange]:
        return list(getattr(self.backbone, "transcript", []))  # a backbone of one's own may keep none

    async def propose(self, req: ProposeRequest) -> Plan:
        card, history = req.card, req.history
        parent = (history[-1] if history and history[-1].status == "ok" else None) if self.linear else best_node(history, card.direction)
        lookup = self.env.lookup if self.env is not None else None
        p: PlanProposal = await self.backbone.propose(card, history, parent, req.base, req.left, lookup)
        train = p.train
        steps = max(1, min(train.steps, req.steps_left))
        init = train.init if parent is not None else "base"  # nothing to continue without a parent
        train = train.model_copy(update={"steps": steps, "warmup_steps": min(train.warmup_steps, max(0, steps // 5)), "init": init})
        return Plan(
            plan_id=f"it{len(history)}",
            hypothesis=p.hypothesis,
            parent=parent.id if parent else None,
            recipe=p.recipe,
            train=train,
            prompt=parent.plan.prompt if parent and parent.plan else req.prompt,
        )


class PlannerHandle(Handle):
    """The run's planner, in-process or a Ray actor."""

    actor = Planner

    async def propose(self, req: ProposeRequest) -> Plan:
        return await self._call(Planner.propose, req)

    async def usage(self) -> LLMUsage:
        return await self._call(Planner.usage)

    async def transcript(self) -> list[Exchange]:
        return await self._call(Planner.transcript)
