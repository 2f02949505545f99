"""Allocator benchmark: where a host fit's memory above the bound goes, and what getting it back costs.

Each mode trains the bundled model through the project's training loop (``ftdojo.training.run_loop``, LoRA,
batch 8, short examples of varying width like a calibration task's: about 80 tokens, 30 of them labels) in a
fresh process, and reports the process's peak resident memory (VmHWM), what it still holds once the loop has
returned, how much of glibc's heap is free then (``mallinfo2``), and training tokens/s, each mode's as a
ratio to ``default`` measured in the same invocation:

- ``default``: glibc as it starts (its mmap threshold rises to 32 MB as large blocks are freed, so
  activations come from the heap and their freed pages stay resident);
- ``mmap128k`` / ``mmap1m``: ``mallopt(M_MMAP_THRESHOLD)`` fixed at 128 KiB / 1 MiB, so every activation
  above it is its own mapping, unmapped when freed (its pages are faulted in afresh each step);
- ``trim-step`` / ``trim-4``: ``malloc_trim(0)`` after every optimizer step / every fourth;
- ``jemalloc``: jemalloc instead of glibc (the library Ray ships, ``ray/core/libjemalloc.so``, preloaded into
  the mode's process), with its default settings; ``jemalloc-1s``: the same, dirty pages purged after 1 s and
  muzzy ones at once (``MALLOC_CONF``). glibc's heap figures are not jemalloc's: they read 0 there.

    .venv/bin/python bench/allocator.py                  # 5 modes x 24 steps, about 15 min on 2 cores
    .venv/bin/python bench/allocator.py --steps 6 --json out.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
from pathlib import Path

MODES = ("default", "mmap128k", "mmap1m", "trim-step", "trim-4", "jemalloc", "jemalloc-1s")
JEMALLOC_CONF = {"jemalloc": "", "jemalloc-1s": "dirty_decay_ms:1000,muzzy_decay_ms:0"}
M_MMAP_THRESHOLD = -3


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def one(mode: str, steps: int, model: str) -> dict[str, float | str]:
    """Train in this process under ``mode``; its memory and throughput."""
    import torch

    from ftdojo import models, training
    from ftdojo.messages import Example, LoopJob, PromptSpec, TrainConfig

    libc = ctypes.CDLL("libc.so.6")
    path = models.resolve(model)
    models.shared_base(path, "fp32", "cpu")  # loaded before the mode applies: the fit's allocations are what differ
    if mode == "mmap128k":
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    elif mode == "mmap1m":
        libc.mallopt(M_MMAP_THRESHOLD, 1024 * 1024)
    elif mode.startswith("trim-"):
        zero_grad, every, calls = torch.optim.Optimizer.zero_grad, 1 if mode == "trim-step" else int(mode[5:]), [0]

        def trimmed(self, *a, **k):  # the loop calls it once per optimizer step
            out = zero_grad(self, *a, **k)
            calls[0] += 1
            if calls[0] % every == 0:
                libc.malloc_trim(0)
            return out

        torch.optim.Optimizer.zero_grad = trimmed
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as d:
        rows = []
        for k in range(8 * steps):
            question = " ".join(f"g{rng.randrange(1000)}" for _ in range(rng.randint(15, 30)))
            steps_text = " ".join(f"s{rng.randrange(1000)}" for _ in range(rng.randint(5, 12)))
            rows.append(Example(input=f"Sequence {k}: {question}", completion=f"{steps_text} Answer: {k}", source="bench"))
        data = Path(d) / "data.jsonl"
        data.write_text("".join(r.model_dump_json() + "\n" for r in rows))
        tc = TrainConfig(method="lora", steps=steps, batch_size=8, max_length=384, lr=1e-3, warmup_steps=0)
        job = LoopJob(train=tc, prompt=PromptSpec(), base_model=path, data_path=str(data), output_dir=str(Path(d) / "out"),
                      instruction="Reply.", threads=max(1, os.cpu_count() or 1), precision="auto", save=False)
        training.run_loop(job, training.Session(0, 1, 0))
        metrics = json.loads((Path(d) / "out" / "metrics.json").read_text())
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return {"mode": mode, "peak_mb": _status_mb("VmHWM"), "held_after_mb": _status_mb("VmRSS"), "heap_free_mb": info.fordblks / 2**20,
            "heap_free_chunks": info.ordblks, "tokens_per_s": metrics["tokens"] / metrics["train_s"], "last_loss": metrics["losses"][-1]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(one(a.one, a.steps, a.model)))
        return 0
    modes = ["default"] + [m for m in a.modes if m != "default"]
    rows = []
    for mode in modes:
        out = subprocess.run([sys.executable, __file__, "--model", a.model, "--steps", str(a.steps), "--one", mode],
                             capture_output=True, text=True, check=True, env=_env(mode))
        r = json.loads(out.stdout.strip().splitlines()[-1])
        base = rows[0] if rows else r
        r["peak_vs_default"], r["speed_vs_default"] = r["peak_mb"] / base["peak_mb"], r["tokens_per_s"] / base["tokens_per_s"]
        rows.append(r)
        print(f"{mode:9s}: peak {r['peak_mb']:6.0f} MiB ({r['peak_vs_default']:.2f}x), held after {r['held_after_mb']:6.0f} MiB "
              f"(heap free {r['heap_free_mb']:6.0f} MiB in {r['heap_free_chunks']} chunks), {r['tokens_per_s']:6.1f} tok/s "
              f"({r['speed_vs_default']:.2f}x), last loss {r['last_loss']:.4f}", flush=True)
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                          "cpu": _cpu()}, "model": a.model, "steps": a.steps, "rows": rows}
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _env(mode: str) -> dict[str, str]:
    """The mode's process environment: jemalloc preloaded for the jemalloc modes, as a run's actors get it."""
    env = dict(os.environ)
    if mode in JEMALLOC_CONF:
        from ftdojo import runtime

        preload = runtime.allocator_env("jemalloc")
        if not preload:
            raise SystemExit(f"mode {mode}: this Ray ships no libjemalloc.so (ray/core); run the other modes")
        env.update(preload)
        if JEMALLOC_CONF[mode]:
            env["MALLOC_CONF"] = JEMALLOC_CONF[mode]
    return env


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
