"""The LLM backbone: any OpenAI-compatible endpoint through the ``openai`` client.

Answers must be JSON that validates into the message models (``PlanProposal``,
``Verdict``); an answer that does not is sent back with the validation error,
up to ``max_retries`` times, then the call fails as a ``BackboneError`` (a run
error: the iteration fails, the run goes on). Every request is keyed by a hash
of (model, messages, sampling settings) and stored on disk, so a run replays
offline and identically (``cache: replay``). Every model-facing string is in
``ftdojo/prompts/``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ftdojo import paths, prompts
from ftdojo.config import BackboneConfig
from ftdojo.datafiles import atomic_write_text
from ftdojo.errors import BudgetExceeded, RunError
from ftdojo.messages import Experiment, Feedback, LLMUsage, PlanProposal, TaskCard, TrainConfig, Verdict


HISTORY_SHOWN = 6


class BackboneError(RunError):
    """The LLM gave no valid answer within the retry budget, or the cache missed on replay."""

    reason = "backbone_error"


def _json_block(text: str) -> str:
    """The outermost JSON object in a reply (models wrap JSON in prose or fences)."""
    m = re.search(r"\{.*\}", text, re.S)
    return m.group(0) if m else text


def summarize(exp: Experiment) -> dict[str, Any]:
    """A compact, model-readable view of one experiment."""
    out: dict[str, Any] = {"id": exp.id, "parent": exp.parent, "status": exp.status, "error": exp.error}
    if exp.plan:
        out["hypothesis"] = exp.plan.hypothesis
        out["recipe"] = exp.plan.recipe.model_dump(exclude={"kind"})
        out["train"] = exp.plan.train.model_dump(include={"steps", "lr", "batch_size", "max_length", "method", "init"})
    if exp.validation:
        out["checks"] = {c.name: f"{c.status}: {c.reason}" for c in exp.validation.checks if c.status != "pass"}
    if exp.train and exp.train.losses:
        ls = exp.train.losses
        out["loss"] = {"first": round(ls[0], 4), "mid": round(ls[len(ls) // 2], 4), "last": round(ls[-1], 4)}
        out["source_losses"] = {k: round(v, 4) for k, v in exp.train.source_losses.items()}
    if exp.dev:
        out["dev"] = {"score": exp.dev.score, "parse_failure_rate": exp.dev.parse_failure_rate, "per_category": exp.dev.per_category}
    if exp.feedback:
        out["feedback"] = [f"{f.level}/{f.code}: {f.message}" for f in exp.feedback.findings] + [f"decision: {exp.feedback.decision}"]
    return out


class LLMBackbone:
    """Planner and diagnostician backbone on any OpenAI-compatible endpoint."""

    name = "llm"

    def __init__(self, cfg: BackboneConfig, token_budget: int = 0, cache_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.token_budget = token_budget
        self.cache_dir = cache_dir or paths.home() / "llm_cache"
        self.spent = LLMUsage()
        self._client: Any = None

    def usage(self) -> LLMUsage:
        return self.spent

    def _spend(self, **more: int) -> None:
        self.spent = self.spent + LLMUsage(**more)

    async def propose(self, card: TaskCard, history: list[Experiment], parent: Experiment | None, base: TrainConfig) -> PlanProposal:
        schema = json.dumps(PlanProposal.model_json_schema())
        user = json.dumps({
            "task": card.model_dump(exclude={"kind", "budget"}),
            "budget": card.budget.model_dump(exclude={"kind"}),
            "history": [summarize(e) for e in history[-HISTORY_SHOWN:]],
            "branch_from": parent.id if parent else None,
            "default_train": base.model_dump(exclude={"kind"}),
        }, default=str)
        return await self.structured(prompts.load("planner").replace("{schema}", schema), user, PlanProposal)

    async def diagnose(self, exp: Experiment, rules: Feedback) -> Verdict:
        schema = json.dumps(Verdict.model_json_schema())
        user = json.dumps({"experiment": summarize(exp), "rule_findings": [f.model_dump() for f in rules.findings]}, default=str)
        return await self.structured(prompts.load("diagnostician").replace("{schema}", schema), user, Verdict)

    async def structured(self, system: str, user: str, model: type[BaseModel]) -> Any:
        messages: list[dict[str, str]] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        error = ""
        for attempt in range(self.cfg.max_retries + 1):
            text = await self.complete(messages)
            try:
                return model.model_validate_json(_json_block(text))
            except ValidationError as e:
                error = "; ".join(f"{'.'.join(map(str, x['loc'])) or '(root)'}: {x['msg']}" for x in e.errors()[:5])
                self._spend(retries=int(attempt < self.cfg.max_retries))
                messages += [
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": prompts.load("retry").strip().replace("{error}", error)},
                ]
        raise BackboneError(f"no valid {model.__name__} from {self.cfg.model} after {self.cfg.max_retries + 1} attempts: {error}")

    def _key(self, messages: list[dict[str, str]]) -> str:
        c = self.cfg
        return paths.sha256_json([c.model, c.temperature, c.max_tokens, messages])  # not the URL: replays survive a moved server

    async def complete(self, messages: list[dict[str, str]]) -> str:
        key = self._key(messages)
        path = self.cache_dir / f"{key}.json"
        if self.cfg.cache in ("auto", "replay") and path.exists():
            self._spend(cache_hits=1)
            return json.loads(path.read_text())["text"]
        if self.cfg.cache == "replay":
            raise BackboneError(f"replay cache miss for request {key[:12]} in {self.cache_dir}")
        if self.token_budget and self.spent.tokens >= self.token_budget:
            raise BudgetExceeded("llm_tokens", self.token_budget, self.spent.tokens)
        text, tokens = await self._request(messages)
        self._spend(tokens=tokens, requests=1)
        if self.cfg.cache != "off":
            atomic_write_text(path, json.dumps({"request": messages, "text": text, "tokens": tokens}))
        return text

    async def _request(self, messages: list[dict[str, str]]) -> tuple[str, int]:
        import openai

        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.cfg.base_url or None, api_key=os.environ.get(self.cfg.api_key_env) or "none", max_retries=2, timeout=120
            )
        try:
            resp = await self._client.chat.completions.create(
                model=self.cfg.model, messages=messages, temperature=self.cfg.temperature, max_tokens=self.cfg.max_tokens
            )
        except openai.OpenAIError as e:
            raise BackboneError(f"{self.cfg.base_url or 'openai'}: {type(e).__name__}: {str(e)[:200]}") from None
        text = resp.choices[0].message.content or ""
        tokens = resp.usage.total_tokens if resp.usage else len(text) // 4
        return text, int(tokens)
