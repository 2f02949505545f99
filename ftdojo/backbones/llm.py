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
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, RootModel, ValidationError

from ftdojo import paths, prompts
from ftdojo.config import BackboneConfig
from ftdojo.datafiles import atomic_write_text
from ftdojo.errors import BudgetExceeded, FtdojoError, RunError
from ftdojo.messages import (Exchange, Experiment, Feedback, LLMUsage, LookupRequest, PlanProposal, Remaining, RowLookup, SourceRows,
                             TaskCard, TrainConfig, Verdict)


HISTORY_SHOWN = 6
Lookup = Callable[[RowLookup], Awaitable[SourceRows]]
"""Fetches the rows a planner's look-up names (the run's environment answers it)."""
REASONING = re.compile(r"^(o\d|gpt-5)")
"""OpenAI's reasoning families by model name: they take max_completion_tokens and only the default temperature."""
CLOCK = re.compile(r'("wall_s": )-?[0-9.]+(?:e[-+]?[0-9]+)?')
"""The wall time left in a planner's request: left out of the cache key."""
CAPS = {"chat": 1024, "reasoning": 16384}
"""Default completion caps by family; a reasoning model's cap includes its reasoning tokens."""


def family(model: str) -> str:
    """``reasoning`` for OpenAI's o-series and GPT-5 models (also behind a provider prefix), else ``chat``."""
    return "reasoning" if REASONING.match(model.rsplit("/", 1)[-1].lower()) else "chat"


def request_fields(cfg: BackboneConfig) -> dict[str, Any]:
    """The request's settings (all but model and messages) for ``cfg``: the cap under the field the family
    takes, a temperature only where the family accepts one, reasoning effort, and ``extra_body``."""
    fam = family(cfg.model)
    param = cfg.token_param if cfg.token_param != "auto" else ("max_completion_tokens" if fam == "reasoning" else "max_tokens")
    out: dict[str, Any] = {param: cfg.max_tokens or CAPS[fam]}
    temperature = cfg.temperature if cfg.temperature is not None else (None if fam == "reasoning" else 0.0)
    if temperature is not None:
        out["temperature"] = temperature
    if cfg.reasoning_effort:
        out["reasoning_effort"] = cfg.reasoning_effort
    return out | dict(cfg.extra_body)


def _message(e: Any) -> str:
    """The endpoint's own words for an error (OpenAI's ``error.message``), without the client's prefix."""
    body = getattr(e, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(getattr(e, "message", "") or e)


def _refused(e: Any) -> str:
    """Which setting a 400 refused: the ``param`` OpenAI names, else the one its message names."""
    param = getattr(e, "param", None)
    if isinstance(param, str) and param:
        return param.split(".")[0]
    text = _message(e).lower()
    for name in ("max_completion_tokens", "max_tokens", "response_format", "json_schema", "reasoning_effort", "temperature"):
        if name in text:
            return "response_format" if name == "json_schema" else name
    return ""


class BackboneError(RunError):
    """The LLM gave no valid answer within the retry budget, or the cache missed on replay."""

    reason = "backbone_error"


def _json_block(text: str) -> str:
    """The outermost JSON object in a reply (models wrap JSON in prose or fences)."""
    m = re.search(r"\{.*\}", text, re.S)
    return m.group(0) if m else text


CLIP = 300
"""Characters of one shown text (a dev input or output, a row's value) before it is cut."""
ERRORS_SHOWN = 5
"""Dev errors shown per experiment, for the latest ``ERRORED_SHOWN`` experiments."""
ERRORED_SHOWN = 2


def clip(value: Any, n: int = CLIP) -> Any:
    """A text cut to ``n`` characters with the length it had; other values as they are (the same cut for every model)."""
    if isinstance(value, str) and len(value) > n:
        return value[:n] + f"…[{len(value)} chars]"
    return value


class PlannerAnswer(RootModel[PlanProposal | LookupRequest]):
    """The planner's answer while it may still look at rows: a plan, or a look-up."""

    label: ClassVar[str] = "PlanProposal or LookupRequest"


def summarize(exp: Experiment, errors: int = 0) -> dict[str, Any]:
    """A compact, model-readable view of one experiment (with up to ``errors`` of its dev errors)."""
    out: dict[str, Any] = {"id": exp.id, "parent": exp.parent, "status": exp.status, "error": exp.error}
    if exp.plan:
        out["hypothesis"] = exp.plan.hypothesis
        out["recipe"] = exp.plan.recipe.model_dump(exclude={"kind"})
        out["train"] = exp.plan.train.model_dump(include={"steps", "lr", "batch_size", "max_length", "method", "init"})
    if exp.curated:
        c = exp.curated
        out["curation"] = {"examples": c.n_examples, "per_source": c.per_source, "dropped": c.dropped,
                           "sources": {k: v.model_dump(exclude={"kind"}) for k, v in c.sources.items()}}
    if exp.validation:
        out["checks"] = {c.name: f"{c.status}: {c.reason}" for c in exp.validation.checks if c.status != "pass"}
    if exp.train and exp.train.losses:
        ls = exp.train.losses
        out["loss"] = {"first": round(ls[0], 4), "mid": round(ls[len(ls) // 2], 4), "last": round(ls[-1], 4)}
        out["source_losses"] = {k: round(v, 4) for k, v in exp.train.source_losses.items()}
    if exp.dev:
        out["dev"] = {"score": exp.dev.score, "parse_failure_rate": exp.dev.parse_failure_rate, "per_category": exp.dev.per_category}
        if errors and exp.dev.errors:
            out["dev"]["errors"] = [{k: clip(v) for k, v in e.model_dump(exclude={"kind"}).items()} for e in exp.dev.errors[:errors]]
    if exp.feedback:
        out["feedback"] = [f"{f.level}/{f.code}: {f.message}" for f in exp.feedback.findings] + [f"decision: {exp.feedback.decision}"]
    return out


class LLMBackbone:
    """Planner and diagnostician backbone on any OpenAI-compatible endpoint."""

    name = "llm"

    def __init__(self, cfg: BackboneConfig, token_budget: int = 0, cache_dir: Path | None = None, data_model: str = "") -> None:
        self.cfg = cfg
        self.data_model = data_model
        """The model the agent's synthesis steps ask, as the planner is told ('' where it has none)."""
        self.token_budget = token_budget
        self.cache_dir = cache_dir or paths.home() / "llm_cache"
        self.spent = LLMUsage()
        self._client: Any = None
        self._fields = request_fields(cfg)  # what requests carry now (an endpoint's refusals adjust it)
        self._schema = cfg.structured_output != "off"
        self.adjusted: list[str] = []
        """What the endpoint refused and how the requests changed, in order."""
        self.transcript: list[Exchange] = []
        """Every request and what came back (cache hits and refusals included), in order."""
        self.budget_name = "llm_tokens"
        """The budget its tokens count against, as a BudgetExceeded names it."""

    def usage(self) -> LLMUsage:
        return self.spent

    def _spend(self, **more: int) -> None:
        self.spent = self.spent + LLMUsage(**more)

    async def propose(self, card: TaskCard, history: list[Experiment], parent: Experiment | None, base: TrainConfig,
                      left: Remaining | None = None, lookup: Lookup | None = None) -> PlanProposal:
        shown = history[-HISTORY_SHOWN:]
        looks = self.cfg.max_lookups if lookup is not None else 0
        user = json.dumps({
            "task": card.model_dump(exclude={"kind", "budget"}),
            "budget": card.budget.model_dump(exclude={"kind"}),
            "budget_left": left.model_dump(exclude={"kind"}) if left else None,
            "history": [summarize(e, ERRORS_SHOWN if i >= len(shown) - ERRORED_SHOWN else 0) for i, e in enumerate(shown)],
            "branch_from": parent.id if parent else None,
            "default_train": base.model_dump(exclude={"kind"}),
            "lookups_left": looks,
        }, default=str)
        messages = [{"role": "system", "content": ""}, {"role": "user", "content": user}]
        while True:  # look-ups while any are left, then a plan
            model = PlannerAnswer if looks else PlanProposal
            writer = f" ({self.data_model})" if self.data_model else " (this agent has none: a synthesis step fails)"
            system = prompts.load("planner").replace("{lookups}", str(looks)).replace("{data_model}", writer)
            messages[0] = {"role": "system", "content": system.replace("{schema}", json.dumps(model.model_json_schema()))}
            answer, messages = await self._ask(messages, model, "planner")
            got = answer.root if isinstance(answer, PlannerAnswer) else answer
            if isinstance(got, PlanProposal):
                return got
            looks -= 1
            self._spend(lookups=1)
            messages.append({"role": "user", "content": await self._look(got.lookup, lookup, looks)})  # type: ignore[arg-type]

    async def _look(self, req: RowLookup, lookup: Lookup, left: int) -> str:
        """The rows a look-up asked for, as the next user message (an unknown source's error instead)."""
        try:
            rows = await lookup(req)
        except FtdojoError as e:
            return json.dumps({"lookup": req.model_dump(exclude={"kind"}), "error": str(e), "lookups_left": left})
        shown = [{k: clip(v) for k, v in r.items()} for r in rows.dicts()]
        return json.dumps({"lookup": req.model_dump(exclude={"kind"}), "rows": shown, "lookups_left": left,
                           "next": "reply with a plan" if not left else "reply with a plan or another look-up"}, default=str)

    async def diagnose(self, exp: Experiment, rules: Feedback) -> Verdict:
        schema = json.dumps(Verdict.model_json_schema())
        user = json.dumps({"experiment": summarize(exp), "rule_findings": [f.model_dump() for f in rules.findings]}, default=str)
        return await self.structured(prompts.load("diagnostician").replace("{schema}", schema), user, Verdict, "diagnostician")

    async def structured(self, system: str, user: str, model: type[BaseModel], role: str = "planner") -> Any:
        return (await self._ask([{"role": "system", "content": system}, {"role": "user", "content": user}], model, role))[0]

    async def _ask(self, messages: list[dict[str, str]], model: type[BaseModel], role: str) -> tuple[Any, list[dict[str, str]]]:
        """An answer that validates as ``model``, and the conversation with it appended."""
        messages = list(messages)
        error = ""
        for attempt in range(self.cfg.max_retries + 1):
            text = await self.complete(messages, model, role)
            try:
                return model.model_validate_json(_json_block(text)), messages + [{"role": "assistant", "content": text}]
            except ValidationError as e:
                error = "; ".join(f"{'.'.join(map(str, x['loc'])) or '(root)'}: {x['msg']}" for x in e.errors()[:5])
                self._spend(retries=int(attempt < self.cfg.max_retries))
                messages += [
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": prompts.load("retry").strip().replace("{error}", error)},
                ]
        raise BackboneError(f"no valid {getattr(model, 'label', model.__name__)} from {self.cfg.model} after {self.cfg.max_retries + 1} attempts: {error}")

    def _key(self, messages: list[dict[str, str]], schema: type[BaseModel] | None) -> str:
        # the configured settings, not the URL (replays survive a moved server) nor what a refusal adjusted; the
        # wall time left is a clock reading, never the same twice, so a replay is answered as the recorded run was
        c = self.cfg
        stable = [{**m, "content": CLOCK.sub(r'\1"*"', m["content"])} for m in messages]
        return paths.sha256_json([c.model, request_fields(c), c.structured_output, schema.__name__ if schema else None, stable])

    def _log(self, role: str, messages: list[dict[str, str]], schema: type[BaseModel] | None, reply: str = "", tokens: int = 0,
             cached: bool = False, error: str | None = None) -> None:
        request: dict[str, Any] = {"messages": messages, **self._fields}
        if schema is not None and self._schema:
            request["response_format"] = f"json_schema {schema.__name__}"  # the schema is the message model's, by name
        self.transcript.append(Exchange(role=role, model=self.cfg.model, t=time.time(), request=request, reply=reply, tokens=tokens,
                                        cached=cached, error=error))

    async def complete(self, messages: list[dict[str, str]], schema: type[BaseModel] | None = None, role: str = "planner") -> str:
        key = self._key(messages, schema)
        path = self.cache_dir / f"{key}.json"
        if self.cfg.cache in ("auto", "replay") and path.exists():
            self._spend(cache_hits=1)
            text = json.loads(path.read_text())["text"]
            self._log(role, messages, schema, text, cached=True)
            return text
        if self.cfg.cache == "replay":
            self._log(role, messages, schema, error="replay cache miss")
            raise BackboneError(f"replay cache miss for request {key[:12]} in {self.cache_dir}")
        if self.token_budget and self.spent.tokens >= self.token_budget:
            raise BudgetExceeded(self.budget_name, self.token_budget, self.spent.tokens)
        try:
            text, tokens = await self._request(messages, schema, role)
        except BackboneError as e:
            self._log(role, messages, schema, error=str(e))
            raise
        self._log(role, messages, schema, text, tokens)
        self._spend(tokens=tokens, requests=1)
        if self.cfg.cache != "off":
            atomic_write_text(path, json.dumps({"request": messages, "text": text, "tokens": tokens}))
        return text

    def _adjust(self, refused: str, e: Any, role: str, messages: list[dict[str, str]], schema: type[BaseModel] | None) -> bool:
        """Change the requests so the endpoint takes them, where the setting was ftdojo's choice; False where
        it was the user's (the error says which field to change). The refused request goes to the transcript."""
        c, f = self.cfg, self._fields
        tokens = refused in ("max_tokens", "max_completion_tokens") and refused in f and c.token_param == "auto"
        temperature = refused == "temperature" and "temperature" in f and c.temperature is None
        schema_off = refused == "response_format" and self._schema and c.structured_output == "auto"
        if not (tokens or temperature or schema_off):
            return False
        self._log(role, messages, schema, error=f"refused {refused}: {_message(e)[:300]}")  # as it was sent
        if tokens:
            f["max_completion_tokens" if refused == "max_tokens" else "max_tokens"] = f.pop(refused)
        elif temperature:
            del f["temperature"]  # reasoning models take only their default
        else:
            self._schema = False  # validate-and-retry alone
        self.adjusted.append(f"{refused}: {_message(e)[:160]}")
        return True

    async def _request(self, messages: list[dict[str, str]], schema: type[BaseModel] | None = None, role: str = "planner") -> tuple[str, int]:
        import openai

        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.cfg.base_url or None, api_key=os.environ.get(self.cfg.api_key_env) or "none", max_retries=2, timeout=120
            )
        where = self.cfg.base_url or "openai"
        for _ in range(4):  # each refusal adjusts one setting; four cover them all
            body = dict(self._fields)
            if schema is not None and self._schema:
                body["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema(), "strict": False}}
            try:
                resp = await self._client.chat.completions.create(model=self.cfg.model, messages=messages, extra_body=body)
                break
            except openai.BadRequestError as e:
                refused = _refused(e)
                if not self._adjust(refused, e, role, messages, schema):
                    field = {"max_tokens": "max_tokens / token_param", "max_completion_tokens": "max_tokens / token_param",
                             "response_format": "structured_output"}.get(refused, refused)
                    hint = f" (backbone.{field} in the agent's config)" if refused else ""
                    raise BackboneError(f"{where} refused the request for {self.cfg.model}{hint}: {_message(e)[:300]}") from None
            except openai.OpenAIError as e:
                raise BackboneError(f"{where}: {type(e).__name__}: {str(e)[:200]}") from None
        else:
            raise BackboneError(f"{where} kept refusing requests for {self.cfg.model}: {'; '.join(self.adjusted)}")
        choice = resp.choices[0]
        text = choice.message.content or ""
        tokens = int(resp.usage.total_tokens) if resp.usage else len(text) // 4
        if not text.strip() and choice.finish_reason == "length":
            cap = next((f"{k}={v}" for k, v in self._fields.items() if k in ("max_tokens", "max_completion_tokens")), "")
            self._spend(tokens=tokens, requests=1)
            raise BackboneError(f"{self.cfg.model} used its whole completion cap ({cap}) without an answer (a reasoning model's "
                                "reasoning counts): raise backbone.max_tokens")
        return text, tokens
