"""Time breakdown of run records: seconds per phase and the share outside training and evaluation.

    .venv/bin/python bench/phases.py out/runs/*.json     # any full run record (not the slimmed calibration ones)

A slimmed record (``ftdojo export``) keeps only evaluation events, so most of its time shows as unaccounted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ftdojo.report import profile  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", nargs="+", type=Path, help="run record JSON files")
    args = ap.parse_args(argv)
    records = [(p, json.loads(p.read_text())) for p in args.records if not p.name.endswith(".transcript.jsonl")]
    for p, r in records:
        print(profile.render(p.name, r))
    if len(records) > 1:
        shares = [profile.work_share(r) for _, r in records]
        walls = [float(r["wall_s"]) for _, r in records]
        print(f"{len(records)} runs: median wall {statistics.median(walls):.1f} s, "
              f"median share in training + evaluation {statistics.median(shares):.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
