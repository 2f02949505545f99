"""Batched greedy evaluation with the chat template and the task's own scorer.

Items are sorted by prompt length and generated in left-padded batches, so a
batch wastes little on padding; ``generate`` stops each row at EOS (finished
rows are padded while the rest continue) and the batch at the longest answer
or ``max_new_tokens``. Unparseable outputs count as wrong and raise the
parse-failure rate.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ftdojo import models, scoring, sft
from ftdojo.messages import Candidate, ErrorSample, EvalReport
from ftdojo.tasking import Item, TaskSpec

MAX_ERROR_SAMPLES = 8


def generate(model: Any, tok: Any, prompts: list[str], max_new_tokens: int, batch_size: int = 32) -> list[str]:
    """Greedy completions for chat-rendered prompts, in input order."""
    import torch

    encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    outputs: list[str] = [""] * len(prompts)
    pad = tok.pad_token_id
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            n = len(encoded[i])
            ids[row, width - n :] = torch.tensor(encoded[i])
            mask[row, width - n :] = 1
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=tok.eos_token_id,
            )
        for row, i in enumerate(idx):
            outputs[i] = tok.decode(out[row, width:], skip_special_tokens=True)
    return outputs


def score(task: TaskSpec, items: list[Item], outputs: list[str], split: str, wall_s: float = 0.0) -> EvalReport:
    """Score outputs against gold answers; pure, so it is tested on fixed outputs."""
    golds = [i["answer"] for i in items]
    scores, extracted = scoring.score_outputs(outputs, golds, task.answer_pattern, task.metric, task.tolerance)
    per_cat: dict[str, list[float]] = defaultdict(list)
    for item, s in zip(items, scores):
        per_cat[item["category"]].append(s)
    errors = [
        ErrorSample(input=i["input"], expected=i["answer"], output=o, extracted=e, category=i["category"])
        for i, o, e, s in zip(items, outputs, extracted, scores)
        if s < 1.0
    ][:MAX_ERROR_SAMPLES]
    n = len(items)
    return EvalReport(
        split=split,  # type: ignore[arg-type]
        score=sum(scores) / n if n else 0.0,
        n=n,
        per_category={c: sum(v) / len(v) for c, v in sorted(per_cat.items())},
        parse_failure_rate=sum(e is None for e in extracted) / n if n else 0.0,
        errors=errors,
        wall_s=wall_s,
    )


def load_candidate(candidate: Candidate) -> tuple[Any, Any]:
    model, tok = models.load_base(candidate.base_model, copy=False)
    if candidate.checkpoint is None:
        return model, tok
    if not (Path(candidate.checkpoint) / "adapter_config.json").exists():
        return models.load(candidate.base_model, candidate.checkpoint)
    from peft import PeftModel

    merged = PeftModel.from_pretrained(copy.deepcopy(model), candidate.checkpoint).merge_and_unload()
    merged.eval()
    return merged, tok


def evaluate(
    task: TaskSpec, items: list[Item], candidate: Candidate, split: str, batch_size: int = 32, threads: int | None = None
) -> EvalReport:
    import torch

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model, tok = load_candidate(candidate)
    prompts = [sft.render_prompt(tok, candidate.prompt, task.instruction, i["input"]) for i in items]
    outputs = generate(model, tok, prompts, task.max_new_tokens, batch_size)
    return score(task, items, outputs, split, time.perf_counter() - t0)
