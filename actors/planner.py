"""Planner: proposes the next iteration's Plan from the task card and the experiment tree.

The reasoning is delegated to a planner backbone (``ftdojo.backbones``: the
heuristic rules or an LLM), which returns a ``PlanProposal``. The planner owns
what does not depend on the backbone: the default parent (the last node when
the diagnostician said continue, else the best one; always the last for the
``linear`` ablation), checking a parent the backbone names, unique plan ids,
and clipping the plan to the budget that is left. A plan that trains longer on the same data
continues its parent's checkpoint (``TrainConfig.init="parent"``) rather than
repeating the parent's training from the base model.
"""

from __future__ import annotations

from ftdojo.backbones import BackboneError, PlannerBackbone
from ftdojo.dojo import EnvHandle
from ftdojo.messages import Exchange, Experiment, LLMUsage, Plan, PlanProposal, ProposeRequest
from ftdojo.runtime import Handle
from ftdojo.search import best_node, is_probe


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
        parent = self.default_parent(history, card.direction)
        lookup = self.env.lookup if self.env is not None else None
        p: PlanProposal = await self.backbone.propose(card, history, parent, req.base, req.left, lookup)
        if p.parent is not None and not self.linear:  # the backbone builds on a node of its choice
            parent = None if p.parent == "base" else _trained(history, p.parent)
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
            probe=p.probe,
        )

    def default_parent(self, history: list[Experiment], direction: str) -> Experiment | None:
        """Where the next plan builds on unless the backbone says otherwise: the last experiment for the
        ``linear`` ablation, or when the diagnostician's decision on it was to continue it; else (a branch)
        the best full fit by dev."""
        last = history[-1] if history else None
        if self.linear:
            return last if last is not None and last.status == "ok" else None
        if last is not None and last.status == "ok" and not is_probe(last) and last.feedback is not None and last.feedback.decision == "continue":
            return last
        return best_node(history, direction)


def _trained(history: list[Experiment], node: str) -> Experiment:
    """The experiment a backbone asked to build on; a node that is not a trained one of this run fails the
    proposal (the history shows why; the backbone sees it next time)."""
    trained = {e.id: e for e in history if e.status == "ok" and e.train is not None and e.train.checkpoint}
    if node in trained:
        return trained[node]
    ok = list(trained)
    raise BackboneError(f"plan parent {node!r} is not a trained experiment of this run (trained: {ok or 'none'}); "
                        "give one of those, 'base', or leave parent out")


class PlannerHandle(Handle):
    """The run's planner, in-process or a Ray actor."""

    actor = Planner

    async def propose(self, req: ProposeRequest) -> Plan:
        return await self._call(Planner.propose, req)

    async def usage(self) -> LLMUsage:
        return await self._call(Planner.usage)

    async def transcript(self) -> list[Exchange]:
        return await self._call(Planner.transcript)
