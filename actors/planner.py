"""Planner: proposes the next iteration's Plan from the task card and the experiment tree.

The reasoning is delegated to a backbone (``ftdojo.backbones``): the
deterministic heuristic expert policy below, or an LLM. The planner owns
what does not depend on the backbone: choosing the parent (the best node, or
the last one for the ``linear`` ablation), unique plan ids, and clipping the
plan to the budget that is left. A plan that trains longer on the same data
continues its parent's adapter (``TrainConfig.init="parent"``) rather than
repeating the parent's training from the base model.
"""

from __future__ import annotations

from typing import Any

from ftdojo.messages import (
    DataRecipe,
    Experiment,
    Plan,
    PromptSpec,
    SourceMapping,
    TaskCard,
    TrainConfig,
)
from ftdojo.search import best_node


def reasoning_first_recipe(card: TaskCard, exclude: set[str] = frozenset()) -> DataRecipe:  # type: ignore[assignment]
    """Sources with worked reasoning, mapped with it; all sources if none has any."""
    usable = [s for s in card.sources if s.suggested_prompt and s.suggested_answer and s.name not in exclude]
    reasoning = [s for s in usable if s.suggested_rationale]
    chosen = reasoning or usable
    return DataRecipe(
        sources=[
            SourceMapping(source=s.name, prompt=s.suggested_prompt, answer=s.suggested_answer, rationale=s.suggested_rationale)  # type: ignore[arg-type]
            for s in chosen
        ],
        require_parseable=True,
        verify=card.verifier,
        dedupe=True,
        decontaminate=True,
    )


class HeuristicPolicy:
    """Deterministic expert rules over the same messages an LLM backbone reads."""

    name = "heuristic"

    async def propose(self, card: TaskCard, history: list[Experiment], parent: Experiment | None, base: TrainConfig) -> tuple[str, DataRecipe, TrainConfig]:
        if not history:
            return (
                "Worked reasoning traces teach a small model the intermediate steps; keep only examples whose "
                "target parses in the task format, drop duplicates and dev overlap.",
                reasoning_first_recipe(card),
                base,
            )
        last = history[-1]
        codes = {f.code for f in (last.feedback.findings if last.feedback else [])}
        src = parent.plan if parent is not None and parent.plan else last.plan
        recipe, train = (src.recipe, src.train.model_copy(update={"init": "base"})) if src else (reasoning_first_recipe(card), base)
        noisy = {f.message.split(":")[0] for f in (last.feedback.findings if last.feedback else []) if f.code == "suspected_noise"}
        if last.plan is None:  # the backbone failed last time: fall back to the parent or the first plan
            return "Previous proposal failed; retry from the best node.", (src.recipe if parent else reasoning_first_recipe(card)), (src.train if parent else base)
        if last.status == "rejected":
            failed = {c.name for c in (last.validation.checks if last.validation else []) if c.status == "fail"}
            recipe, train = last.plan.recipe, last.plan.train
            notes = []
            if failed & {"non_empty", "targets_parseable", "well_formed"}:
                recipe, notes = reasoning_first_recipe(card), notes + ["rebuild the recipe from the catalog's suggested mappings"]
            if "truncation" in failed:
                train, notes = train.model_copy(update={"max_length": train.max_length * 2}), notes + ["double max_length"]
            if failed & {"learning_rate", "smoke_train"}:
                lr = min(max(train.lr, 1e-5), 1e-3) if "learning_rate" in failed else train.lr / 3
                train, notes = train.model_copy(update={"lr": lr}), notes + [f"learning rate to {lr:g}"]
            if "target_modules" in failed:
                train, notes = train.model_copy(update={"target_modules": TrainConfig().target_modules}), notes + ["default target modules"]
            if "dev_overlap" in failed:
                recipe, notes = recipe.model_copy(update={"decontaminate": True}), notes + ["decontaminate against dev"]
            return f"Fix the failed checks {sorted(failed)}: " + ", ".join(notes or ["retry"]) + ".", recipe, train
        if last.status == "failed":
            return "Training crashed; retry the parent's data with a lower learning rate.", recipe, train.model_copy(update={"lr": train.lr / 2})
        if noisy and card.verifier and not recipe.verify:
            return f"Suspected label noise in {sorted(noisy)}: keep only examples the task's verifier accepts.", recipe.model_copy(update={"verify": True}), train
        if noisy:
            kept = [m for m in recipe.sources if m.source not in noisy]
            if kept:
                return f"Drop sources with suspected label noise: {sorted(noisy)}.", recipe.model_copy(update={"sources": kept}), train
        if "diverged" in codes:
            return "Loss diverged: lower the learning rate 3x.", recipe, train.model_copy(update={"lr": train.lr / 3})
        if "format_errors" in codes and not recipe.require_parseable:
            return "Many outputs are unparseable: train only on targets in the task format.", recipe.model_copy(update={"require_parseable": True}), train
        if "underfit" in codes and "regression" not in codes:
            return ("Loss was still falling: continue training the parent's adapter on the same data.", recipe,
                    train.model_copy(update={"steps": int(train.steps * 1.5), "init": "parent"}))
        if "regression" in codes or "overfit" in codes:
            return "The last change hurt dev: from the best node, halve the learning rate.", recipe, train.model_copy(update={"lr": train.lr / 2})
        return ("Plateau: continue the parent's adapter at a slightly lower learning rate.", recipe,
                train.model_copy(update={"steps": int(train.steps * 1.25), "lr": train.lr * 0.7, "init": "parent"}))


class Planner:
    def __init__(self, backbone: Any, linear: bool = False) -> None:
        self.backbone = backbone
        self.linear = linear

    def usage(self) -> dict[str, int]:
        return dict(getattr(self.backbone, "usage", {}))

    async def propose(
        self, card: TaskCard, history: list[Experiment], base: TrainConfig, steps_left: int, prompt: PromptSpec = PromptSpec()
    ) -> Plan:
        parent = (history[-1] if history and history[-1].status == "ok" else None) if self.linear else best_node(history, card.direction)
        hypothesis, recipe, train = await self.backbone.propose(card, history, parent, base)
        steps = max(1, min(train.steps, steps_left))
        init = train.init if parent is not None else "base"  # nothing to continue without a parent
        train = train.model_copy(update={"steps": steps, "warmup_steps": min(train.warmup_steps, max(0, steps // 5)), "init": init})
        return Plan(
            plan_id=f"it{len(history)}",
            hypothesis=hypothesis,
            parent=parent.id if parent else None,
            recipe=recipe,
            train=train,
            prompt=parent.plan.prompt if parent and parent.plan else prompt,
        )
