"""The ``ftdojo`` command: browse tasks, run the bench, rebuild reports, read a run's trace, export results.

Examples::

    ftdojo tasks ls
    ftdojo tasks show math-linear
    ftdojo bench all --seeds 0,1          # same as python -m ftdojo.bench
    ftdojo report ~/.cache/ftdojo/results/all__calibration
    ftdojo trace ~/.cache/ftdojo/results/all__calibration/runs/<run>.json
    ftdojo export ~/.cache/ftdojo/results/calibration__calibration bench/calibration
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ftdojo import bench, config, report
from ftdojo.errors import UserError
from ftdojo.messages import RunRecord
from ftdojo.registry import domains, get_domain, get_task
from ftdojo.tasking import TaskSpec


def _origin(t: TaskSpec) -> str:
    return t.origin or (f"generated ({t.generate.__module__})" if t.generate is not None else "")


def _splits(t: TaskSpec) -> tuple[str, str]:
    if t.load_test is None:
        return str(t.dev_size), str(t.test_size)
    return (str(t.dev_size) if t.dev_from or t.dev_from_items else f"≤{t.dev_size}" if t.dev_size else "all"), "rest" if t.dev_from_items else "all"


def tasks_ls() -> None:
    print(f"{'task':<20} {'domain':<12} {'metric':<12} {'dev':>5} {'test':>5}  origin — description")
    n = 0
    for d in domains().values():
        for t in d.tasks:
            n += 1
            dev, test = _splits(t)
            print(f"{t.id:<20} {d.name:<12} {t.metric:<12} {dev:>5} {test:>5}  {_origin(t)} — {t.description}")
    print(f"{n} tasks in {len(domains())} domains; `ftdojo tasks show TASK` for one task and its raw sources")


def tasks_show(task_id: str) -> None:
    t = get_task(task_id)
    d = get_domain(t.domain)
    dev, test = _splits(t)
    print(f"{t.id} ({d.name}): {t.description}")
    print(f"  origin:        {_origin(t)}")
    print(f"  instruction:   {t.instruction}")
    print(f"  answer format: {t.answer_format}")
    print(f"  metric:        {t.metric} ({t.direction}){', categories: ' + ', '.join(t.categories) if t.categories else ''}")
    gen = f"max {t.max_new_tokens} new tokens, " + ("greedy" if t.temperature == 0 else f"temperature {t.temperature:g}, top-p {t.top_p:g}")
    if t.samples > 1:
        gen += f", {t.samples} samples per item ({f'pass@{t.pass_k}' if t.pass_k > 1 else f'avg@{t.samples}'})"
    print(f"  generation:    {gen}")
    where = (f"{t.dev_from} (a seeded slice, removed from it)" if t.dev_from else "the upstream validation split" if t.load_dev
             else "a seeded slice of the one upstream split" if t.dev_from_items else "split by seed")
    sealed = f"; {t.sealed_rule}" if t.sealed_rule else "; the upstream test split as it is" if t.load_test else ""
    print(f"  splits:        dev {dev} (visible; {where}), test {test} (sealed{sealed})")
    print(f"  domain:        {d.description}")
    print("  raw sources (shared by the domain; the card's suggested mapping for this task, if any):")
    for s in d.sources:
        hint = s.suggestion(t.id)
        print(f"    {s.name:<22} {s.format:<8} {s.origin + '; ' if s.origin else ''}fields: {', '.join(s.fields) or '(from the data)'}")
        print(f"      {s.readme}")
        if hint.prompt and hint.answer:
            print(f"      suggested: input {hint.prompt!r} -> answer {hint.answer!r}"
                  + (f", reasoning {hint.rationale!r}" if hint.rationale else ""))


def report_progress(args: argparse.Namespace) -> None:
    """``ftdojo report DIR --suite S [--readme F]``: the report, plus progress through the suite's grid."""
    if not args.suite:
        raise UserError("ftdojo report --readme: also give --suite (e.g. --suite calibration), whose grid the progress counts")
    suite = config.load_suite(args.suite)
    records, damaged = report.load_store(args.dir)
    report.warn_damaged(damaged)
    summary = report.summarize(records, damaged)
    md = report.publish(args.dir, summary)
    block = report.readme_block(report.progress(records, suite.tasks, suite.agents, suite.seeds, suite.agent_tasks), summary.calibration)
    if args.readme:
        report.fill_readme(args.readme, block)
        print(f"{args.readme}: calibration block rewritten from {args.dir}/runs\n")
    else:
        print(md)
    print(block)


def trace(path: Path, full: bool = False) -> None:
    r = RunRecord.model_validate_json(path.read_text())
    k = r.key
    print(f"run {k.task} / {k.agent} / seed {k.seed} / {k.profile}: {r.status} {r.error or ''}")
    for e in r.experiments:
        parts = [f"[{e.id}] {e.status}", f"parent={e.parent}"]
        if e.curated:
            parts.append(f"examples={e.curated.n_examples} {e.curated.per_source}")
        if e.validation:
            bad = [f"{c.name}:{c.status}" for c in e.validation.checks if c.status != "pass"]
            parts.append(f"checks={len(e.validation.checks)} {bad or 'all pass'}")
        if e.train and e.train.losses:
            parts.append(f"loss {e.train.losses[0]:.3f}->{e.train.losses[-1]:.3f} ({e.train.tokens_per_s:.0f} tok/s)")
        if e.dev:
            parts.append(f"dev={100 * e.dev.score:.1f}")
        if e.feedback:
            parts.append(f"decision={e.feedback.decision} " + "; ".join(f.code for f in e.feedback.findings))
        if e.error:
            parts.append(f"error={e.error}")
        print("  " + " | ".join(parts))
    if r.test:
        base = " (untouched base model: no valid candidate)" if r.fallback_to_base else ""
        print(f"  final: test={100 * r.test.score:.1f}{base} dev={100 * r.dev.score:.1f}" if r.dev else f"  final: test={100 * r.test.score:.1f}{base}")
    print(f"  leak: {r.leak}{' FLAGGED' if r.leak_flagged else ''}; test sha256 {r.test_sha256[:16]}…")
    if r.transcript_sha256:
        show_transcript(path, r.transcript_sha256, full)


def show_transcript(record: Path, sha256: str, full: bool = False, width: int = 240) -> None:
    """Each exchange with a language model: who asked, what it cost, the last message sent and the answer
    (whole with ``full``)."""
    from ftdojo import transcripts

    exchanges, state = transcripts.read(record, sha256)
    where = transcripts.path_for(record)
    if state == "missing":
        print(f"  transcript: {where} is missing (the record hashes one: sha256 {sha256[:16]}…)")
        return
    tokens = sum(x.tokens for x in exchanges)
    print(f"  transcript: {len(exchanges)} exchanges, {tokens} tokens, {where.name}"
          + (" — ALTERED: its hash is not the one the record holds" if state == "altered" else " (hash matches the record)"))
    cut = (lambda t: t) if full else (lambda t: t if len(t) <= width else t[:width] + f"… [{len(t)} chars]")
    for i, x in enumerate(exchanges):
        settings = {k: v for k, v in x.request.items() if k != "messages"}
        status = "cache" if x.cached else (f"ERROR {x.error}" if x.error else f"{x.tokens} tokens")
        print(f"  #{i} {x.role} -> {x.model} ({status}) {json.dumps(settings)}")
        last = (x.request.get("messages") or [{}])[-1]
        print(f"     asked [{last.get('role', '?')}]: {cut(str(last.get('content', '')))}")
        if x.reply:
            print(f"     answer: {cut(x.reply)}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        return bench.main(argv[1:])
    ap = argparse.ArgumentParser(prog="ftdojo", description=__doc__.split("Examples::")[0], epilog=__doc__.split("Examples::")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tasks", help="list or show built-in tasks")
    t.add_argument("action", choices=["ls", "show"])
    t.add_argument("task", nargs="?")
    sub.add_parser("bench", help="run the bench (see python -m ftdojo.bench --help)")
    r = sub.add_parser("report", help="rebuild results.md / results.json from a bench folder's run records")
    r.add_argument("dir", type=Path)
    r.add_argument("--suite", help="also say how far the records are through this suite's tasks x agents x seeds")
    r.add_argument("--readme", type=Path, help="put that progress and the calibration table into this Markdown file, "
                   f"between the lines {report.README_BEGIN} and {report.README_END}")
    ex = sub.add_parser("export", help="copy a bench folder's run records, slimmed (no traces, no sealed text), to publish")
    ex.add_argument("dir", type=Path)
    ex.add_argument("dest", type=Path)
    tr = sub.add_parser("trace", help="print a run's per-iteration trace from its record, and its LLM transcript")
    tr.add_argument("record", type=Path)
    tr.add_argument("--full", action="store_true", help="print every transcript message whole")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "tasks" and args.action == "ls":
            tasks_ls()
        elif args.cmd == "tasks":
            if not args.task:
                raise UserError("ftdojo tasks show TASK_ID: give a task id (see ftdojo tasks ls)")
            tasks_show(args.task)
        elif args.cmd == "report":
            if args.readme or args.suite:
                report_progress(args)
            else:
                print(report.write(args.dir))
        elif args.cmd == "export":
            print(f"{report.export(args.dir, args.dest)} run records -> {args.dest / 'runs'}")
        elif args.cmd == "trace":
            trace(args.record, args.full)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
