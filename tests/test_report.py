"""Multi-run statistics against hand-computed values, on fixed records; the report's three formats."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests_helpers import experiment

from ftdojo import bench, config, report, stats
from ftdojo.errors import UserError
from ftdojo.messages import Candidate, ErrorSample, EvalReport, Event, RunKey, RunRecord, ValidationReport


def test_mean_std_and_exact_bootstrap() -> None:
    assert stats.mean_std([0.2, 0.4, 0.6]) == pytest.approx((0.4, 0.2))
    assert stats.bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    # [0, 0, 1]: resample means 0, 1/3, 2/3, 1 with weights 8, 12, 6, 1 (of 27).
    assert stats.bootstrap_ci([0.0, 0.0, 1.0], level=0.9) == pytest.approx((0.0, 2 / 3))
    assert stats.bootstrap_ci([0.5] * 5) == (0.5, 0.5)
    lo, hi = stats.bootstrap_ci([i / 20 for i in range(20)])  # Monte Carlo branch: brackets the mean, reproducible
    assert lo < 0.475 < hi and (lo, hi) == stats.bootstrap_ci([i / 20 for i in range(20)])


def test_ranks_wins_and_direction() -> None:
    table = {"t1": {"A": 0.5, "B": 0.7, "C": 0.7}, "t2": {"A": 0.1, "B": 0.3, "C": 0.2}}
    r = stats.ranks(table, {"t1": "max", "t2": "min"})
    assert r == {"t1": {"B": 1.5, "C": 1.5, "A": 3.0}, "t2": {"A": 1.0, "C": 2.0, "B": 3.0}}
    assert stats.average_rank(r) == {"A": 2.0, "B": 2.25, "C": 1.75}
    assert stats.wins(r) == {"A": 1, "B": 1, "C": 1}


def test_paired_tests() -> None:
    assert stats.sign_flip_test([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    assert stats.sign_flip_test([1.0, -1.0]) == 1.0
    assert stats.sign_test([1, 1, 1, 1, 0, 1], [0, 0, 0, 0, 0, 1]) == (4, 0, pytest.approx(0.125))
    assert stats.sign_test([1] * 10, [0] * 10)[2] == pytest.approx(2 / 1024)


def _rec(task: str, agent: str, seed: int, score: float, items: list[float], **over) -> RunRecord:
    test = EvalReport(split="test", score=score, n=len(items), per_category={}, parse_failure_rate=0.0, errors=[], item_scores=items)
    return RunRecord(
        key=RunKey(task=task, agent=agent, seed=seed, profile="p", config_hash="h"), status="ok", base_model="m",
        task_spec_hash="s", test_sha256="t" * 64, final=Candidate(base_model="m"), test=test, **over,
    )


def _records() -> list[RunRecord]:
    ok0 = experiment("it1", 0.6).model_copy(update={"wall_s": 100.0})
    rejected = experiment("it0").model_copy(update={
        "status": "rejected", "train": None, "dev": None, "wall_s": 5.0, "validation": ValidationReport(plan_id="it0", checks=[], wall_s=4.0)})
    events = [Event(t=30.0, event="evaluate", iteration="it1", data={"split": "dev", "score": 0.6})]
    agent_runs = [
        _rec("t1", "agent", 0, 0.75, [1, 1, 1, 0], experiments=[rejected, ok0], events=events, wall_s=120.0,
             usage={"train_steps": 50, "dev_evals": 1, "llm_tokens": 2000, "data_tokens": 600, "llm_cost_usd": 0.02}),
        _rec("t1", "agent", 1, 0.50, [1, 1, 0, 0], wall_s=60.0),
        _rec("t2", "agent", 0, 1.00, [1, 1], wall_s=60.0),
        _rec("t2", "agent", 1, 1.00, [1, 1], wall_s=60.0),
    ]
    base_runs = [
        _rec("t1", "base", 0, 0.25, [1, 0, 0, 0]),
        _rec("t1", "base", 1, 0.25, [0, 1, 0, 0]),
        _rec("t2", "base", 0, 0.50, [1, 0]),
        _rec("t2", "base", 1, 0.99, [1, 1], leak={"test": 0.5}, leak_flagged=True),  # must not count anywhere
        _rec("t2", "base", 2, 0.99, [1, 1]).model_copy(update={"provenance_flagged": True}),
    ]
    return agent_runs + base_runs


def test_summary_on_fixed_records_matches_hand_computation() -> None:
    s = report.summarize(_records())
    by = {(r.task, r.agent): r for r in s.rows}
    assert by[("t1", "agent")].test_mean == pytest.approx(0.625)
    assert by[("t1", "agent")].test_std == pytest.approx(0.1767767, rel=1e-6)
    assert by[("t1", "agent")].test_ci95 == [0.5, 0.75]  # exact bootstrap of two values
    assert by[("t2", "base")].test == [0.5] and by[("t2", "base")].leak_flagged == 1 and by[("t2", "base")].provenance_flagged == 1
    assert s.wins == {"agent": 2, "base": 0} and s.average_rank == {"agent": 1.0, "base": 2.0}
    (pair,) = s.paired
    # pairs: (t1,0) +0.5, (t1,1) +0.25, (t2,0) +0.5; the flagged (t2,1) is left out.
    assert pair.pairs == 3 and pair.mean_diff == pytest.approx(1.25 / 3)
    assert pair.p_sign_flip == pytest.approx(2 / 8)
    # items: t1 s0 agent 1110 vs base 1000 -> +2; t1 s1 1100 vs 0100 -> +1; t2 s0 11 vs 10 -> +1: 4 up, 0 down.
    assert (pair.a_better_items, pair.b_better_items, pair.p_items) == (4, 0, pytest.approx(0.125))
    eff = s.efficiency["agent"]
    assert (eff.iterations, eff.ok_iterations, eff.rejected) == (2, 1, 1)
    assert eff.failfast_saved_s == pytest.approx(100.0 - 4.0)  # one rejected plan: an ok iteration's cost minus validation
    assert eff.time_to_first_valid_s == 30.0 and eff.llm_tokens == 2000 / 4 and eff.data_tokens == 600 / 4
    assert eff.llm_cost_usd == pytest.approx(0.02 / 4)  # per run: four runs, one spent
    assert {f.seed for f in s.flagged} == {1, 2} and "leak" in s.flagged[0].why + s.flagged[1].why


def test_report_writes_markdown_json_and_self_contained_html(tmp_path) -> None:
    (tmp_path / "runs").mkdir()
    for r in _records():
        (tmp_path / "runs" / f"{r.key.slug}.json").write_text(r.model_dump_json())
    md = report.write(tmp_path)
    assert "| t1 | 62.5 ± 17.7 (50.0–75.0) [—] | 25.0 ± 0.0 (25.0–25.0) [—] |" in md
    assert "| agent vs base | 3 | +41.7 | 3/0 | 0.25 | 4/0 | 0.125 |" in md
    assert json.loads((tmp_path / "results.json").read_text())["wins"]["agent"] == 2
    page = (tmp_path / "report.html").read_text()
    assert page.count('class="bar"') >= 4 and "<script" not in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")


def test_html_report_renders_in_headless_chromium(tmp_path) -> None:
    import shutil
    import subprocess

    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome", "headless_shell") if shutil.which(b)), None)
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must check the page in a real browser: .ci/run installs chromium from Debian's packages")
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    (tmp_path / "runs").mkdir()
    for r in _records():
        (tmp_path / "runs" / f"{r.key.slug}.json").write_text(r.model_dump_json())
    report.write(tmp_path)
    page = (tmp_path / "report.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<svg") >= 3 and dom.count('class="bar"') >= 4  # parsed and laid out by the browser
    assert dom.count("<table>") >= 4 and "<th>agent vs base</th>" not in dom and "<td>agent vs base</td>" in dom  # real tables
    assert "<pre>" not in dom and "|---|" not in dom
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,1000", page], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000  # a blank page compresses to a few kB


def test_report_counts_the_newest_record_of_a_run_and_a_bench_only_its_own(tmp_path) -> None:
    (tmp_path / "runs").mkdir()
    old = _rec("t1", "agent", 0, 0.10, [0, 0]).model_copy(update={"started_at": "2026-01-01T00:00:00+00:00"})
    new = _rec("t1", "agent", 0, 0.90, [1, 1]).model_copy(update={"started_at": "2026-02-01T00:00:00+00:00"})
    new = new.model_copy(update={"key": new.key.model_copy(update={"config_hash": "newer"})})
    for r in (old, new):
        (tmp_path / "runs" / f"{r.key.slug}.json").write_text(r.model_dump_json())
    (row,) = report.summarize(report.load_records(tmp_path)).rows
    assert row.test == [0.9]
    (row,) = report.summarize(report.load_records(tmp_path, {old.key.slug})).rows
    assert row.test == [0.1]


def test_exported_records_keep_every_table_number_and_no_sealed_text(tmp_path) -> None:
    src, dest = tmp_path / "bench", tmp_path / "published"
    (src / "runs").mkdir(parents=True)
    sealed = ErrorSample(input="sealed question 17", expected="42", output="41", extracted="41", category="c")
    for r in _records():
        r = r.model_copy(update={"test": r.test.model_copy(update={"errors": [sealed]}),
                                 "events": r.events + [Event(t=1.0, event="check", iteration="it0", data={"name": "smoke_train"})]})
        (src / "runs" / f"{r.key.slug}.json").write_text(r.model_dump_json())
    assert report.export(src, dest) == len(_records())
    text = "".join(p.read_text() for p in (dest / "runs").glob("*.json"))
    assert "sealed question 17" not in text and '"check"' not in text
    same = [report.summarize(report.load_records(d)).model_dump_json() for d in (dest, src)]
    assert same[0] == same[1]  # (as JSON: NaN, the mean of no values, is not equal to itself)
    assert all(bench.finished(dest, r.key) for r in _records())  # copied into a bench's --out, they resume it
    with pytest.raises(UserError, match="no run records"):
        report.export(tmp_path / "empty", dest)


def test_the_published_calibration_is_what_its_records_say() -> None:
    root = Path(__file__).resolve().parent.parent / "bench" / "calibration"
    records = report.load_records(root)
    assert records and all(not r.test.errors for r in records if r.test)  # no sealed text published
    summary = report.summarize(records)
    assert report.markdown(summary) == (root / "results.md").read_text()  # rebuilt by `ftdojo report bench/calibration`
    suite = config.load_suite("calibration")
    readme = (root.parent.parent / "README.md").read_text()
    progress = report.progress(records, suite.tasks, suite.agents, suite.seeds)
    block = report.readme_block(progress, summary.calibration)  # `--suite calibration --readme README.md`
    assert f"{report.README_BEGIN}\n{block}\n{report.README_END}" in readme
    assert "\n".join(report.calibration_markdown(summary.calibration, progress["complete"])) in block
    # ...and its verdict counts only the suite's complete tasks (not every task with a record).
    judged = [r for r in summary.calibration.rows if r.task in progress["complete"] and r.learnable is not None]
    assert f"**{sum(r.learnable for r in judged)} of {len(judged)} tasks learnable**" in block



def test_the_embedded_default_table_agrees_with_every_published_seed_0_baseline() -> None:
    """`make bench` (suite `all`) is a seed-0 part of the calibration under the same profile (every
    baseline run, FT-Agent on five tasks), so each run the calibration publishes re-measures a cell of
    the README's first results table; cells outside the suite's grid are blank."""
    root = Path(__file__).resolve().parent.parent
    every, cal = config.load_suite("all"), config.load_suite("calibration")
    assert (every.tasks, every.profile, every.seeds) == (cal.tasks, cal.profile, [0])
    assert set(every.agents) == {*report.BASELINES, "ft-agent"} <= set(cal.agents)
    section = (root / "README.md").read_text().split("### Results on the embedded default")[1].split("\n### ")[0]
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "task":
            assert cells[1:] == every.agents
        if len(cells) == 1 + len(every.agents) and cells[0] in every.tasks:
            table[cells[0]] = dict(zip(every.agents, cells[1:], strict=True))
    assert sorted(table) == sorted(every.tasks)
    assert {(t, a) for t, row in table.items() for a, c in row.items() if c != "—"} == {
        (t, a) for t in every.tasks for a in every.agents if every.runs_on(a, t)}
    checked = 0
    for r in report.load_records(root / "bench" / "calibration"):
        if r.key.seed == 0 and every.runs_on(r.key.agent, r.key.task) and r.key.agent in every.agents and r.test and r.dev:
            assert table[r.key.task][r.key.agent] == f"{100 * r.test.score:.1f} [{100 * r.dev.score:.1f}]", r.key.slug
            checked += 1
    assert checked == 2 * 13 + 5  # every cell of the grid is published

def test_progress_counts_the_suites_grid_and_the_readme_block_is_replaced_in_place(tmp_path) -> None:
    recs = [_rec("t1", "a", 0, 0.5, [1], wall_s=60.0), _rec("t1", "a", 1, 0.5, [1], wall_s=180.0),
            _rec("t1", "b", 0, 0.5, [1], wall_s=30.0), _rec("t1", "b", 1, 0.5, [1]).model_copy(update={"status": "failed"}),
            _rec("t2", "a", 0, 0.5, [1], wall_s=120.0), _rec("t9", "a", 0, 0.5, [1], wall_s=999.0)]  # t9: not in the grid
    p = report.progress(recs, ["t1", "t2", "t3"], ["a", "b"], [0, 1])
    assert (p["done"], p["planned"], p["complete"]) == (4, 12, [])  # the failed run is not done
    assert p["missing"] == {"t1": ["b 1"], "t2": ["a 1", "b 0,1"]} and p["not_started"] == ["t3"]
    assert p["wall_min"] == {"a": [1.0, 3.0], "b": [0.5, 0.5]}
    text = "\n".join(report.progress_markdown(p))
    assert "**4 of 12 runs**; 0 of 3 tasks" in text
    assert "Still to run: t1 (lacks b 1); t2 (lacks a 1, b 0,1); not started: t3." in text
    assert p["task_wall_min"] == {} and "A complete task's runs took" not in text  # no task has every run yet
    done = report.progress(recs, ["t1", "t2"], ["a"], [0])  # both complete: t1 took 1 min of a 0, t2 2 min
    assert done["complete"] == ["t1", "t2"] and "Still to run" not in "\n".join(report.progress_markdown(done))
    assert done["task_wall_min"] == {"t1": 1.0, "t2": 2.0} and done["median_run_min"] == {"a": 1.5}
    assert "A complete task's runs took 1–2 min in all (median 2 over 2 tasks); median run (min): a 1.5." in \
        report.progress_markdown(done)[0]
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\nbefore\n{report.README_BEGIN}\nold table\n{report.README_END}\nafter\n")
    report.fill_readme(readme, "new block\n")
    assert readme.read_text() == f"# Title\nbefore\n{report.README_BEGIN}\nnew block\n{report.README_END}\nafter\n"
    bare = tmp_path / "NOTES.md"
    bare.write_text("no markers here\n")
    with pytest.raises(UserError, match=r"--readme .*NOTES.md: no '<!-- ftdojo report: calibration -->'"):
        report.fill_readme(bare, "x")
    assert bare.read_text() == "no markers here\n"  # nothing lost


def test_calibration_table_says_which_tasks_are_learnable_and_where_curation_matters() -> None:
    recs = []
    for seed in (0, 1, 2):  # t-easy: zero-shot 0, naive 0.3, ft 0.6; t-flat: 0.40 / 0.45 / 0.48; t-naive: 0 / 0.5 / 0.4
        recs += [_rec("t-easy", "zero-shot", seed, 0.0, [0]), _rec("t-easy", "naive-sft", seed, 0.3, [0, 0, 0, 0]),
                 _rec("t-easy", "ft-agent", seed, 0.6, [1, 1, 1, 1]), _rec("t-flat", "zero-shot", seed, 0.40, [0]),
                 _rec("t-flat", "naive-sft", seed, 0.45, [0]), _rec("t-flat", "ft-agent", seed, 0.48, [0]),
                 _rec("t-naive", "zero-shot", seed, 0.0, [0]), _rec("t-naive", "naive-sft", seed, 0.5, [1]),
                 _rec("t-naive", "ft-agent", seed, 0.4, [1])]
    recs.append(_rec("t-easy", "ft-agent", 3, 0.99, [1], leak={"test": 0.3}, leak_flagged=True))  # flagged: not counted
    cal = report.summarize(recs).calibration
    by = {r.task: r for r in cal.rows}
    assert by["t-easy"].gain == pytest.approx(0.6) and by["t-easy"].learnable and by["t-easy"].curation_matters
    assert by["t-flat"].gain == pytest.approx(0.08) and not by["t-flat"].learnable and by["t-flat"].curation_matters
    assert by["t-naive"].best_agent == "naive-sft" and by["t-naive"].learnable and not by["t-naive"].curation_matters
    assert (cal.learnable, cal.curation_matters, cal.tasks, cal.judged) == (2, 2, 3, 3)
    # Sign test over paired items, seeds pooled: t-easy 4 items x 3 seeds all ft-only -> 12/0, p = 2 / 2^12;
    # t-flat leads on the mean with no item that differs, so it matters by the mean but not significantly.
    assert by["t-easy"].vs_naive == (12, 0, pytest.approx(2 / 4096)) and by["t-easy"].curation_significant
    assert by["t-flat"].vs_naive == (0, 0, 1.0) and by["t-flat"].curation_matters and not by["t-flat"].curation_significant
    assert not by["t-naive"].curation_significant and cal.curation_significant == 1
    md = report.markdown(report.summarize(recs))
    assert "**2 of 3 tasks learnable**" in md and "curation matters on 2 of 3** (the best curated agent above naive-sft), **significantly on 1**" in md
    assert "| t-easy | 0.0 | 30.0 | 60.0 (ft-agent) | +60.0 | yes | yes | 12/0, p=0.000488 | 3 / 3 / 3 |" in md
    assert "| t-flat | 40.0 | 45.0 | 48.0 (ft-agent) | +8.0 | no | yes | 0/0, p=1 | 3 / 3 / 3 |" in md  # the flagged run is not a seed
    assert by["t-easy"].seeds == [3, 3, 3]
    assert report.summarize([_rec("t", "a", 0, 0.5, [1])]).calibration is None  # no zero-shot: no calibration
    with_new = report.summarize(recs + [_rec("t-new", "zero-shot", 0, 0.0, [0])])
    alone = with_new.calibration  # nothing trained yet: not judged
    new = {r.task: r for r in alone.rows}["t-new"]
    assert new.learnable is None and new.gain is None and (alone.learnable, alone.tasks) == (2, 3)
    assert "| t-new | 0.0 | — | — | — | — | — | — | 1 / — / — |" in report.markdown(with_new)  # no gain before training
    # In the README the verdict counts only the suite's complete tasks; a partly run one is shown, marked, not counted.
    partly = report.summarize(recs + [_rec("t-part", "zero-shot", 0, 0.0, [0]), _rec("t-part", "ft-agent", 0, 0.9, [1])])
    assert partly.calibration.tasks == 4  # on its own the table counts every trained task
    text = "\n".join(report.calibration_markdown(partly.calibration, ["t-easy", "t-flat", "t-naive"]))
    assert "**2 of 3 tasks learnable**" in text and "curation matters on 2 of 3**" in text
    assert "Partly run, shown but not counted until every run is in: t-part." in text
    assert "| t-part (partly run) | 0.0 | — | 90.0 (ft-agent) | +90.0 | yes | — | — | 1 / — / 1 |" in text
    assert "(partly run)" not in "\n".join(report.calibration_markdown(partly.calibration, ["t-easy", "t-flat", "t-naive", "t-part"]))


def test_a_damaged_record_is_named_set_aside_and_reported_not_a_traceback(tmp_path, capsys) -> None:
    from ftdojo import cli

    runs = tmp_path / "runs"
    runs.mkdir()
    good, torn = _rec("t1", "agent", 0, 0.5, [1, 0]), _rec("t1", "base", 0, 0.25, [0, 1])
    (runs / f"{good.key.slug}.json").write_text(good.model_dump_json())
    text = torn.model_dump_json()
    (runs / f"{torn.key.slug}.json").write_text(text[: len(text) // 2])  # a torn write, outside the run set below
    md = report.write(tmp_path, None, {good.key.slug})
    err = capsys.readouterr().err
    moved = runs / "damaged" / f"{torn.key.slug}.json"
    assert err.count("\n") == 1 and err.startswith(f"warning: {runs / torn.key.slug}.json: damaged run record (")
    assert "Invalid JSON" in err and str(moved) in err
    assert moved.read_text() == text[: len(text) // 2] and not (runs / f"{torn.key.slug}.json").exists()
    assert "Damaged run records set aside" in md and str(moved) in md
    assert json.loads((tmp_path / "results.json").read_text())["damaged"][0]["moved_to"] == str(moved)
    # the same through the command line, with a record whose fields were edited by hand
    edited = json.loads(good.model_dump_json())
    edited["status"] = "great"
    (runs / "edited.json").write_text(json.dumps(edited))
    assert cli.main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "warning: " in out.err and "edited.json: damaged run record (status: Input should be 'ok' or 'failed')" in out.err
    assert "Traceback" not in out.err and (runs / "damaged" / "edited.json").exists()


def test_the_bench_reruns_a_damaged_record_of_its_own_run_and_says_so(tmp_path, capsys) -> None:
    rec = _rec("t1", "agent", 0, 0.5, [1, 0])
    path = bench.record_path(tmp_path, rec.key)
    path.parent.mkdir(parents=True)
    path.write_text(rec.model_dump_json())
    assert bench.finished(tmp_path, rec.key)
    path.write_text(rec.model_dump_json()[:100])
    assert not bench.finished(tmp_path, rec.key)
    err = capsys.readouterr().err
    assert err.startswith(f"warning: {path}: damaged run record (") and "set aside as" in err and err.count("\n") == 1
    assert not path.exists() and (path.parent / "damaged" / path.name).exists()


def test_each_agent_is_normalised_by_the_reference_and_the_reference_is_no_curated_agent() -> None:
    """(agent - zero-shot) / (reference - zero-shot) per task, on tasks where both ran, with each agent's
    mean; in a lower-is-better task the ratio reads the same way; the reference never stands in for the
    calibration's curated agent."""
    runs = [
        _rec("t1", "zero-shot", 0, 0.20, [0] * 5), _rec("t1", "reference", 0, 0.80, [1] * 5),
        _rec("t1", "naive-sft", 0, 0.50, [1] * 5), _rec("t1", "ft-agent", 0, 0.65, [1] * 5),
        _rec("t2", "zero-shot", 0, 0.40, [0] * 5), _rec("t2", "reference", 0, 0.40, [0] * 5),  # no room: left out
        _rec("t2", "ft-agent", 0, 0.60, [1] * 5),
        _rec("t3", "zero-shot", 0, 9.0, [9.0] * 5, direction="min"), _rec("t3", "reference", 0, 3.0, [3.0] * 5, direction="min"),
        _rec("t3", "ft-agent", 0, 7.5, [7.5] * 5, direction="min"),
        _rec("t4", "zero-shot", 0, 0.1, [0] * 5), _rec("t4", "ft-agent", 0, 0.9, [1] * 5),  # no reference ran
    ]
    s = report.summarize(runs)
    assert s.normalised["ft-agent"] == pytest.approx({"t1": 0.75, "t3": 0.25})
    assert s.normalised["naive-sft"] == pytest.approx({"t1": 0.5})
    assert s.normalised["reference"] == pytest.approx({"t1": 1.0, "t3": 1.0}) and s.normalised["zero-shot"]["t1"] == 0
    assert s.normalised_mean["ft-agent"] == pytest.approx(0.5)
    assert {r.task: r.curated_agent for r in s.calibration.rows}["t1"] == "ft-agent"
    md = report.markdown(s)
    assert "| ft-agent | 0.75 | 0.25 | 0.50 |" in md and "| t1 | t3 | mean |" in md
