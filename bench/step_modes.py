"""Where a training step's time goes, and what two alternatives to the default path would give.

``.venv/bin/python bench/step_modes.py [--steps 20] [--modes eager,sdpa,compile] [--profile-steps 12]``

Each mode is one ``training.fit`` of the bundled model on the long examples of ``bench/throughput.py`` (curated
math-linear worked solutions, LoRA r=16, batch 8), in this process, one after the other:

- ``eager``: the default path (eager attention on CPU, bf16 where the CPU has it);
- ``sdpa``: torch's scaled-dot-product attention kernel instead of eager attention;
- ``compile``: the profile's ``compile_layers`` (each decoder layer under ``torch.compile(dynamic=True)``, what the
  default and calibration profiles run). Compiled code is kept for the process's later fits, so ``compile,compile``
  shows what a second fit pays: nothing more to compile.

Per mode: the time to the first optimizer step (model load and, for ``compile``, compilation), the median of the
later steps, tokens/s over the whole fit, and the first losses (to show what changes numerically). ``eager`` is
``training.fit``'s own default (``compile_layers`` off). With
``--profile-steps N`` a torch-profiler pass over an N-step eager fit first prints each op's share of CPU time
(``aten::mm`` and friends against the elementwise rest). Run it alone on an idle machine.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import throughput  # noqa: E402  (bench/throughput.py: the same examples and settings)
import torch  # noqa: E402

from ftdojo import config, training  # noqa: E402
from ftdojo.messages import TrainConfig  # noqa: E402


def train_config(steps: int) -> TrainConfig:
    """bench/throughput.py's training settings, at ``steps``."""
    return TrainConfig(steps=steps, batch_size=8, lr=1e-3, warmup_steps=5, max_length=256)


def fit(spec: str, data_path: Path, instruction: str, prompt: str, steps: int, mode: str, work: Path) -> dict[str, Any]:
    stamps: list[float] = []
    step, attention = torch.optim.AdamW.step, training.attention_impl

    def timed_step(self: Any, *a: Any, **k: Any) -> Any:
        out = step(self, *a, **k)
        stamps.append(time.perf_counter())
        return out

    torch.optim.AdamW.step = timed_step
    if mode == "sdpa":
        training.attention_impl = lambda device_type, max_length: "sdpa"
    try:
        t0 = time.perf_counter()
        r = training.fit(plan_id=mode, base_model=spec, data_path=str(data_path), output_dir=str(work / mode),
                         train=train_config(steps),
                         prompt=prompt, instruction=instruction, threads=torch.get_num_threads(), save=False,
                         compile_layers=mode == "compile")
    finally:
        torch.optim.AdamW.step, training.attention_impl = step, attention
    if r.status != "ok":
        raise SystemExit(f"{mode}: {r.error}")
    later = [b - a for a, b in zip(stamps[5:], stamps[6:])]
    return {"mode": mode, "compiled_layers": r.compiled_layers, "first_step_s": stamps[0] - t0, "median_step_s": statistics.median(later),
            "tokens_per_s": r.tokens_per_s, "first_losses": [round(x, 4) for x in r.losses[:4]], "last_loss": r.losses[-1]}


def op_shares(spec: str, data_path: Path, instruction: str, prompt: str, steps: int, work: Path) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        training.fit(plan_id="profiled", base_model=spec, data_path=str(data_path), output_dir=str(work / "profiled"),
                     train=train_config(steps),
                     prompt=prompt, instruction=instruction, threads=torch.get_num_threads(), save=False)
    ops = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in ops)
    matmul = sum(e.self_cpu_time_total for e in ops if e.key in ("aten::mm", "aten::bmm", "aten::addmm"))
    print(f"profiled {steps}-step fit: matmuls (mm, bmm, addmm) {matmul / total:.1%} of aten self time")
    for e in sorted(ops, key=lambda e: -e.self_cpu_time_total)[:12]:
        print(f"  {e.key:32s} {e.self_cpu_time_total / total:6.1%}  {e.count:7d} calls")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--modes", default="eager,sdpa,compile")
    ap.add_argument("--profile-steps", type=int, default=0)
    args = ap.parse_args(argv)
    logging.getLogger("ray").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="ftdojo-step-modes-"))
    spec = config.load_profile("calibration").base_model
    task, mapping, prompt = throughput.LONG
    env, data_path, _ = throughput.curated_examples(task, spec, work, mapping)
    instruction = env.describe().instruction
    print(throughput.machine())
    if args.profile_steps:
        op_shares(spec, data_path, instruction, prompt, args.profile_steps, work)
    for mode in args.modes.split(","):
        print(fit(spec, data_path, instruction, prompt, args.steps, mode, work))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
