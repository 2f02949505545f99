"""The heuristic backbone: deterministic expert rules, the offline default and a baseline.

It reads the same messages an LLM backbone reads and answers with the same
models (``PlanProposal``, ``Verdict``). Before spending the budget it searches
the data space with probes (``Plan.probe``: a short fit scored on a slice of
dev): the worked-reasoning sources alone and those beside the answer-only
sources the cards map into the task's format, each from the base model. A
mixture that beats the traces is continued for one more probe to show that it
still rises (and, while it does, once more without the sources its fit losses
name as noisy); one that has plateaued hands the budget back to the traces. The
full fit continues the winning probe's adapter. Later plans act on the diagnostician's
decision: on ``continue`` they build on the last fit (more steps while the loss
falls, a lower learning rate on a plateau, the noisy sources dropped, only
parseable targets), on ``branch`` they go back to the best node and try the
next-best probe's data or a lower learning rate, and ``stop`` ends the run
(``FTAgent``). Rejected plans get their failed checks fixed. Without the tree
(the ``linear`` ablation) there are no probes.
"""

from __future__ import annotations

from ftdojo import recipes
from ftdojo.messages import (
    Budget,
    DataRecipe,
    Exchange,
    Experiment,
    Feedback,
    LLMUsage,
    PlanProposal,
    Remaining,
    TaskCard,
    TrainConfig,
    Verdict,
)
from ftdojo.search import PROBE_MARGIN_SE, best_node, best_score, better, is_probe, noise_margin

PROBE_SHARE = 0.15
"""A probe's optimizer steps as a share of the run's step budget (24 of the calibration's 160), at most half
a full fit's. Measured on the bundled model (bench/RESULTS.md): at 24 steps the probes picked the data the
full fits and the reference favour on chem-rings and bio-gc; at 10% (16 steps) they ranked both the other
way round and the runs ended 20 and 38 points lower."""
MIN_PROBE_STEPS = 4


def probe_steps(budget: Budget, full_steps: int) -> int:
    return max(MIN_PROBE_STEPS, min(round(budget.max_train_steps * PROBE_SHARE), full_steps // 2))


def suspected_noise(experiments: list[Experiment]) -> set[str]:
    """Sources the diagnostician found fitted far worse than the rest (``suspected_noise``) in any of them."""
    return {f.message.split(":")[0] for e in experiments if e.feedback for f in e.feedback.findings if f.code == "suspected_noise"}


def candidates(card: TaskCard) -> list[tuple[str, DataRecipe]]:
    """The data choices the probes compare from the base model, in order of preference: the first is the
    rules' own choice (worked reasoning), and a later one wins only by beating it by more than the dev noise."""
    usable = recipes.mappable(card)
    traces = [s for s in usable if s.suggested_rationale]
    answers = [s for s in usable if not s.suggested_rationale]
    out = [("the worked-reasoning sources alone" if traces else "every mapped source", recipes.reasoning_first(card))]
    if traces and answers:
        out.append(("worked reasoning beside the answer-only sources mapped into the task's format", recipes.mixture(card, traces, answers)))
    return out


def refinement(card: TaskCard, node: Experiment) -> tuple[str, DataRecipe] | None:
    """The node's data without the answer-only sources its own fit losses name as noisy (None: none named, or
    nothing would be left of them). Drawn from that one fit's evidence, so a node is refined at most once."""
    if node.plan is None:
        return None
    noisy = suspected_noise([node])
    traces = {s.name for s in recipes.mappable(card) if s.suggested_rationale}
    pool = [m for m in node.plan.recipe.sources if m.source not in traces]
    kept = [m for m in pool if m.source not in noisy]
    if not kept or len(kept) == len(pool):
        return None
    dropped = sorted({m.source for m in pool} - {m.source for m in kept})
    sources = [m for m in node.plan.recipe.sources if m.source in traces or m.source not in noisy]
    return (f"the same without the sources whose fit loss suggests label noise ({', '.join(dropped)})",
            node.plan.recipe.model_copy(update={"sources": sources}))


class HeuristicBackbone:
    """Deterministic expert rules over the same messages an LLM backbone reads (planner and diagnostician).

    ``tree=False`` (the ``linear`` ablation) plans without probes: one line of fits."""

    name = "heuristic"

    def __init__(self, tree: bool = True) -> None:
        self.tree = tree
        self.transcript: list[Exchange] = []  # rules ask no model

    def usage(self) -> LLMUsage:
        return LLMUsage()

    async def diagnose(self, exp: Experiment, rules: Feedback) -> Verdict:
        """The rules' decision stands; the heuristic adds no findings of its own."""
        return Verdict(decision=rules.decision)

    async def propose(self, card: TaskCard, history: list[Experiment], parent: Experiment | None, base: TrainConfig,
                      left: Remaining | None = None, lookup: object = None) -> PlanProposal:
        """The rules read the card, the tree and the budget left; they need no more rows."""
        searched = self._search(card, history, base, left) if self.tree else None
        if searched is not None:
            return searched
        hypothesis, recipe, train, node = self._rules(card, history, parent, base, left)
        return PlanProposal(hypothesis=hypothesis, recipe=recipe, train=train, parent=node)

    def _search(self, card: TaskCard, history: list[Experiment], base: TrainConfig, left: Remaining | None) -> PlanProposal | None:
        """The probe phase, before any full fit: the next probe while the budget affords it, then the full fit
        from the winning probe. None once a full fit exists, or when there is one candidate only.

        The probes from the base model compare the candidates at equal steps. A probe measures how fast data
        teaches the task, not where it ends: answer-only examples teach the answer format within a few steps
        and then plateau, worked reasoning is learned slower and keeps rising (table-extreme, bench/RESULTS.md:
        the mixture's probe led the traces' 36.7 to 6.7 and its full fit ended at 38.3, where the traces alone
        reach 57 at the full budget). So a probe that overturns the rules' own choice must show it is still
        rising: its adapter continues for one more probe on the same data (and, while it rises, once more
        without the sources its fit losses name as noisy). Unless it gains more than the noise, the full fit
        goes to the rules' own choice."""
        if any(e.plan is not None and not e.plan.probe for e in history):
            return None
        choices = candidates(card)
        if len(choices) < 2:
            return None
        probes = [e for e in history if is_probe(e)]
        roots = [e for e in probes if e.parent is None]  # the probes from the base model
        steps = probe_steps(card.budget, base.steps)
        tried = [e.plan.recipe for e in roots if e.plan is not None]
        pending = [(why, r) for why, r in choices if r not in tried]
        if pending and _affords(card, left, len(pending), steps, base.steps):
            why, recipe = pending[0]
            return PlanProposal(
                hypothesis=f"Probe {why}: {steps} steps scored on {card.budget.probe_items} dev items, to compare the "
                           "data choices before spending the budget.",
                recipe=recipe, train=base.model_copy(update={"steps": steps, "init": "base"}), parent="base", probe=True)
        leader = best_node(roots, card.direction, probes=True)
        if leader is None or leader.plan is None or leader.dev is None:
            return None  # every probe failed: the rules' first plan from the base model
        winner, why = leader, ""
        own = next((e for e in roots if e.status == "ok" and e.dev is not None and e.plan is not None and e.plan.recipe == choices[0][1]), None)
        if own is not None and own.id != leader.id:
            follow = [e for e in probes if e.parent == leader.id]
            more = base.model_copy(update={"steps": steps, "init": "parent", "lr": base.lr})
            affords = _affords(card, left, 1, steps, base.steps)
            if not follow and affords:
                return PlanProposal(
                    hypothesis=f"Probe {leader.id} ({leader.dev.score:.1%}) beat the rules' own choice {own.id} "
                               f"({own.dev.score:.1%}) after {leader.plan.train.steps} steps; continue its adapter for "
                               f"{steps} more on the same data to see whether it still rises or has plateaued.",
                    recipe=leader.plan.recipe, train=more, parent=leader.id, probe=True)
            scored = [e for e in follow if e.status == "ok" and e.dev is not None]
            margin = noise_margin(leader.dev)
            rising = [e for e in scored if better(e.dev.score, leader.dev.score, card.direction, margin)]  # type: ignore[union-attr]
            refined = refinement(card, leader)
            top = best_node(scored, card.direction, probes=True)
            # a refinement must beat the continuation by the probes' bar: past the metric's best score it cannot
            beatable = top is not None and top.dev is not None and better(
                best_score(card.direction), top.dev.score, card.direction, PROBE_MARGIN_SE * noise_margin(top.dev))
            if rising and beatable and refined is not None and affords and refined[1] not in [e.plan.recipe for e in follow if e.plan]:
                return PlanProposal(
                    hypothesis=f"Probe {follow[0].id} rose above {leader.id}; continue {leader.id}'s adapter for {steps} "
                               f"steps on {refined[0]}.",
                    recipe=refined[1], train=more, parent=leader.id, probe=True)
            if scored and not rising:
                winner = own
                why = (f" Probe {leader.id} led on the first probe but its continuation {scored[0].id} "
                       f"({scored[0].dev.score:.1%}) gained no more than the noise ({margin:.1%}): it has plateaued, "  # type: ignore[union-attr]
                       f"so the budget goes to the rules' own choice, which the probes cannot judge at {steps} steps.")
            elif top is not None:
                winner = top
        steps_left = left.train_steps if left is not None else card.budget.max_train_steps
        last_eval = left is not None and left.dev_evals <= 1  # no later fit could be scored: spend the rest now
        main = steps_left if steps_left < 1.5 * base.steps or last_eval else base.steps  # no stub of a fit left over
        others = ", ".join(f"{e.id} {e.dev.score:.1%}" for e in probes if e.dev is not None and e.id != winner.id)
        return PlanProposal(
            hypothesis=f"Probe {winner.id} scored {winner.dev.score:.1%} on dev's first {winner.dev.n} items (others: "  # type: ignore[union-attr]
                       f"{others or 'none scored'}): continue its adapter on its data for the full fit." + why,
            recipe=winner.plan.recipe, train=winner.plan.train.model_copy(update={"steps": main, "init": "parent", "lr": base.lr}),  # type: ignore[union-attr]
            parent=winner.id)

    def _rules(self, card: TaskCard, history: list[Experiment], parent: Experiment | None, base: TrainConfig,
               left: Remaining | None) -> tuple[str, DataRecipe, TrainConfig, str | None]:
        """(hypothesis, recipe, train, parent: None for the planner's choice) after the probe phase."""
        if not any(e.plan is not None and not e.plan.probe for e in history):
            return (
                "Worked reasoning traces teach a small model the intermediate steps; keep only examples whose "
                "target parses in the task format, drop duplicates and dev overlap.",
                recipes.reasoning_first(card),
                base,
                "base" if history else None,
            )
        last = history[-1]
        findings = last.feedback.findings if last.feedback else []
        codes = {f.code for f in findings}
        src = parent.plan if parent is not None and parent.plan else last.plan
        recipe, train = (src.recipe, src.train.model_copy(update={"init": "base"})) if src else (recipes.reasoning_first(card), base)
        noisy = suspected_noise([last])
        if last.plan is None:  # the backbone failed last time: fall back to the parent or the first plan
            return "Previous proposal failed; retry from the best node.", (src.recipe if parent else recipes.reasoning_first(card)), (src.train if parent else base), None
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
            return f"Fix the failed checks {sorted(failed)}: " + ", ".join(notes or ["retry"]) + ".", recipe, train, last.plan.parent or "base"
        if last.status == "failed":
            return "Training crashed; retry the parent's data with a lower learning rate.", recipe, train.model_copy(update={"lr": train.lr / 2}), None
        decision = last.feedback.decision if last.feedback else "continue"
        if decision == "branch":
            runner_up = self._runner_up(card, history)
            if runner_up is not None and runner_up.plan is not None and runner_up.dev is not None:
                return (f"The last fit hurt dev: branch to probe {runner_up.id} ({runner_up.dev.score:.1%} on its slice), the "
                        "next-best data choice, and continue its adapter.",
                        runner_up.plan.recipe, runner_up.plan.train.model_copy(update={"steps": base.steps, "init": "parent", "lr": base.lr}),
                        runner_up.id)
            return "The last change hurt dev: from the best node, halve the learning rate.", recipe, train.model_copy(update={"lr": train.lr / 2}), None
        if noisy and card.verifier and not recipe.verify:
            return f"Suspected label noise in {sorted(noisy)}: keep only examples the task's verifier accepts.", recipe.model_copy(update={"verify": True}), train, None
        if noisy:
            kept = [m for m in recipe.sources if m.source not in noisy]
            if kept:
                return f"Drop sources with suspected label noise: {sorted(noisy)}.", recipe.model_copy(update={"sources": kept}), train, None
        if "diverged" in codes:
            return "Loss diverged: lower the learning rate 3x.", recipe, train.model_copy(update={"lr": train.lr / 3}), None
        if "format_errors" in codes and not recipe.require_parseable:
            return "Many outputs are unparseable: train only on targets in the task format.", recipe.model_copy(update={"require_parseable": True}), train, None
        if "underfit" in codes:
            return ("Loss was still falling: continue training the last adapter on the same data.", recipe,
                    train.model_copy(update={"steps": int(train.steps * 1.5), "init": "parent"}), None)
        return ("Plateau: continue the last adapter at a slightly lower learning rate.", recipe,
                train.model_copy(update={"steps": int(train.steps * 1.25), "lr": train.lr * 0.7, "init": "parent"}), None)

    @staticmethod
    def _runner_up(card: TaskCard, history: list[Experiment]) -> Experiment | None:
        """The best scored probe no full fit has built on yet."""
        built_on = {e.parent for e in history if e.plan is not None and not e.plan.probe}
        best: Experiment | None = None
        for e in history:
            if is_probe(e) and e.status == "ok" and e.dev is not None and e.id not in built_on:
                if best is None or better(e.dev.score, best.dev.score, card.direction):  # type: ignore[union-attr]
                    best = e
        return best


def _affords(card: TaskCard, left: Remaining | None, probes: int, steps: int, full_steps: int) -> bool:
    """Whether the budget left pays for ``probes`` more probes and still a full fit after them (its dev
    evaluation and at least half a default fit's steps)."""
    b = card.budget
    evals = left.dev_evals if left is not None else b.max_dev_evals
    train_steps = left.train_steps if left is not None else b.max_train_steps
    iterations = left.iterations if left is not None else b.max_iterations
    return evals >= probes + 1 and train_steps >= probes * steps + full_steps // 2 and iterations >= 1
