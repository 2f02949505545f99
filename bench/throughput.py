"""Throughput benchmark: ours against the plain baselines, side by side in one process.

Four sections, each with the baseline and ours on the same inputs, reported
as ratios, with the machine described:

* **train**: LoRA SFT tokens/s on the bundled model. Baseline: a plain
  ``transformers.Trainer`` + ``peft`` setup (fp32, full LM head, labels padded
  with -100) on the *same batches in the same order* with the same
  optimizer, learning-rate schedule and hyperparameters; ours: ``ftdojo.training.fit`` (Ray Train, in-process).
  Both loss curves are reported and compared: ours in fp32 must follow the
  baseline step by step (same math, different head and batching code); ours
  in bf16 (the default where the CPU has native bf16) per quarter of the run. The machine's ceiling is the
  measured bf16 matmul peak divided by the FLOPs one trained token needs.
  Two example sets (``--examples long,short``, both by default): long worked
  solutions (math-linear, ~107 tokens) and short answers only (math-arith,
  ~52 tokens), with ours' short ÷ long tokens/s reported for each setup. Ours runs twice more with its decoder
  layers compiled (``compile_layers``, what the default and calibration profiles run): the first compiled fit of
  a set pays the compilation (for the second set, only what its shapes add to the first's), the second
  (``ours_compiled_tokens_per_s``, the headline) runs on compiled code, as a run trainer's later fits do. Where the CPU has no native bf16, ours *is* the fp32 fit.
* **eval**: examples/s of our batched greedy generation against one
  ``generate`` call per example, with the answers compared one by one.
* **adapter** (not in the default set): a LoRA candidate's evaluation with its adapter loaded unmerged
  onto the process's shared base against a merged deep copy (what evaluation did before), answers compared.
* **fit overhead**: the fixed cost of one in-process Ray Train fit (wall time
  of ``fit`` minus the time spent inside the training loop), tiny model.

    .venv/bin/python bench/throughput.py                       # bundled model
    .venv/bin/python bench/throughput.py --model tiny-random   # seconds, smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import logging

import torch

from actors.curator import Curator
from ftdojo import evaluation, models, sft, training
from ftdojo.dojo import DojoEnv, EnvHandle
from ftdojo.messages import Budget, DataRecipe, Example, Plan, PromptSpec, SourceMapping, TrainConfig


def machine() -> dict[str, Any]:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((ln.split(":", 1)[1].strip() for ln in flags.splitlines() if ln.startswith("model name")), "?")
    return {
        "cpu": name,
        "threads": torch.get_num_threads(),
        "bf16_native": any(f in flags for f in ("avx512_bf16", "amx_bf16")),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


@functools.cache
def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 8) -> float:
    """FLOP/s of an n×n matmul in ``dtype``, measured once per process."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def flops_per_token(model: Any, completion_share: float, seq_len: float) -> float:
    """FLOPs one trained token needs in a LoRA step: forward + input-gradient backward (4 per
    weight of every frozen projection), attention scores, and the LM head at label positions."""
    cfg = model.config
    body = sum(
        m.weight.numel()
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and "lm_head" not in n and m.weight.dim() == 2
    )
    head = cfg.vocab_size * cfg.hidden_size
    attention = 4 * cfg.num_hidden_layers * seq_len * cfg.hidden_size  # QK^T and AV, per token
    return 4 * body + 2 * attention + 4 * head * completion_share


LONG = ("math-linear", SourceMapping(source="worked_solutions", prompt="{problem}", answer="{final}", rationale="{solution}"),
        PromptSpec())
"""Long examples: math-linear's worked solutions (mean ~108 tokens, a third of them completion)."""
SHORT = ("math-arith", SourceMapping(source="gradeschool_qa", prompt="{question}", answer="{answer}"),
         PromptSpec(system="Be brief.", template="{input}"))
"""Short examples, the unit-conversion kind: math-arith's grade-school questions, answer only, a one-line system prompt and no
instruction (mean ~40 tokens)."""


def curated_examples(task: str, model: str, work: Path, mapping: SourceMapping | None = None) -> tuple[DojoEnv, Path, list[Example]]:
    env = DojoEnv(task, model, Budget(max_train_steps=10**6, max_dev_evals=100), threads=torch.get_num_threads())
    mapping = mapping or LONG[1]
    plan = Plan(plan_id="bench", hypothesis="throughput", recipe=DataRecipe(sources=[mapping]), train=TrainConfig())
    data = asyncio.run(Curator(EnvHandle(env), str(work / mapping.source)).curate(plan))
    path = Path(data.path)
    return env, path, [Example.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]


def baseline_trainer(
    model_spec: str, enc: list[sft.Encoded], schedule: list[list[int]], tc: TrainConfig, work: Path, ordered: bool = False
) -> dict[str, Any]:
    """The plain recipe: transformers Trainer + peft LoRA, fp32, labels padded with -100.

    ``ordered``: feed it our batches in our order (for a step-by-step loss comparison) instead of
    its default shuffling."""
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    model, tok = models.load(model_spec)
    model.train()
    torch.manual_seed(tc.seed)  # the same adapter initialisation as ours
    model = get_peft_model(
        model,
        LoraConfig(r=tc.lora_r, lora_alpha=tc.lora_alpha, lora_dropout=tc.lora_dropout,
                   target_modules=tc.target_modules, task_type="CAUSAL_LM"),
    )
    rows = [{"input_ids": enc[i].input_ids, "labels": enc[i].labels, "attention_mask": [1] * len(enc[i].input_ids)}
            for batch in schedule for i in batch]

    times: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *a: Any, **k: Any) -> None:
            times["start"] = time.perf_counter()

        def on_train_end(self, *a: Any, **k: Any) -> None:
            times["end"] = time.perf_counter()

    args = TrainingArguments(
        output_dir=str(work / "hf"), per_device_train_batch_size=tc.batch_size, max_steps=tc.steps,
        learning_rate=tc.lr, warmup_steps=tc.warmup_steps, lr_scheduler_type="cosine", weight_decay=tc.weight_decay,
        max_grad_norm=1.0, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
        dataloader_num_workers=0, remove_unused_columns=False, seed=tc.seed, disable_tqdm=True,
    )
    # The same optimizer and schedule as ours (AdamW, warm-up then cosine to 10%), so the curves compare.
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: training.lr_factor(step, tc))
    class Ordered(Trainer):
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            return torch.utils.data.SequentialSampler(rows)

    trainer = (Ordered if ordered else Trainer)(model=model, args=args, train_dataset=rows,
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100),
                      callbacks=[Clock()], optimizers=(opt, sched))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tokens = sum(len(r["input_ids"]) for r in rows)  # max_steps is exactly one epoch of these rows
    seconds = times["end"] - times["start"]
    return {"tokens_per_s": tokens / seconds, "seconds": seconds, "tokens": tokens, "losses": losses}


def window_means(losses: list[float], parts: int = 4) -> list[float]:
    size = max(1, len(losses) // parts)
    return [statistics.fmean(losses[i : i + size]) for i in range(0, size * parts, size)]


def bench_train(model_spec: str, steps: int, work: Path, kind: str = "long") -> dict[str, Any]:
    task, mapping, prompt = LONG if kind == "long" else SHORT
    env, data_path, examples = curated_examples(task, model_spec, work, mapping)
    card = env.describe()
    tc = TrainConfig(steps=steps, batch_size=8, lr=1e-3, warmup_steps=5, max_length=256)
    base, tok = models.load(model_spec)
    enc = sft.encode_examples(tok, examples, prompt, card.instruction, tc.max_length)
    schedule = sft.batch_schedule(len(enc), tc.batch_size, tc.steps, tc.seed, [len(e.input_ids) for e in enc])
    labelled = sum(sum(x != sft.IGNORE for x in enc[i].labels) for b in schedule for i in b)
    total = sum(len(enc[i].input_ids) for b in schedule for i in b)
    fpt = flops_per_token(base, labelled / total, total / (len(schedule) * tc.batch_size))
    # Without native bf16 a 2048² bf16 matmul takes minutes (0.3 GFLOP/s on an AVX2-only EPYC): a small one
    # says as much.
    bf16 = training.use_bf16("auto", "cpu")
    peak_bf16 = matmul_peak(torch.bfloat16) if bf16 else matmul_peak(torch.bfloat16, 256, 2)
    peak_fp32 = matmul_peak(torch.float32)
    baseline = baseline_trainer(model_spec, enc, schedule, tc, work)
    same_batches = baseline_trainer(model_spec, enc, schedule, tc, work, ordered=True)
    ours = training.fit(plan_id="ours", base_model=model_spec, data_path=str(data_path),
                        output_dir=str(work / "ours" / "adapter"), train=tc, prompt=prompt,
                        instruction=card.instruction, threads=torch.get_num_threads(), save=False)
    if ours.status != "ok":
        raise SystemExit(f"our training failed: {ours.error}")
    fp32 = ours if not bf16 else training.fit(
        plan_id="ours-fp32", base_model=model_spec, data_path=str(data_path),
        output_dir=str(work / "ours-fp32" / "adapter"), train=tc,
        prompt=prompt, instruction=card.instruction, threads=torch.get_num_threads(), precision="fp32", save=False)
    # The profiles' path: decoder layers compiled. The set's first compiled fit pays the compilation (what its shapes
    # add, after an earlier set); the second runs on the compiled code, as every later fit of a run's trainer does.
    compiled = [training.fit(plan_id=f"ours-compiled-{i}", base_model=model_spec, data_path=str(data_path),
                             output_dir=str(work / f"ours-compiled-{i}" / "adapter"), train=tc, prompt=prompt,
                             instruction=card.instruction, threads=torch.get_num_threads(), save=False,
                             compile_layers=True)
                for i in range(2)]
    if any(c.status != "ok" or not c.compiled_layers for c in compiled):
        raise SystemExit(f"our compiled training failed: {[c.error for c in compiled]}")
    w32 = window_means(fp32.losses)
    ceiling = peak_bf16 / fpt if bf16 else peak_fp32 / fpt
    wb, wo = window_means(same_batches["losses"]), window_means(ours.losses)
    return {
        "examples": kind,
        "task": task,
        "steps": steps,
        "batch_size": tc.batch_size,
        "mean_seq_len": total / (len(schedule) * tc.batch_size),
        "completion_share": labelled / total,
        "flops_per_token": fpt,
        "matmul_peak_gflops": {"bf16": peak_bf16 / 1e9, "fp32": peak_fp32 / 1e9},
        "ceiling_tokens_per_s": ceiling,
        "baseline_tokens_per_s": baseline["tokens_per_s"],
        "ours_tokens_per_s": ours.tokens_per_s,
        "speedup_vs_baseline": ours.tokens_per_s / baseline["tokens_per_s"],
        "share_of_ceiling": ours.tokens_per_s / ceiling,
        "baseline_same_batches_tokens_per_s": same_batches["tokens_per_s"],
        "loss_quarters_baseline_same_batches": wb,
        "loss_quarters_ours": wo,
        "max_rel_loss_gap": max(abs(a - b) / a for a, b in zip(wb, wo, strict=True)),
        "ours_fp32_tokens_per_s": fp32.tokens_per_s,
        "loss_quarters_ours_fp32": w32,
        "fp32_max_rel_loss_gap": max(abs(a - b) / a for a, b in zip(wb, w32, strict=True)),
        "ours_fp32_losses": fp32.losses,
        "baseline_losses": baseline["losses"],
        "baseline_same_batches_losses": same_batches["losses"],
        "max_rel_step_loss_gap_fp32": max(abs(a - b) / a for a, b in zip(same_batches["losses"], fp32.losses, strict=True)),
        "max_rel_step_loss_gap_bf16": max(abs(a - b) / a for a, b in zip(same_batches["losses"], ours.losses, strict=True)),
        "ours_losses": ours.losses,
        "ours_compiled_first_fit_tokens_per_s": compiled[0].tokens_per_s,
        "ours_compiled_tokens_per_s": compiled[1].tokens_per_s,
        "compiled_speedup_vs_baseline": compiled[1].tokens_per_s / baseline["tokens_per_s"],
        "compiled_vs_ours": compiled[1].tokens_per_s / ours.tokens_per_s,
        "compiled_share_of_ceiling": compiled[1].tokens_per_s / ceiling,
        "loss_quarters_ours_compiled": window_means(compiled[1].losses),
        "compiled_max_rel_loss_gap": max(abs(a - b) / a
                                         for a, b in zip(wb, window_means(compiled[1].losses), strict=True)),
        "ours_compiled_losses": compiled[1].losses,
    }


def bench_eval(model_spec: str, task: str, n: int) -> dict[str, Any]:
    from ftdojo.registry import get_task

    spec = get_task(task)
    env = DojoEnv(task, model_spec, Budget(), threads=torch.get_num_threads())
    items = [i.model_dump() for i in env.read_dev()[:n]]
    model, tok = models.load(model_spec)
    prompts = [sft.render_prompt(tok, PromptSpec(), spec.instruction, i["input"]) for i in items]
    t0 = time.perf_counter()
    single = []
    for p in prompts:
        ids = tok(p, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=spec.max_new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        single.append(tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    single_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    batched = evaluation.generate(model, tok, prompts, spec.max_new_tokens)
    batched_s = time.perf_counter() - t0
    same = sum(a == b for a, b in zip(single, batched, strict=True))
    return {
        "n": len(items),
        "max_new_tokens": spec.max_new_tokens,
        "baseline_examples_per_s": len(items) / single_s,
        "ours_examples_per_s": len(items) / batched_s,
        "speedup": single_s / batched_s,
        "identical_answers": same,
        "differing": [(a, b) for a, b in zip(single, batched, strict=True) if a != b][:5],
    }


def bench_adapter(model_spec: str, task: str, n: int, work: Path) -> dict[str, Any]:
    """A LoRA candidate's evaluation: its adapter loaded unmerged onto the process's shared base (ours) against
    a merged deep copy of the base (the baseline, what evaluation did before), same prompts, same run."""
    import copy

    from peft import PeftModel

    from ftdojo.messages import Candidate

    env, data_path, _ = curated_examples(task, model_spec, work)
    card = env.describe()
    res = training.fit(plan_id="adapter", base_model=model_spec, data_path=str(data_path), output_dir=str(work / "adapter"),
                       train=TrainConfig(steps=10, batch_size=8, lr=1e-3, warmup_steps=0), prompt=PromptSpec(),
                       instruction=card.instruction, threads=torch.get_num_threads(), precision="fp32")
    assert res.status == "ok", res.error
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from ftdojo.registry import get_task

    spec = get_task(task)
    items = env.read_dev()[:n]
    base, tok = models.shared_base(model_spec)
    prompts = [sft.render_prompt(tok, PromptSpec(), card.instruction, i.input) for i in items]
    t0 = time.perf_counter()
    merged = PeftModel.from_pretrained(copy.deepcopy(base), res.checkpoint).merge_and_unload().eval()
    baseline = evaluation.generate(merged, tok, prompts, spec.max_new_tokens)
    baseline_s = time.perf_counter() - t0
    del merged
    t0 = time.perf_counter()
    with evaluation.candidate_model(Candidate(base_model=model_spec, checkpoint=res.checkpoint)) as (model, _):
        ours = evaluation.generate(model, tok, prompts, spec.max_new_tokens)
    ours_s = time.perf_counter() - t0
    return {"n": len(items), "max_new_tokens": spec.max_new_tokens, "merged_copy_s": baseline_s, "unmerged_shared_s": ours_s,
            "speed_ratio": baseline_s / ours_s, "identical_answers": sum(a == b for a, b in zip(baseline, ours, strict=True)),
            "base_restored": not hasattr(base, "peft_config")}


def bench_fit_overhead(work: Path, reps: int = 5) -> dict[str, Any]:
    """Fixed cost of one in-process Ray Train fit: wall of fit() minus the loop's own training time,
    with the base model already cached in this process (as in a trainer actor's second fit)."""
    model = models.resolve("tiny-random")
    env, data_path, _ = curated_examples("math-arith", model, work)
    card = env.describe()
    tc = TrainConfig(steps=2, batch_size=4, lr=1e-3, warmup_steps=0, max_length=1024)
    costs = []
    for r in range(reps):
        res = training.fit(plan_id=f"o{r}", base_model=model, data_path=str(data_path),
                           output_dir=str(work / f"o{r}" / "adapter"), train=tc, prompt=PromptSpec(),
                           instruction=card.instruction, threads=1, save=False)
        train_s = res.tokens / res.tokens_per_s if res.tokens_per_s else 0.0
        costs.append(res.wall_s - train_s)
    return {"first_fit_s": costs[0], "fixed_cost_s_median": statistics.median(costs[1:]), "all_s": costs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--task", default="math-linear", help="the eval and adapter sections' task")
    ap.add_argument("--examples", default="long,short", type=lambda v: v.split(","),
                    help="the train section's example sets: long (math-linear worked solutions), short (~40 tokens)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--eval-n", type=int, default=64)
    ap.add_argument("--only", choices=["train", "eval", "overhead", "adapter"], action="append")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads for every section")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    logging.getLogger("ray").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="ftdojo-throughput-"))
    only = set(a.only or ["train", "eval", "overhead"])  # adapter: on request
    torch.set_num_threads(a.threads)
    out: dict[str, Any] = {"machine": machine(), "model": a.model, "task": a.task}
    if "overhead" in only:
        out["fit_overhead"] = bench_fit_overhead(work)
        print(json.dumps(out["fit_overhead"]), flush=True)
    if "eval" in only:
        torch.set_num_threads(a.threads)  # a fit sets the process's thread count to its own
        out["eval"] = bench_eval(a.model, a.task, a.eval_n)
        print(json.dumps(out["eval"]), flush=True)
    if "adapter" in only:
        torch.set_num_threads(a.threads)
        out["adapter"] = bench_adapter(a.model, a.task, a.eval_n, work)
        print(json.dumps(out["adapter"]), flush=True)
    if "train" in only:
        for kind in a.examples:
            torch.set_num_threads(a.threads)
            key = "train" if kind == "long" else f"train_{kind}"
            out[key] = bench_train(a.model, a.steps, work, kind)
            print(json.dumps({k: v for k, v in out[key].items() if not k.endswith("_losses")}), flush=True)
        if "train" in out and "train_short" in out:
            long, short = out["train"], out["train_short"]
            out["short_vs_long"] = {"ours": short["ours_tokens_per_s"] / long["ours_tokens_per_s"],
                                    "baseline": short["baseline_tokens_per_s"] / long["baseline_tokens_per_s"],
                                    "ours_fp32": short["ours_fp32_tokens_per_s"] / long["ours_fp32_tokens_per_s"],
                                    "ours_compiled": short["ours_compiled_tokens_per_s"] / long["ours_compiled_tokens_per_s"]}
            print(json.dumps({"short_vs_long": out["short_vs_long"]}), flush=True)
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
