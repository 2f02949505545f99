"""The evaluator: fixed outputs score to a known number; batching does not change answers."""

from __future__ import annotations

import pytest

from ftdojo import evaluation, models, sft
from ftdojo.messages import PromptSpec
from ftdojo.tasking import get_task


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
