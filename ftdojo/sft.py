"""Chat formatting, tokenization with completion-only labels, and batching.

The prompt is rendered with the model's chat template (generation prompt
included); the completion is the answer text followed by the tokenizer's EOS.
Prompt and completion are tokenized separately and concatenated, so the
tokens the model is trained on after a prompt are exactly what it must
generate after the same prompt at evaluation time. Labels are ``-100`` on
every prompt token and the token ids on completion + EOS.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ftdojo.messages import Example, PromptSpec

IGNORE = -100


def render_prompt(tok: Any, spec: PromptSpec, instruction: str, task_input: str) -> str:
    user = spec.template.format(input=task_input, instruction=instruction)
    messages = [{"role": "system", "content": spec.system}] if spec.system is not None else []
    messages.append({"role": "user", "content": user})
    return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]
    prompt_len: int
    truncated: bool


def encode(tok: Any, prompt: str, completion: str, max_length: int) -> Encoded:
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = p + c
    labels = [IGNORE] * len(p) + c
    truncated = len(ids) > max_length
    return Encoded(ids[:max_length], labels[:max_length], len(p), truncated)


def encode_examples(
    tok: Any, examples: list[Example], spec: PromptSpec, instruction: str, max_length: int
) -> list[Encoded]:
    return [encode(tok, render_prompt(tok, spec, instruction, e.input), e.completion, max_length) for e in examples]


def collate(batch: list[Encoded], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def batch_schedule(n: int, batch_size: int, steps: int, seed: int, lengths: list[int] | None = None) -> list[list[int]]:
    """Index lists for ``steps`` global batches: shuffled epochs, optionally length-grouped.

    Length grouping sorts each window of 16 batches by length, then shuffles
    the batches, so padding waste drops without ordering the epoch by length.
    """
    rng = random.Random(seed)
    out: list[list[int]] = []
    while len(out) < steps:
        order = list(range(n))
        rng.shuffle(order)
        if lengths is not None:
            window = batch_size * 16
            grouped: list[list[int]] = []
            for w in range(0, n, window):
                chunk = sorted(order[w : w + window], key=lambda i: lengths[i])
                grouped += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
            rng.shuffle(grouped)
            batches = [b for b in grouped if len(b) == batch_size] or grouped
        else:
            batches = [order[j : j + batch_size] for j in range(0, n - batch_size + 1, batch_size)] or [order]
        out += batches
    return out[:steps]
