"""Fail-fast benchmark: the compute each catch saves, and effective iterations per budget.

For one good plan and five broken ones (the fault-injection set: answers in
the wrong format, a max length that truncates the answers, a diverging
learning rate, an empty recipe, a target module the model lacks) it measures,
with the real curator, validator, trainer and evaluator:

* the cost of validating the plan (all checks, smoke train included), and
* the cost of running it without fail-fast (full training + dev evaluation,
  or until it crashes).

Then, for planners whose proposals are broken at rate r, the expected
wall-clock per proposal with and without fail-fast, and the effective (valid,
trained) iterations per hour of compute.

    .venv/bin/python bench/failfast.py                      # bundled model, math-linear, 60 steps
    .venv/bin/python bench/failfast.py --model tiny-random  # seconds, for a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from actors.curator import Curator
from actors.validator import Validator
from ftdojo import training
from ftdojo.dojo import DojoEnv, EnvHandle
from ftdojo.messages import (
    ValidateRequest,
    Budget,
    Candidate,
    DataRecipe,
    Plan,
    SourceMapping,
    TrainConfig,
)


def plans(steps: int, max_length: int = 256) -> dict[str, Plan]:
    good = SourceMapping(source="worked_solutions", prompt="{problem}", answer="{final}", rationale="{solution}")
    base = TrainConfig(steps=steps, batch_size=8, lr=1e-3, warmup_steps=5, max_length=max_length)
    rec = DataRecipe(sources=[good], require_parseable=True)

    def p(name: str, recipe: DataRecipe = rec, **train: object) -> Plan:
        return Plan(plan_id=name, hypothesis=name, recipe=recipe, train=base.model_copy(update=train))

    return {
        "good": p("good"),
        "wrong-format": p("wrong-format", DataRecipe(sources=[good.model_copy(update={"answer": "the answer is {final}"})])),
        "truncating-max-length": p("truncating-max-length", max_length=max_length // 5),
        "diverging-lr": p("diverging-lr", lr=5.0),
        "empty-recipe": p("empty-recipe", DataRecipe(sources=[good.model_copy(update={"where": {"final": "never"}})])),
        "missing-target-module": p("missing-target-module", target_modules=["q_proj", "c_attn"]),
    }


async def measure(model: str, task: str, steps: int, threads: int, max_length: int) -> list[dict[str, object]]:
    work = Path(tempfile.mkdtemp(prefix="ftdojo-failfast-"))
    env = DojoEnv(task, model, Budget(max_train_steps=10**6, max_dev_evals=100), threads=threads)
    card = env.describe()
    curator, validator = Curator(EnvHandle(env), str(work)), Validator(EnvHandle(env), str(work), threads=threads)
    rows = []
    for name, plan in plans(steps, max_length).items():
        t0 = time.perf_counter()
        data = await curator.curate(plan)
        curate_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = await validator.validate(ValidateRequest(plan=plan, data=data, card=card))
        validate_s = time.perf_counter() - t0
        caught = [c.name for c in report.checks if c.status == "fail"]
        t0 = time.perf_counter()
        outcome = "no data"
        if data.n_examples:
            res = training.fit(plan_id=name, base_model=model, data_path=data.path, output_dir=str(work / name / "adapter"),
                               train=plan.train, prompt=plan.prompt, instruction=card.instruction, threads=threads)
            outcome = f"trained, loss {res.losses[0]:.2f}->{res.losses[-1]:.2f}" if res.status == "ok" else f"crashed: {res.error}"
            if res.status == "ok":
                dev = env.evaluate(Candidate(base_model=model, checkpoint=res.checkpoint))
                outcome += f", dev {dev.score:.1%}"
        full_s = time.perf_counter() - t0
        rows.append({"plan": name, "caught_by": caught, "curate_s": curate_s, "validate_s": validate_s,
                     "no_failfast_s": full_s, "outcome_without_failfast": outcome})
        print(f"  {name:<24} caught={caught or '-'} validate={validate_s:.1f}s full={full_s:.1f}s  {outcome}", file=sys.stderr)
    return rows


def summarize(rows: list[dict[str, object]]) -> dict[str, object]:
    good = next(r for r in rows if r["plan"] == "good")
    broken = [r for r in rows if r["plan"] != "good"]
    assert not good["caught_by"], f"the good plan was rejected: {good['caught_by']}"
    assert all(r["caught_by"] for r in broken), "a broken plan slipped through"
    f_good = float(good["curate_s"]) + float(good["no_failfast_s"])  # type: ignore[arg-type]
    v_good = float(good["validate_s"])  # type: ignore[arg-type]
    per_catch = [{"plan": r["plan"], "saved_s": float(r["no_failfast_s"]) - float(r["validate_s"]),  # type: ignore[arg-type]
                  "saved_vs_full_iteration": (float(r["no_failfast_s"]) - float(r["validate_s"])) / f_good} for r in broken]  # type: ignore[arg-type]
    broken_full = statistics.fmean(float(r["curate_s"]) + float(r["no_failfast_s"]) for r in broken)  # type: ignore[arg-type]
    broken_caught = statistics.fmean(float(r["curate_s"]) + float(r["validate_s"]) for r in broken)  # type: ignore[arg-type]
    scenarios = []
    for rate in (0.3, 0.5, 0.7):
        with_ff = rate * broken_caught + (1 - rate) * (f_good + v_good)
        without = rate * broken_full + (1 - rate) * f_good
        scenarios.append({"broken_rate": rate, "s_per_proposal_failfast": with_ff, "s_per_proposal_no_failfast": without,
                          "effective_iters_per_hour_failfast": (1 - rate) * 3600 / with_ff,
                          "effective_iters_per_hour_no_failfast": (1 - rate) * 3600 / without,
                          "ratio": without / with_ff})
    return {"full_iteration_s": f_good, "validation_s_good_plan": v_good, "per_catch": per_catch, "scenarios": scenarios}


def markdown(args: argparse.Namespace, rows: list[dict[str, object]], s: dict[str, object]) -> str:
    lines = [f"### Fail-fast ({args.model}, {args.task}, {args.steps} steps; {platform.processor() or platform.machine()}, {args.threads} threads)", "",
             f"Command: `.venv/bin/python bench/failfast.py --model {args.model} --task {args.task} --steps {args.steps}`", "",
             f"A full iteration of the good plan: {s['full_iteration_s']:.1f} s; validating it: {s['validation_s_good_plan']:.1f} s.", "",
             "| broken plan | caught by | validation s | without fail-fast s | saved / full iteration |", "|---|---|---|---|---|"]
    saved = {c["plan"]: c for c in s["per_catch"]}  # type: ignore[index, union-attr]
    for r in rows:
        if r["plan"] == "good":
            continue
        lines.append(f"| {r['plan']} | {', '.join(r['caught_by'])} | {r['validate_s']:.1f} | {r['no_failfast_s']:.1f} ({r['outcome_without_failfast']}) | "
                     f"{saved[r['plan']]['saved_vs_full_iteration']:.2f} |")
    lines += ["", "| broken-plan rate | s / proposal, fail-fast | s / proposal, none | effective iterations / h, fail-fast | none | ratio |", "|---|---|---|---|---|---|"]
    for sc in s["scenarios"]:  # type: ignore[union-attr]
        lines.append(f"| {sc['broken_rate']:.0%} | {sc['s_per_proposal_failfast']:.1f} | {sc['s_per_proposal_no_failfast']:.1f} | "
                     f"{sc['effective_iters_per_hour_failfast']:.1f} | {sc['effective_iters_per_hour_no_failfast']:.1f} | {sc['ratio']:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--task", default="math-linear")
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps of a full iteration")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=256, help="token cap of the good plan (char-level tiny models need ~768)")
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    args = ap.parse_args()
    rows = asyncio.run(measure(args.model, args.task, args.steps, args.threads, args.max_length))
    s = summarize(rows)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": s}, indent=1))
    print(markdown(args, rows, s))


if __name__ == "__main__":
    main()
