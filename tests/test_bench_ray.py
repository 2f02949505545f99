"""The bench end to end on a real local Ray cluster, with the tiny model profile."""

from __future__ import annotations

import json

import pytest

from ftdojo import bench
from ftdojo.messages import RunRecord

pytestmark = pytest.mark.ray


def test_bench_runs_one_math_task_end_to_end_and_resumes(ray_cluster, tmp_path, capsys) -> None:
    out = tmp_path / "bench"
    argv = ["math-linear", "--profile", "tiny", "--out", str(out), "train.steps=10"]
    assert bench.main(argv) == 0
    records = [RunRecord.model_validate_json(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    assert {(r.key.agent, r.status) for r in records} == {("zero-shot", "ok"), ("naive-sft", "ok")}
    sft = next(r for r in records if r.key.agent == "naive-sft")
    assert sft.experiments[0].status == "ok" and sft.experiments[0].train.steps == 10
    losses = sft.experiments[0].train.losses
    assert sum(losses[-3:]) < 0.8 * sum(losses[:3])
    assert sft.test is not None and sft.test.n == 200 and len(sft.test_sha256) == 64
    assert not sft.fallback_to_base and sft.final.checkpoint
    table = (out / "results.md").read_text()
    assert "| math-linear |" in table and "zero-shot" in table and "naive-sft" in table
    summary = json.loads((out / "results.json").read_text())
    assert len(summary["rows"]) == 2
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    capsys.readouterr()
    assert bench.main(argv) == 0  # everything finished: nothing reruns
    assert "(2 already done)" in capsys.readouterr().err
    assert mtimes == {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}


def test_bench_rejects_bad_input_before_running(capsys) -> None:
    assert bench.main(["math-nope", "--profile", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unknown suite or task 'math-nope'; valid: all, math, math-arith, math-linear" in err
