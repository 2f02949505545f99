"""Backbones the planner and diagnostician reason with, behind two Protocols.

* ``heuristic`` (``ftdojo.backbones.heuristic``) — deterministic expert rules,
  the offline default and a baseline;
* ``llm`` (``ftdojo.backbones.llm``) — any OpenAI-compatible endpoint.

A planner backbone answers ``propose`` with a ``PlanProposal``; a
diagnostician backbone answers ``diagnose`` with a ``Verdict`` (both in
``ftdojo.messages``). Both kinds implement both Protocols, and say what they
spent as ``LLMUsage`` and what they asked and were answered as a ``transcript``.
"""

from __future__ import annotations

from typing import Protocol

from ftdojo.backbones.heuristic import HeuristicBackbone
from ftdojo.backbones.llm import BackboneError, LLMBackbone, Lookup
from ftdojo.config import BackboneConfig
from ftdojo.messages import Exchange, Experiment, Feedback, LLMUsage, PlanProposal, Remaining, TaskCard, TrainConfig, Verdict

__all__ = ["BackboneError", "DiagnosticianBackbone", "HeuristicBackbone", "LLMBackbone", "Lookup", "PlannerBackbone", "make"]


class PlannerBackbone(Protocol):
    """Reasons out the next plan: what to train on and how."""

    async def propose(self, card: TaskCard, history: list[Experiment], parent: Experiment | None,
                      base: TrainConfig, left: Remaining | None = None, lookup: Lookup | None = None) -> PlanProposal: ...
    """``left``: the budget that is left; ``lookup``: fetches more rows of a source (a backbone may ignore both)."""

    def usage(self) -> LLMUsage: ...

    transcript: list[Exchange]
    """Every request to a language model and its answer, in order (empty for rules; a backbone without
    the attribute is taken to keep none)."""


class DiagnosticianBackbone(Protocol):
    """Reads one experiment and the rules' findings; adds findings and decides what comes next."""

    async def diagnose(self, exp: Experiment, rules: Feedback) -> Verdict: ...

    def usage(self) -> LLMUsage: ...

    transcript: list[Exchange]


def make(cfg: BackboneConfig, token_budget: int = 0, data_model: str = "", tree: bool = True) -> HeuristicBackbone | LLMBackbone:
    """``data_model``: the model the agent's synthesis steps ask, for the planner to be told ('' for none);
    ``tree=False``: the ``linear`` ablation, whose rules plan no probes."""
    if cfg.kind == "heuristic":
        return HeuristicBackbone(tree)
    return LLMBackbone(cfg, token_budget, data_model=data_model)
