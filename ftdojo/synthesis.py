"""LLM data synthesis: a recipe's ``synthesis`` steps ask a data model to write for source rows.

One request per row: the step's prompt (``prompts/synthesis_<produce>.md``, with the task's description and
answer format) and the row's task input (and, for a rationale, its gold answer). What the reply becomes:

* ``rationale`` — the reasoning before the model's own answer line; a reply whose answer disagrees with the
  gold answer is dropped (``disagrees``): the model reasoned to something else.
* ``answer`` — the model's solution: the answer is what the task's extractor reads from the reply (none:
  ``unparseable``), the text before it the rationale.
* ``paraphrase`` — the reply is the new input; the gold answer stays.

The data model is asked through the LLM backbone's client: the same request settings per model family,
refusal handling, on-disk cache (a replayed run gets the same examples) and transcript; its tokens are
metered against ``budget.max_data_tokens``, and a row the budget no longer covers is dropped
(``data_tokens``), not failed. Examples then go through the recipe's filters like any source's, and the run's
leak check against dev and test sees them like any other training data.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from typing import Any

from ftdojo import prompts, scoring
from ftdojo.backbones.llm import LLMBackbone
from ftdojo.config import BackboneConfig
from ftdojo.errors import BudgetExceeded, UserError
from ftdojo.messages import EvalBackend, Exchange, LLMUsage, Synthesis, TaskCard

CONCURRENCY = 4
"""Requests in flight per step (the token budget is checked before each, so it may be overrun by this many)."""
BUNDLED = "bundled"
"""``data_model.base_url`` that serves the bundled model (SmolLM2-135M-Instruct) with ``transformers serve`` for the run."""


def messages(card: TaskCard, step: Synthesis, task_input: str, gold: str) -> list[dict[str, str]]:
    """The request for one row."""
    system = prompts.load(f"synthesis_{step.produce}")
    for name, value in (("description", card.description), ("answer_format", card.answer_format),
                        ("instruction", f"\n{step.instruction.strip()}" if step.instruction.strip() else "")):
        system = system.replace("{" + name + "}", value)
    user = f"Input:\n{task_input}" + (f"\n\nCorrect answer: {gold}" if step.produce == "rationale" else "")
    return [{"role": "system", "content": system.strip()}, {"role": "user", "content": user}]


def example(card: TaskCard, step: Synthesis, task_input: str, gold: str, reply: str) -> dict[str, str] | str:
    """The example a reply makes (``input``, ``answer``, ``rationale``), or why it makes none."""
    text = reply.strip()
    if not text:
        return "empty_reply"
    if step.produce == "paraphrase":
        return {"input": text, "answer": gold, "rationale": ""}
    found = list(re.finditer(card.answer_pattern, text))
    got = scoring.extract(text, card.answer_pattern) if found else None
    before = text[: found[-1].start()].strip() if found else text
    if step.produce == "answer":
        if got is None:
            return "unparseable"
        return {"input": task_input, "answer": got, "rationale": before}
    if got is not None and got != scoring.normalize(gold):
        return "disagrees"
    return {"input": task_input, "answer": gold, "rationale": before} if before else "empty_reply"


def _in_row_order(transcript: list[Exchange], start: int, asked: list[list[dict[str, str]]]) -> None:
    """Put the exchanges after ``start`` in the order of the rows whose messages they carry (a row's retries
    keep theirs): concurrent requests finish in any order, and a replayed run must hash the same transcript."""
    row = {json.dumps(m, sort_keys=True): i for i, m in reversed(list(enumerate(asked)))}
    transcript[start:] = sorted(transcript[start:], key=lambda x: row.get(json.dumps(x.request["messages"], sort_keys=True), len(asked)))


class DataModel:
    """The endpoint a run's synthesis steps ask, its spend and its transcript. ``base_url: bundled`` starts
    ``transformers serve`` of the bundled model (on the CPU) at the first request and stops it at ``release``."""

    def __init__(self, cfg: BackboneConfig, token_budget: int) -> None:
        self.cfg, self.token_budget = cfg, token_budget
        self._llm: LLMBackbone | None = None
        self._server: Any = None

    def _client(self) -> LLMBackbone:
        if self._llm is None:
            cfg = self.cfg
            if cfg.base_url == BUNDLED:
                from ftdojo import models, serving

                spec = EvalBackend(backend="server", server="transformers")
                why = serving.preflight(spec)
                if why:
                    raise UserError(f"data_model.base_url: {BUNDLED} serves the bundled model with transformers serve, but {why}")
                path = models.resolve(models.BUNDLED)
                self._server = serving.start(spec, path, "cpu", "fp32")
                cfg = cfg.model_copy(update={"base_url": f"{self._server.root}/v1", "model": path})
            self._llm = LLMBackbone(cfg, self.token_budget)
            self._llm.budget_name = "data_tokens"
        return self._llm

    async def write(self, card: TaskCard, step: Synthesis, rows: list[tuple[str, str]]) -> tuple[list[dict[str, str]], Counter[str]]:
        """Examples for ``(task input, gold answer)`` rows, in row order, and the rows dropped per reason."""
        if not self.token_budget:
            raise UserError(f"recipe synthesis {step.name!r}: budget.max_data_tokens is 0 in the profile (synthesis off); "
                            "raise it or drop the step")
        llm = await asyncio.to_thread(self._client)  # a bundled server starts off the event loop
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(task_input: str, gold: str) -> dict[str, str] | str:
            async with gate:
                try:
                    reply = await llm.complete(messages(card, step, task_input, gold), None, f"data:{step.name}")
                except BudgetExceeded:
                    return "data_tokens"
            return example(card, step, task_input, gold, reply)

        start = len(llm.transcript)
        out = await asyncio.gather(*(one(i, g) for i, g in rows))
        _in_row_order(llm.transcript, start, [messages(card, step, i, g) for i, g in rows])
        dropped = Counter(r for r in out if isinstance(r, str))
        return [r for r in out if isinstance(r, dict)], dropped

    def usage(self) -> LLMUsage:
        return self._llm.usage() if self._llm else LLMUsage()

    def transcript(self) -> list[Exchange]:
        return list(self._llm.transcript) if self._llm else []

    def release(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
