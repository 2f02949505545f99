"""Batched evaluation (greedy, or sampled with n samples per item) with the chat template and the task's own scorer.

Items are sorted by prompt length and generated in left-padded batches, so a
batch wastes little on padding. ``greedy`` decodes with a KV cache and drops
each row from the batch (and its cache) at its stop token, so a batch costs
what its unfinished rows cost; it matches ``model.generate`` token for token
(tested, and checked on the bundled model by ``bench/throughput.py``). Unparseable outputs count as wrong and raise the
parse-failure rate.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ftdojo import methods, models, runtime, scoring, sft
from ftdojo.messages import Candidate, ErrorSample, EvalReport
from ftdojo.tasking import Item, TaskSpec

MAX_ERROR_SAMPLES = 8


_ENCODED: dict[tuple[str, str], list[int]] = {}


def _encode(tok: Any, prompt: str) -> list[int]:
    """Token ids of a prompt, memoised per process: the dev split is re-evaluated every iteration."""
    key = (tok.name_or_path, prompt)
    if key not in _ENCODED:
        if len(_ENCODED) > 100_000:
            _ENCODED.clear()
        _ENCODED[key] = tok(prompt, add_special_tokens=False)["input_ids"]
    return _ENCODED[key]


def generate(
    model: Any, tok: Any, prompts: list[str], max_new_tokens: int, batch_size: int = 32,
    temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
) -> list[str]:
    """Completions for chat-rendered prompts, in input order: greedy at temperature 0, else sampled
    (temperature, nucleus ``top_p``) from a generator seeded per batch, so a run is repeatable."""
    import torch

    encoded = [_encode(tok, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    outputs: list[str] = [""] * len(prompts)
    eos = tok.eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos])
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    stops |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            n = len(encoded[i])
            ids[row, width - n :] = torch.tensor(encoded[i])
            mask[row, width - n :] = 1
        sampler = None if temperature <= 0 else Sampler(temperature, top_p, seed * 1_000_003 + start)
        for row, tokens in zip(idx, greedy(model, ids, mask, max_new_tokens, stops, sampler), strict=True):
            outputs[row] = tok.decode(tokens, skip_special_tokens=True)
    return outputs


class Sampler:
    """Next tokens drawn at ``temperature`` from the smallest set of tokens holding ``top_p`` of the mass."""

    def __init__(self, temperature: float, top_p: float, seed: int) -> None:
        import torch

        self.temperature, self.top_p = temperature, top_p
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, logits: Any) -> Any:
        import torch

        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > self.top_p  # keep tokens until the mass reaches top_p
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        return torch.multinomial(probs.cpu(), 1, generator=self.gen).squeeze(-1).to(logits.device)


def greedy(model: Any, ids: Any, mask: Any, max_new_tokens: int, stops: set[int], sampler: Sampler | None = None) -> list[list[int]]:
    """Greedy (or, with ``sampler``, sampled) decoding of a left-padded batch with a KV cache; a row
    leaves the batch at its stop token, so finished rows cost nothing while the others continue."""
    import torch

    rows = ids.shape[0]
    dev = next(model.parameters()).device
    ids, mask = ids.to(dev), mask.to(dev)
    out: list[list[int]] = [[] for _ in range(rows)]
    alive = torch.arange(rows)
    position = (mask.sum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        step = model(
            input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0), use_cache=True, logits_to_keep=1
        )
        cache = step.cache
        for n in range(max_new_tokens):
            nxt = step.logits[:, -1].argmax(-1) if sampler is None else sampler(step.logits[:, -1])
            keep = []
            for j, (r, t) in enumerate(zip(alive.tolist(), nxt.tolist(), strict=True)):
                if t not in stops:
                    out[r].append(t)
                    keep.append(j)
            if not keep or n == max_new_tokens - 1:
                break
            if len(keep) < len(alive):
                sel = torch.tensor(keep, device=dev)
                cache.batch_select_indices(sel)
                alive, mask, nxt, position = alive[sel.cpu()], mask[sel], nxt[sel], position[sel]
            mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=-1)
            position = position + 1
            step = model(
                input_ids=nxt[:, None], attention_mask=mask, position_ids=position[:, None],
                cache=cache, use_cache=True, logits_to_keep=1,
            )
    return out


def score(task: TaskSpec, items: list[Item], outputs: list[str], split: str, wall_s: float = 0.0) -> EvalReport:
    """Score outputs against gold answers; pure, so it is tested on fixed outputs. With
    ``task.samples`` = n > 1, ``outputs`` holds n per item (item-major): an item scores its avg@n,
    or its unbiased pass@k where ``task.pass_k`` > 1; errors and extraction use each item's first sample."""
    n_s = max(1, task.samples)
    golds = [i["answer"] for i in items]
    flat, extracted_all = scoring.score_outputs(outputs, [g for g in golds for _ in range(n_s)], task.answer_pattern, task.metric, task.tolerance)
    per_sample = [flat[i * n_s : (i + 1) * n_s] for i in range(len(items))]
    extracted = extracted_all[::n_s]
    firsts = outputs[::n_s]
    if n_s == 1:
        scores = flat
    elif task.pass_k > 1:
        scores = [scoring.pass_at_k(n_s, sum(x >= 1.0 for x in ss), task.pass_k) for ss in per_sample]
    else:
        scores = [sum(ss) / n_s for ss in per_sample]
    outputs = firsts
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
        score=scoring.split_score(task.metric, scores, extracted, golds) if n_s == 1 else (sum(scores) / n if n else 0.0),
        n=n,
        per_category={c: sum(v) / len(v) for c, v in sorted(per_cat.items())},
        parse_failure_rate=sum(e is None for e in extracted) / n if n else 0.0,
        errors=errors,
        wall_s=wall_s,
        item_scores=[float(x) for x in scores],
        sample_scores=per_sample if n_s > 1 else [],
    )


def setting(use_gpu: bool, precision: str) -> tuple[str, str]:
    """Device and base dtype an evaluation runs in: the run's GPU, in bf16 where it has it (unless the
    profile says fp32); the CPU in fp32 (unless the profile says bf16: CPU decoding in bf16 changes
    greedy answers and is not faster on every CPU)."""
    import torch

    from ftdojo import training

    if use_gpu and torch.cuda.is_available():
        return "cuda", "bf16" if training.use_bf16(precision, "cuda") else "fp32"
    return "cpu", "bf16" if precision == "bf16" else "fp32"


@contextmanager
def candidate_model(candidate: Candidate, device: str = "cpu", dtype: str = "fp32") -> Iterator[tuple[Any, Any]]:
    """The process's shared base (``dtype`` on ``device``), or the base with the candidate's checkpoint
    applied as the method that wrote it applies it (a LoRA adapter loaded unmerged); the base is as it
    was once the block ends."""
    base, tok = models.shared_base(candidate.base_model, dtype, device)
    if candidate.checkpoint is None:
        with models.base_lock:
            yield base, tok
        return
    with methods.of_checkpoint(candidate.checkpoint).applied(base, Path(candidate.checkpoint)) as model:
        yield model, tok


def evaluate(
    task: TaskSpec, items: list[Item], candidate: Candidate, split: str, batch_size: int = 32, threads: int | None = None,
    device: str = "cpu", dtype: str = "fp32",
) -> EvalReport:
    import torch

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    with candidate_model(candidate, device, dtype) as (model, tok):
        n_s = max(1, task.samples)
        prompts = [sft.render_prompt(tok, candidate.prompt, task.instruction, i["input"]) for i in items for _ in range(n_s)]
        outputs = generate(model, tok, prompts, task.max_new_tokens, batch_size, task.temperature, task.top_p, task.seed)
    runtime.release_free_heap()  # the key-value caches' pages back to the system
    return score(task, items, outputs, split, time.perf_counter() - t0)
