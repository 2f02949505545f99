"""The evaluator: fixed outputs score to a known number; batching does not change answers."""

from __future__ import annotations

import pytest

from ftdojo import evaluation, models, sft
from ftdojo.messages import PromptSpec
from ftdojo.registry import get_task


def test_fixed_outputs_score_to_known_number() -> None:
    task = get_task("math-arith")
    items = [
        {"id": "1", "input": "q1", "answer": "5", "category": "two-step"},
        {"id": "2", "input": "q2", "answer": "12", "category": "two-step"},
        {"id": "3", "input": "q3", "answer": "-3", "category": "multiply"},
        {"id": "4", "input": "q4", "answer": "7", "category": "multiply"},
        {"id": "5", "input": "q5", "answer": "40", "category": "three-step"},
    ]
    outputs = [
        "Answer: 5",  # right
        "12",  # right number, wrong format: unparseable, counted wrong
        "2 * 3 = 6\nAnswer: -3.",  # right, trailing period tolerated
        "Answer: 7 or maybe Answer: 8",  # last answer wins: wrong
        "I don't know",  # unparseable
    ]
    r = evaluation.score(task, items, outputs, "dev")
    assert r.score == pytest.approx(2 / 5)
    assert r.parse_failure_rate == pytest.approx(2 / 5)
    assert r.per_category == {"multiply": 0.5, "three-step": 0.0, "two-step": 0.5}
    assert [e.extracted for e in r.errors] == [None, "8", None]


def test_batched_generation_matches_one_by_one(tiny_model) -> None:
    model, tok = models.load(tiny_model)
    task = get_task("math-linear")
    prompts = [sft.render_prompt(tok, PromptSpec(), task.instruction, f"Solve for x: {a}x + 1 = {a * 3 + 1}" * (a % 3 + 1)) for a in range(2, 9)]
    batched = evaluation.generate(model, tok, prompts, max_new_tokens=12, batch_size=4)
    single = [evaluation.generate(model, tok, [p], max_new_tokens=12, batch_size=1)[0] for p in prompts]
    assert batched == single


def test_greedy_with_early_stopping_rows_matches_hf_generate_per_example(tiny_model) -> None:
    import torch

    model, tok = models.load(tiny_model)
    torch.manual_seed(1)
    with torch.no_grad():  # a diverse random model: the saved tiny one repeats one token
        for p in model.parameters():
            p.normal_(0, 0.5)
    task = get_task("math-linear")
    prompts = [sft.render_prompt(tok, PromptSpec(), task.instruction, f"Solve for x: {a}x - {a} = {a * 5}") for a in range(2, 10)]
    enc = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(map(len, enc))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(e)) + e for e in enc])
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in enc])
    free = evaluation.greedy(model, ids, mask, 16, set())
    # A stop token whose first occurrence differs across rows, so rows leave the batch at different steps.
    def spread(t: int) -> int:
        return len({f.index(t) if t in f else 99 for f in free})

    stop = max({t for f in free for t in f}, key=spread)
    expected = []
    for p in prompts:
        one = tok(p, add_special_tokens=False, return_tensors="pt")["input_ids"]
        out = model.generate(input_ids=one, attention_mask=torch.ones_like(one), max_new_tokens=16, do_sample=False,
                             eos_token_id=stop, pad_token_id=tok.pad_token_id)
        expected.append([t for t in out[0, one.shape[1]:].tolist() if t != stop])
    got = evaluation.greedy(model, ids, mask, 16, {stop})
    assert got == expected
    assert len({len(g) for g in got}) > 1  # rows really stopped at different steps
