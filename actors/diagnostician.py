"""Diagnostician: reads one experiment against the run's best and writes Feedback.

Findings come at three levels:

* data — what each source contributed, sources whose examples the model
  fits far worse than the rest (suspected label noise), validation failures;
* training — divergence, under-fitting (loss still falling at the end),
  plateau, over-fitting (train loss near zero while dev does not improve);
* eval — format errors (unparseable outputs) vs content errors, weak
  categories, improvement or regression against the best node.

``scalar=True`` is the ablation that sees only the dev score.
"""

from __future__ import annotations

import statistics

from ftdojo.backbones import DiagnosticianBackbone, HeuristicBackbone
from ftdojo.errors import RunError
from ftdojo.messages import Decision, DiagnoseRequest, Exchange, Experiment, Feedback, Finding, LLMUsage, TaskCard
from ftdojo.runtime import Handle
from ftdojo.search import best_score, better, is_probe, noise_margin

NOISE_RATIO = 1.6  # a source whose fit loss is this many times the others' median is suspect
FORMAT_ERRORS = 0.1


def data_findings(exp: Experiment) -> list[Finding]:
    out: list[Finding] = []
    if exp.curated:
        c = exp.curated
        out.append(Finding(level="data", code="source_mix", message=f"{c.n_examples} examples: {c.per_source}; dropped {c.dropped}"))
    if exp.validation and not exp.validation.passed:
        for chk in exp.validation.checks:
            if chk.status == "fail":
                out.append(Finding(level="data" if chk.name not in CONFIG_CHECKS else "training", code=f"check_{chk.name}", message=chk.reason))
    if exp.train and len(exp.train.source_losses) >= 2:
        losses = exp.train.source_losses
        for src, loss in losses.items():
            others = [v for k, v in losses.items() if k != src]
            med = statistics.median(others)
            if loss > NOISE_RATIO * med and loss - med > 0.05:
                out.append(Finding(level="data", code="suspected_noise",
                                   message=f"{src}: fit loss {loss:.3f} vs {med:.3f} for the other sources; labels may be wrong"))
    return out


CONFIG_CHECKS = {"learning_rate", "target_modules", "fits_budget", "memory", "smoke_train", "truncation"}


def training_findings(exp: Experiment, parent: Experiment | None) -> list[Finding]:
    t = exp.train
    if t is None or not t.losses:
        return []
    losses = t.losses
    k = max(1, len(losses) // 5)
    first, prev, last = statistics.fmean(losses[:k]), statistics.fmean(losses[-2 * k : -k] or losses[:k]), statistics.fmean(losses[-k:])
    out = []
    if last > first:
        out.append(Finding(level="training", code="diverged", message=f"loss rose {first:.3f} -> {last:.3f}: lower the learning rate"))
    elif last < prev * 0.95:
        out.append(Finding(level="training", code="underfit", message=f"loss still falling at the end ({prev:.3f} -> {last:.3f}): more steps may help"))
    else:
        out.append(Finding(level="training", code="plateau", message=f"loss flat at the end ({prev:.3f} -> {last:.3f})"))
    if last < 0.05 and parent is not None and parent.dev and exp.dev and exp.dev.score <= parent.dev.score:
        out.append(Finding(level="training", code="overfit", message=f"train loss {last:.3f} but dev did not improve on the parent"))
    return out


def eval_findings(exp: Experiment, best: Experiment | None, card: TaskCard) -> list[Finding]:
    d = exp.dev
    if d is None:
        return []
    out = []
    wrong = 1 - d.score
    if d.parse_failure_rate > FORMAT_ERRORS:
        out.append(Finding(level="eval", code="format_errors", message=f"{d.parse_failure_rate:.1%} of outputs unparseable ({card.answer_format})"))
    if wrong - d.parse_failure_rate > 0:
        out.append(Finding(level="eval", code="content_errors", message=f"{wrong - d.parse_failure_rate:.1%} parsed but wrong"))
    for cat, s in d.per_category.items():
        if s < d.score - 0.15:
            out.append(Finding(level="eval", code="weak_category", message=f"{cat}: {s:.1%} vs {d.score:.1%} overall"))
    if best is not None and best.dev is not None:
        margin = noise_margin(best.dev)
        if better(d.score, best.dev.score, card.direction, margin):
            out.append(Finding(level="eval", code="improved", message=f"dev {d.score:.1%} beats best {best.dev.score:.1%} (margin {margin:.1%})"))
        elif better(best.dev.score, d.score, card.direction, margin):
            out.append(Finding(level="eval", code="regression", message=f"dev {d.score:.1%} below best {best.dev.score:.1%} ({best.id})"))
    return out


def rules_decision(exp: Experiment, codes: set[str], card: TaskCard) -> Decision:
    """branch: the experiment failed or made dev worse, so build on the best node with a different plan;
    stop: a full fit reached the metric's best possible dev score, so nothing is left to gain; continue:
    build on this experiment."""
    d = exp.dev
    if exp.status == "ok" and d is not None and not is_probe(exp) and not better(best_score(card.direction), d.score, card.direction):
        return "stop"
    if exp.status != "ok" or codes & {"regression", "overfit"}:
        return "branch"
    return "continue"


class Diagnostician:
    def __init__(self, scalar: bool = False, backbone: DiagnosticianBackbone | None = None) -> None:
        self.scalar = scalar
        self.backbone: DiagnosticianBackbone = backbone or HeuristicBackbone()

    def usage(self) -> LLMUsage:
        return self.backbone.usage()

    def transcript(self) -> list[Exchange]:
        return list(getattr(self.backbone, "transcript", []))  # a backbone of one's own may keep none

    async def diagnose(self, req: DiagnoseRequest) -> Feedback:
        exp, best, parent, card = req.experiment, req.best, req.parent, req.card
        if self.scalar:
            return self._scalar(exp, best, card)
        findings = data_findings(exp) + training_findings(exp, parent) + eval_findings(exp, best, card)
        decision = rules_decision(exp, {f.code for f in findings}, card)
        rules = Feedback(plan_id=exp.id, findings=findings, decision=decision)  # type: ignore[arg-type]
        try:
            verdict = await self.backbone.diagnose(exp, rules)
        except RunError as e:  # the rules' verdict stands; the failure is itself a finding
            return rules.model_copy(update={"findings": [*findings, Finding(level="eval", code="backbone_error", message=str(e))]})
        return Feedback(plan_id=exp.id, findings=findings + verdict.findings, decision=verdict.decision)

    def _scalar(self, exp: Experiment, best: Experiment | None, card: TaskCard) -> Feedback:
        score = exp.dev.score if exp.dev else None
        msg = f"dev score {score:.3f}" if score is not None else f"no score ({exp.status})"
        worse = score is None or (best is not None and best.dev is not None and better(best.dev.score, score, card.direction, 0.0))
        decision = rules_decision(exp, {"regression"} if worse else set(), card)
        return Feedback(plan_id=exp.id, findings=[Finding(level="eval", code="score", message=msg)], decision=decision)


class DiagnosticianHandle(Handle):
    """The run's diagnostician, in-process or a Ray actor."""

    actor = Diagnostician

    async def diagnose(self, req: DiagnoseRequest) -> Feedback:
        return await self._call(Diagnostician.diagnose, req)

    async def usage(self) -> LLMUsage:
        return await self._call(Diagnostician.usage)

    async def transcript(self) -> list[Exchange]:
        return await self._call(Diagnostician.transcript)
