"""Tokenization: labels cover exactly the completion plus EOS; the prompt is a prefix."""

from __future__ import annotations

from transformers import AutoTokenizer

from ftdojo import sft
from ftdojo.messages import PromptSpec


def test_label_mask_covers_exactly_completion_and_eos(tiny_model) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model)
    prompt = sft.render_prompt(tok, PromptSpec(), "Reply as 'Answer: <n>'.", "What is 2+3?")
    enc = sft.encode(tok, prompt, "Answer: 5", max_length=512)
    trained = [t for t, lab in zip(enc.input_ids, enc.labels) if lab != sft.IGNORE]
    assert tok.decode(trained) == "Answer: 5<|im_end|>"
    assert trained[-1] == tok.eos_token_id
    assert all(lab == sft.IGNORE for lab in enc.labels[: enc.prompt_len])
    assert enc.labels[enc.prompt_len :] == enc.input_ids[enc.prompt_len :]
    # the tokenized prompt is exactly what generation starts from
    assert enc.input_ids[: enc.prompt_len] == tok(prompt, add_special_tokens=False)["input_ids"]
    assert prompt.endswith("<|im_start|>assistant\n")


def test_truncation_is_reported(tiny_model) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model)
    enc = sft.encode(tok, "p" * 40, "Answer: 12345", max_length=45)
    assert enc.truncated and len(enc.input_ids) == 45
    assert sft.IGNORE not in enc.labels[40:]


def test_collate_pads_with_ignored_labels(tiny_model) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model)
    a, b = sft.encode(tok, "ab", "c", 64), sft.encode(tok, "abcdef", "gh", 64)
    batch = sft.collate([a, b], tok.pad_token_id)
    assert batch["input_ids"].shape == (2, len(b.input_ids))
    assert batch["attention_mask"][0].sum() == len(a.input_ids)
    assert (batch["labels"][0, len(a.input_ids) :] == sft.IGNORE).all()


def test_batch_schedule_is_seeded_and_covers_data() -> None:
    lengths = [i % 7 for i in range(100)]
    s1 = sft.batch_schedule(100, 10, 10, seed=1, lengths=lengths)
    assert s1 == sft.batch_schedule(100, 10, 10, seed=1, lengths=lengths)
    assert sorted(i for b in s1 for i in b) == list(range(100))
    assert s1 != sft.batch_schedule(100, 10, 10, seed=2, lengths=lengths)
