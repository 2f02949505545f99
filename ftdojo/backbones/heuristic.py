"""The heuristic backbone: deterministic expert rules, the offline default and a baseline.

It reads the same messages an LLM backbone reads and answers with the same
models (``PlanProposal``, ``Verdict``). First plan: the sources with worked
reasoning, only parseable targets, no duplicates or dev overlap. Later plans
react to the last experiment: fix the checks that failed, drop sources the
diagnostician suspects of label noise (by their fit losses; a task that offers a
verifier is filtered with it instead),
lower a diverging learning rate, continue an under-fit adapter, and back off
from a regression.
"""

from __future__ import annotations

from ftdojo import recipes
from ftdojo.messages import (
    DataRecipe,
    Exchange,
    Experiment,
    Feedback,
    LLMUsage,
    PlanProposal,
    TaskCard,
    TrainConfig,
    Verdict,
)


class HeuristicBackbone:
    """Deterministic expert rules over the same messages an LLM backbone reads (planner and diagnostician)."""

    name = "heuristic"

    def __init__(self) -> None:
        self.transcript: list[Exchange] = []  # rules ask no model

    def usage(self) -> LLMUsage:
        return LLMUsage()

    async def diagnose(self, exp: Experiment, rules: Feedback) -> Verdict:
        """The rules' decision stands; the heuristic adds no findings of its own."""
        return Verdict(decision=rules.decision)

    async def propose(self, card: TaskCard, history: list[Experiment], parent: Experiment | None, base: TrainConfig,
                      left: object = None, lookup: object = None) -> PlanProposal:
        """The rules read the card and the tree; they need neither the budget left nor more rows."""
        hypothesis, recipe, train = self._rules(card, history, parent, base)
        return PlanProposal(hypothesis=hypothesis, recipe=recipe, train=train)

    def _rules(self, card: TaskCard, history: list[Experiment], parent: Experiment | None, base: TrainConfig) -> tuple[str, DataRecipe, TrainConfig]:
        if not history:
            return (
                "Worked reasoning traces teach a small model the intermediate steps; keep only examples whose "
                "target parses in the task format, drop duplicates and dev overlap.",
                recipes.reasoning_first(card),
                base,
            )
        last = history[-1]
        codes = {f.code for f in (last.feedback.findings if last.feedback else [])}
        src = parent.plan if parent is not None and parent.plan else last.plan
        recipe, train = (src.recipe, src.train.model_copy(update={"init": "base"})) if src else (recipes.reasoning_first(card), base)
        noisy = {f.message.split(":")[0] for f in (last.feedback.findings if last.feedback else []) if f.code == "suspected_noise"}
        if last.plan is None:  # the backbone failed last time: fall back to the parent or the first plan
            return "Previous proposal failed; retry from the best node.", (src.recipe if parent else recipes.reasoning_first(card)), (src.train if parent else base)
        if last.status == "rejected":
            failed = {c.name for c in (last.validation.checks if last.validation else []) if c.status == "fail"}
            recipe, train = last.plan.recipe, last.plan.train
            notes = []
            if failed & {"non_empty", "targets_parseable", "well_formed"}:
                recipe, notes = recipes.reasoning_first(card), notes + ["rebuild the recipe from the catalog's suggested mappings"]
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
