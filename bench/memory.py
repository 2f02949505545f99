"""Memory benchmark: the validator's estimate against the measured peak of real training.

For LoRA and full fine-tuning of the bundled model at three sequence lengths (batch 8), and four held-out
configurations (other batch sizes and lengths, not used to set the estimator's constants), each trains a
few steps through the project's training loop (``ftdojo.training.run_loop``, in-process, as the trainer
runs it without workers) in a fresh process, on examples long enough to fill ``max_length``; the measured
figure is the process's peak resident memory minus its resident memory once torch and transformers are
imported (what the fit itself costs: the cached base, the trained copy, gradients, optimizer state,
activations). The estimate is ``Validator.memory_mb`` for the same plan. Reported: both, and their ratio;
and what the process still holds once the fit has returned, before and after ``runtime.release_free_heap``
hands glibc's free heap pages back (``training.fit`` does that when a fit ends).

    .venv/bin/python bench/memory.py                  # 2 methods x 3 lengths, a few minutes on 2 cores
    .venv/bin/python bench/memory.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

LENGTHS = (128, 256, 512)
METHODS = ("lora", "full")
BATCH = 8
STEPS = 3
HELD_OUT = [("lora", 384, 4), ("full", 384, 4), ("lora", 16, 1), ("full", 16, 1)]
"""Configurations not used to set the estimator's constants (``actors/validator.py``): a check that they carry over."""
LONG_ANSWERS = [("lora", 256, 8), ("full", 256, 8)]
"""Completions that fill most of ``max_length`` (reasoning traces): every label token costs its logits over the
vocabulary, the estimate's ``LOGIT_BYTES`` term, which short answers do not exercise."""


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one(method: str, length: int, model: str, batch: int = BATCH, long_answers: bool = False) -> dict[str, float]:
    """Train one configuration in this process; its peak memory and the validator's estimate."""
    import importlib

    for heavy in ("torch", "transformers"):  # imported before the baseline is taken: not the fit's memory
        importlib.import_module(heavy)

    from actors.validator import Validator
    from ftdojo import models, runtime, sft, training
    from ftdojo.messages import Example, LoopJob, Plan, PromptSpec, TaskCard, TrainConfig

    path = models.resolve(model)
    base = _rss_mb()
    with tempfile.TemporaryDirectory() as d:
        words = " ".join(f"w{i}" for i in range(2 * length))  # longer than max_length: every row is truncated to it
        if long_answers:  # a short question, then a completion longer than the rest of max_length
            rows = [Example(input=f"Item {k}: solve.", completion=f"{words} Answer: {k}", source="bench") for k in range(batch * STEPS)]
        else:
            rows = [Example(input=f"Item {k}: {words}", completion=f"Answer: {k}", source="bench") for k in range(batch * STEPS)]
        data = Path(d) / "data.jsonl"
        data.write_text("".join(r.model_dump_json() + "\n" for r in rows))
        tc = TrainConfig(method=method, steps=STEPS, batch_size=batch, max_length=length, lr=1e-4, warmup_steps=0)
        job = LoopJob(train=tc, prompt=PromptSpec(), base_model=path, data_path=str(data), output_dir=str(Path(d) / "out"),
                      instruction="Reply.", threads=max(1, os.cpu_count() or 1), precision="auto", save=False)
        training.run_loop(job, training.Session(0, 1, 0))
        held = _rss_mb()  # the fit's activations are freed, but glibc's heap keeps their pages
        runtime.release_free_heap()  # as ``training.fit`` does once the loop returns
        released = _rss_mb()
        tok = models.tokenizer(path)  # the most label tokens of one example, as the validator's data checks count them
        label_tokens = max(sum(x != sft.IGNORE for x in sft.encode(tok, sft.render_prompt(tok, job.prompt, job.instruction, r.input),
                                                                    r.completion, length).labels) for r in rows)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    validator = Validator.__new__(Validator)  # the estimate needs no environment or workspace
    validator._archs, validator.use_gpu, validator.precision = {}, False, "auto"
    validator.workers, validator.sharding = 0, "ddp"  # in-process, as the fit above ran
    plan = Plan.model_construct(plan_id="bench", train=tc)  # the estimate reads only the train config
    card = TaskCard.model_construct(base_model=path)
    est = validator.memory_mb(plan, card, label_tokens)
    return {"method": method, "max_length": length, "label_tokens": label_tokens, "measured_mb": peak - base, "estimate_mb": est,
            "ratio": est / (peak - base), "held_after_mb": held - base, "released_mb": released - base}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--one", nargs="+", metavar="METHOD LENGTH [BATCH]", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(one(a.one[0], int(a.one[1]), a.model, int(a.one[2]), a.one[3:] == ["long"])))
        return 0
    rows = []
    configs = [(m, n, BATCH, False) for m in METHODS for n in LENGTHS] + [(m, n, b, False) for m, n, b in HELD_OUT]
    configs += [(m, n, b, True) for m, n, b in LONG_ANSWERS]
    for method, length, batch, long in configs:
        out = subprocess.run([sys.executable, __file__, "--model", a.model, "--one", method, str(length), str(batch)] + (["long"] if long else []),
                             capture_output=True, text=True, check=True)
        rows.append({**json.loads(out.stdout.strip().splitlines()[-1]), "batch_size": batch, "held_out": (method, length, batch) in HELD_OUT,
                     "long_answers": long})
        r = rows[-1]
        tag = " (long answers)" if long else " (held out)" if r["held_out"] else ""
        print(f"{method:5s} max_length={length:4d} batch={batch}{tag}: label tokens {r['label_tokens']}, measured "
              f"{r['measured_mb']:7.0f} MiB, estimate {r['estimate_mb']:7.0f} MiB, ratio {r['ratio']:.2f}; resident after "
              f"the fit {r['held_after_mb']:5.0f} MiB, once released {r['released_mb']:5.0f} MiB", flush=True)
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
              "model": a.model, "steps": STEPS, "rows": rows,
              "worst_error": max(abs(r["ratio"] - 1) for r in rows)}
    print(f"worst |estimate / measured - 1| = {result['worst_error']:.1%}")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
