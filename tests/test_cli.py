"""The ftdojo CLI: task browsing, trace reading, report rebuilding, clear errors."""

from __future__ import annotations

from tests_helpers import experiment

from ftdojo import cli
from ftdojo.messages import (
    Candidate,
    Check,
    Feedback,
    Finding,
    RunKey,
    RunRecord,
    ValidationReport,
)


def test_tasks_ls_and_show(capsys) -> None:
    assert cli.main(["tasks", "ls"]) == 0
    out = capsys.readouterr().out
    assert "math-arith" in out and "math-linear" in out
    assert cli.main(["tasks", "show", "math-linear"]) == 0
    out = capsys.readouterr().out
    assert "Answer: <integer>" in out and "homework_forum" in out
    assert cli.main(["tasks", "show", "nope"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err


def _record(tmp_path):
    rejected = experiment("it0").model_copy(update={
        "status": "rejected", "train": None, "dev": None, "error": "fail-fast: truncation",
        "validation": ValidationReport(plan_id="it0", checks=[Check(name="truncation", status="fail", reason="40% truncated")]),
        "feedback": Feedback(plan_id="it0", findings=[Finding(level="data", code="check_truncation", message="m")], decision="branch"),
    })
    ok = experiment("it1", 0.6).model_copy(update={
        "feedback": Feedback(plan_id="it1", findings=[Finding(level="training", code="underfit", message="m")], decision="continue"),
    })
    rec = RunRecord(
        key=RunKey(task="math-linear", agent="ft-agent", seed=0, profile="tiny", config_hash="abc"), status="ok",
        base_model="m", task_spec_hash="h", test_sha256="f" * 64, final=Candidate(base_model="m", checkpoint="/c"),
        dev=ok.dev, test=ok.dev.model_copy(update={"split": "test", "score": 0.55}), experiments=[rejected, ok],
    )
    path = tmp_path / "runs" / f"{rec.key.slug}.json"
    path.parent.mkdir(parents=True)
    path.write_text(rec.model_dump_json())
    return path


def test_trace_prints_each_iteration(tmp_path, capsys) -> None:
    assert cli.main(["trace", str(_record(tmp_path))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("  [it0] rejected") and "truncation:fail" in out[1] and "decision=branch" in out[1]
    assert out[2].startswith("  [it1] ok") and "loss 2.000->1.000" in out[2] and "dev=60.0" in out[2] and "underfit" in out[2]
    assert "final: test=55.0" in out[3]


def test_report_rebuilds_the_table(tmp_path, capsys) -> None:
    _record(tmp_path)
    assert cli.main(["report", str(tmp_path)]) == 0
    assert "| math-linear | 55.0 [60.0] |" in (tmp_path / "results.md").read_text()


def test_report_puts_the_suites_progress_into_a_readme(tmp_path, capsys) -> None:
    _record(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- ftdojo report: calibration -->\n<!-- /ftdojo report -->\nend\n")
    assert cli.main(["report", str(tmp_path), "--readme", str(readme)]) == 2
    assert "also give --suite" in capsys.readouterr().err and "1 of" not in readme.read_text()
    assert cli.main(["report", str(tmp_path), "--suite", "calibration", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n<!-- ftdojo report: calibration -->\nMeasured so far: **1 of 117 runs**; 0 of 13 tasks")
    assert "Still to run: math-linear (lacks zero-shot 0,1,2, naive-sft 0,1,2, ft-agent 1,2); not started: math-arith," in text
    assert text.endswith("<!-- /ftdojo report -->\nend\n")
