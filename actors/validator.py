"""Fail-fast validator: cheap checks on a plan and its data before full training.

Each check is named and returns pass / warn / fail with the measured value.
Data checks need only the tokenizer; config checks read the model's module
names from its config (built on the meta device, no weights); the memory
estimate is arithmetic; the smoke train runs a few real steps through the
same training path. A plan with any ``fail`` costs no full training.
"""

from __future__ import annotations

import functools
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftdojo import methods, models, overlap, scoring, sft, training
from ftdojo.datafiles import read_models
from ftdojo.dojo import EnvHandle
from ftdojo.messages import (
    Check,
    CuratedData,
    EvalBackend,
    Example,
    Plan,
    TaskCard,
    ValidateRequest,
    ValidationReport,
)
from ftdojo.runtime import Handle
from ftdojo.training import Precision

LR_RANGE = (1e-6, 1e-2)
TRUNCATION_FAIL = 0.02
PARSE_FAIL = 0.9
SAMPLE = 512
SMOKE_STEPS = 6
SMOKE_MIN_DROP = 0.01
SMOKE_ROWS = 2
"""Rows of the smoke train's one batch on the host (a GPU smoke trains the plan's whole batch, which costs it
milliseconds and shows the batch fits the device). What the smoke train catches does not need the plan's
width: a learning rate that diverges or cannot move the loss, labels that leave nothing to fit, a method or
module that does not train. On the bundled model a 2-row batch costs a quarter of an 8-row one: the four smoke
trains of an FT-Agent calibration run on bio-gc took 122 s of its 1,045 s (bench/RESULTS.md)."""


@dataclass(frozen=True)
class Arch:
    modules: set[str]
    params: int
    hidden: int
    layers: int
    heads: int = 1
    stored_bytes: float = 4.0
    """Bytes per parameter of the checkpoint on disk (its config's dtype)."""
    vocab: int = 0


# Memory per trained token, measured on the bundled model through this project's training loop (bf16
# autocast; bench/memory.py, bench/RESULTS.md) and scaled by the architecture: bytes of saved activations
# per token, layer and hidden unit, and per attention score that eager attention keeps (the fp32 softmax
# and its bf16 copy, 6 bytes: the length-squared term SDPA does not have).
ACT_BYTES = {"lora": 73.0, "qlora": 73.0, "full": 93.0, "freeze": 93.0}
SCORE_BYTES = 6.2
OVERHEAD_MB = 240.0
"""What a fit costs beyond weights, states and activations (allocator, tokenised data, autograd buffers)."""
LOGIT_BYTES = 12.0
"""Per label token and vocabulary entry: the bf16 logits, their fp32 copy for the loss, its saved softmax and
the gradient (logits are computed only where labels are: ``training._completion_lm``)."""
NF4_BYTES = 0.56
"""Bytes per parameter of a 4-bit NF4 base with double quantisation (QLoRA's; its constants included)."""


def memory_estimate_mb(arch: Arch, tc: Any, trainable: float, device_type: str, bf16: bool, workers: int = 0,
                       sharding: str = "ddp", label_tokens: int | None = None) -> float:
    """Peak memory of one fit on ``device_type`` (per worker), in MiB.

    Weights: LoRA, QLoRA and freeze wrap the process's shared base (bf16 where training runs under bf16,
    4-bit for QLoRA) and add fp32 trainable tensors with their gradients and Adam's two moments (16 bytes
    each), freeze also autocast's bf16 copies of them; full fine-tuning holds a private fp32 model with
    its gradients and moments (16 bytes per parameter) plus the bf16 copies, and under FSDP each of the
    workers holds 1/workers of that plus one gathered layer. Activations: one micro-batch's, per layer
    (with gradient checkpointing: each layer's input, plus one layer's activations recomputed), and eager
    attention's scores (CPU at short lengths); the logits of one micro-batch's label tokens (``label_tokens``
    per row, the longest completion the data has; unknown: ``max_length``). On the host, loading is a peak of its own: the checkpoint's
    pages (mapped) and the model being built from them at once, which short fits do not exceed."""
    p, t = arch.params, trainable
    if tc.method == "full":
        shards = workers if sharding == "fsdp" and workers > 1 else 1
        weights = (16 * p + (2 * p if bf16 else 0)) / shards + (8 * p / max(1, arch.layers) if shards > 1 else 0)
    else:
        weights = (NF4_BYTES if tc.method == "qlora" else 2 if bf16 else 4) * p + 16 * t
        if tc.method == "freeze" and bf16:
            weights += 2 * t
    fit = weights + _activation_bytes(arch, tc, device_type, bf16, workers, label_tokens)
    if device_type == "cpu":
        held = 4 if tc.method in ("full", "qlora") else 2 if bf16 else 4  # full: the private fp32 copy
        fit = max(fit, (arch.stored_bytes + held) * p)
    return fit / 2**20 + OVERHEAD_MB


def _activation_bytes(arch: Arch, tc: Any, device_type: str, bf16: bool, workers: int = 0, label_tokens: int | None = None) -> float:
    """One micro-batch's saved activations, attention scores and label logits (``memory_estimate_mb``)."""
    micro = tc.batch_size / max(1, workers)
    if getattr(tc, "micro_batch_size", None):
        micro = min(micro, tc.micro_batch_size)
    tokens = micro * tc.max_length
    labels = micro * min(tc.max_length, label_tokens if label_tokens is not None else tc.max_length)
    act = arch.hidden * ACT_BYTES.get(tc.method, ACT_BYTES["full"])
    scores = arch.heads * tc.max_length * SCORE_BYTES if training.attention_impl(device_type, tc.max_length) == "eager" else 0.0
    if getattr(tc, "gradient_checkpointing", False):
        per_token = arch.layers * arch.hidden * (2 if bf16 else 4) + act + scores
    else:
        per_token = arch.layers * (act + scores)
    return tokens * per_token + labels * arch.vocab * LOGIT_BYTES


def memory_bound_mb(arch: Arch, fits: list[tuple[Any, float, int | None, int | None]], device_type: str, bf16: bool,
                    at_start_mb: float, workers: int = 0) -> float:
    """The most a run's model-holding process may reach on the host, MiB: what it held when the run started
    (interpreter, torch and the other libraries), twice the model's bf16 size (the base as it is held, plus
    loading it or a copy of it), and the largest fit's activations (one micro-batch of its widest examples),
    its trainable tensors with their gradients and Adam's moments (16 bytes each) and the fit's fixed overhead
    (``OVERHEAD_MB``). ``fits``: each fit's train config, trainable parameter count, and the longest example
    and most label tokens its data had (``ValidationReport``; None: ``max_length``)."""
    def activations(tc: Any, longest: int | None, labels: int | None) -> float:
        widest = tc.model_copy(update={"max_length": min(tc.max_length, longest)}) if longest else tc
        return _activation_bytes(arch, widest, device_type, bf16, workers, labels)

    most = max((activations(tc, longest, labels) + 16 * trainable for tc, trainable, longest, labels in fits), default=0.0)
    return at_start_mb + (2 * 2 * arch.params + most) / 2**20 + OVERHEAD_MB


@functools.lru_cache(maxsize=8)
def arch_of(spec: str) -> Arch:
    """Module names and sizes from the model's config, built on the meta device (no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(models.resolve(spec))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    return Arch(
        modules={n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n},
        params=sum(p.numel() for p in model.parameters()),
        hidden=cfg.hidden_size,
        layers=cfg.num_hidden_layers,
        heads=getattr(cfg, "num_attention_heads", 1) or 1,
        stored_bytes=_stored_bytes(cfg),
        vocab=getattr(cfg, "vocab_size", 0) or 0,
    )


def _stored_bytes(cfg: Any) -> float:
    dtype = str(getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None) or "float32")
    return 2.0 if ("bfloat16" in dtype or "float16" in dtype) else 4.0


def _check(name: str, ok: bool, reason: str, value: float | None = None, warn: bool = False) -> Check:
    status = "pass" if ok else ("warn" if warn else "fail")
    return Check(name=name, status=status, reason=reason, value=value)


class Validator:
    def __init__(self, env: EnvHandle, workspace: str, threads: int = 1, use_gpu: bool = False, precision: Precision = "auto",
                 smoke_steps: int = SMOKE_STEPS, workers: int = 0, sharding: str = "ddp", evaluation: EvalBackend = EvalBackend()) -> None:
        self.env = env
        self.workspace = Path(workspace)
        self.threads, self.use_gpu, self.precision = threads, use_gpu, precision
        self.workers, self.sharding = workers, sharding
        self.evaluation = evaluation
        vllm = use_gpu and evaluation.backend == "server" and evaluation.server == "vllm"
        self.eval_gpu_share = evaluation.gpu_memory_utilization if vllm else 0.0  # of each GPU, held by the vLLM server
        self.eval_lora_rank = evaluation.max_lora_rank if vllm else None  # vLLM refuses adapters of higher rank
        self.smoke_steps = smoke_steps
        self._tok: dict[str, Any] = {}

    def _tokenizer(self, spec: str) -> Any:
        if spec not in self._tok:
            from transformers import AutoTokenizer

            self._tok[spec] = AutoTokenizer.from_pretrained(models.resolve(spec))
        return self._tok[spec]

    def _arch(self, spec: str) -> Arch:
        return arch_of(spec)

    async def validate(self, req: ValidateRequest) -> ValidationReport:
        plan, data, card = req.plan, req.data, req.card
        t0 = time.perf_counter()
        examples = read_models(data.path, Example)
        checks, widths = self.data_checks(plan, examples, card)
        longest, label_tokens = widths or (None, None)
        checks += await self.config_checks(plan, card, examples)
        smoke: list[float] = []
        mem = self.memory_mb(plan, card, label_tokens)
        checks.append(_memory_check(mem, self.use_gpu, self.eval_gpu_share))
        if all(c.status != "fail" for c in checks):  # the smoke train is the one costly check: run it last
            t1 = time.perf_counter()
            check, smoke = self.smoke_train(plan, data, card)
            checks.append(check.model_copy(update={"seconds": time.perf_counter() - t1}))
        return ValidationReport(
            plan_id=plan.plan_id, checks=checks, smoke_losses=smoke, memory_estimate_mb=mem,
            longest_tokens=longest, label_tokens=label_tokens, wall_s=time.perf_counter() - t0,
        )

    def data_checks(self, plan: Plan, examples: list[Example], card: TaskCard) -> tuple[list[Check], tuple[int, int] | None]:
        """The data's checks, and the longest tokenised example of the sample with the most label tokens of
        one (what the fit's memory depends on); None without examples."""
        n = len(examples)
        checks = [_check("non_empty", n > 0, f"{n} examples")]
        if n == 0:
            return checks, None
        bad = sum(not e.input.strip() or not e.completion.strip() for e in examples)
        checks.append(_check("well_formed", bad == 0, f"{bad} examples with an empty input or completion", bad))
        parsed = sum(scoring.extract(e.completion, card.answer_pattern) is not None for e in examples) / n
        checks.append(_check("targets_parseable", parsed >= PARSE_FAIL,
                             f"{parsed:.1%} of targets parse with the task's extractor (need {PARSE_FAIL:.0%})", parsed))
        tok = self._tokenizer(card.base_model)
        sample = random.Random(0).sample(examples, min(SAMPLE, n))
        prompts = [sft.render_prompt(tok, plan.prompt, card.instruction, e.input) for e in sample]
        enc = [sft.encode(tok, p, e.completion, plan.train.max_length) for p, e in zip(prompts, sample)]
        trunc = sum(e.truncated for e in enc) / len(enc)
        checks.append(_check("truncation", trunc <= TRUNCATION_FAIL,
                             f"{trunc:.1%} of examples exceed max_length={plan.train.max_length} and lose their answer end", trunc))
        eos_in = sum(e.labels[-1] == tok.eos_token_id for e in enc) / len(enc)
        share = sum(sum(lab != sft.IGNORE for lab in e.labels) for e in enc) / sum(len(e.labels) for e in enc)
        checks.append(_check("loss_mask", eos_in == 1.0 and share > 0,
                             f"{share:.1%} of tokens trained; EOS inside the loss for {eos_in:.1%} of examples", share))
        prefix = sum(tok(p + e.completion, add_special_tokens=False)["input_ids"][: x.prompt_len] == x.input_ids[: x.prompt_len]
                     for p, e, x in zip(prompts, sample, enc)) / len(enc)
        checks.append(_check("prompt_prefix", prefix == 1.0, f"tokenized prompt is a prefix of prompt+completion for {prefix:.1%}", prefix, warn=True))
        dup = 1 - len({e.input for e in examples}) / n
        checks.append(_check("duplicates", dup <= 0.2, f"{dup:.1%} duplicate inputs", dup, warn=True))
        return checks, (max(len(e.input_ids) for e in enc), max(sum(lab != sft.IGNORE for lab in e.labels) for e in enc))

    async def config_checks(self, plan: Plan, card: TaskCard, examples: list[Example]) -> list[Check]:
        tc = plan.train
        checks = []
        dev = await self.env.read_dev()
        index = overlap.OverlapIndex([d.input for d in dev])
        sample = random.Random(0).sample(examples, min(2000, len(examples)))
        rate = overlap.contamination_rate([e.text for e in sample], index)
        checks.append(_check("dev_overlap", rate <= 0.01, f"{rate:.1%} of training examples overlap dev items", rate))
        arch = self._arch(card.base_model)
        method = methods.get(tc.method)
        device = "cuda" if self.use_gpu and _cuda() else "cpu"
        why = method.unavailable(device)
        checks.append(_check("method", why is None, why or f"{tc.method} trains on {device}"))
        checks += method.checks(tc, arch.modules, arch.layers)
        if self.eval_lora_rank is not None and tc.method in ("lora", "qlora"):
            checks.append(_check("eval_lora_rank", tc.lora_r <= self.eval_lora_rank,
                                 f"lora_r={tc.lora_r}, the vLLM evaluation server takes adapters up to rank {self.eval_lora_rank} "
                                 "(evaluation.max_lora_rank)", tc.lora_r))
        lo, hi = LR_RANGE
        checks.append(_check("learning_rate", lo <= tc.lr <= hi, f"lr={tc.lr:g}, valid range [{lo:g}, {hi:g}]", tc.lr))
        left = card.budget.max_train_steps - (await self.env.usage()).train_steps
        checks.append(_check("fits_budget", 1 <= tc.steps <= left, f"{tc.steps} steps asked, {left:g} left in the budget", tc.steps))
        return checks

    def memory_mb(self, plan: Plan, card: TaskCard, label_tokens: int | None = None) -> float:
        """Peak memory of the plan's fit on the run's device (``memory_estimate_mb``), in MiB."""
        arch = self._arch(card.base_model)
        tc = plan.train
        trainable = arch.params * methods.get(tc.method).trainable_share(tc, arch.layers)
        device = "cuda" if self.use_gpu else "cpu"
        # bf16 as the trainer will decide it; a GPU run planned where torch sees no CUDA assumes the GPU has bf16
        bf16 = training.use_bf16(self.precision, device) if device == "cpu" or _cuda() else self.precision != "fp32"
        return memory_estimate_mb(arch, tc, trainable, device, bf16, self.workers, self.sharding, label_tokens)

    def smoke_train(self, plan: Plan, data: CuratedData, card: TaskCard) -> tuple[Check, list[float]]:
        steps = self.smoke_steps
        # In-process (no workers): one batch does not need the run's training workers, unless the fit is a
        # sharded full fine-tune, whose whole model and optimizer state need not fit on one device.
        sharded = plan.train.method == "full" and self.sharding == "fsdp" and self.workers > 1
        rows = smoke_rows(plan.train.batch_size, self.use_gpu, self.workers if sharded else 0)
        smoke_cfg = plan.train.model_copy(update={"steps": steps, "warmup_steps": 0, "batch_size": rows})
        res = training.fit(
            plan_id=f"{plan.plan_id}-smoke", base_model=card.base_model, data_path=data.path,
            output_dir=str(self.workspace / plan.plan_id / "smoke"), train=smoke_cfg, prompt=plan.prompt,
            instruction=card.instruction, threads=self.threads, use_gpu=self.use_gpu, precision=self.precision,
            save=False, smoke=True, workers=self.workers if sharded else 0, sharding=self.sharding,
        )
        if self.use_gpu and _cuda():  # the trainer and the evaluator hold the run's GPU copies; this one goes
            models.release_base()
        if res.status != "ok":
            return _check("smoke_train", False, f"smoke train crashed: {res.error}"), []
        losses = res.losses  # the same batch every step, constant lr: the loss must fall
        finite = all(math.isfinite(x) for x in losses)
        first, last = losses[0], losses[-1]
        ok = finite and last < first * (1 - SMOKE_MIN_DROP)
        reason = f"{steps} steps on one batch of {rows}: loss {first:.3f} -> {last:.3f} (must fall by {SMOKE_MIN_DROP:.0%})"
        return _check("smoke_train", ok, reason + ("" if finite else "; non-finite"), last), losses


def smoke_rows(batch_size: int, use_gpu: bool, workers: int = 0) -> int:
    """The smoke train's batch: the plan's whole batch on a GPU, else ``SMOKE_ROWS`` of it, and a row for
    each of the ``workers`` a sharded smoke train spreads it over."""
    return batch_size if use_gpu else min(batch_size, max(SMOKE_ROWS, workers))


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _memory_check(mb: float, use_gpu: bool = False, eval_gpu_share: float = 0.0) -> Check:
    """The estimate against what is free where the fit runs: the run's GPU (less the share a vLLM evaluation
    server takes, whether or not it has started yet), or host memory."""
    if use_gpu and _cuda():
        import torch

        free, total = (x / 2**20 for x in torch.cuda.mem_get_info())
        avail, where = gpu_available_mb(free, total, eval_gpu_share), f"free on {torch.cuda.get_device_name(0)}"
        if eval_gpu_share:
            where += f" outside the evaluation server's {eval_gpu_share:.0%}"
    else:
        avail, where = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") / 2**20, "of host memory available"
    return _check("memory", mb < 0.8 * avail, f"estimated {mb:.0f} MiB, {avail:.0f} MiB {where}", mb)


def gpu_available_mb(free: float, total: float, eval_gpu_share: float = 0.0) -> float:
    """What a fit may take of a GPU with ``free`` of ``total`` MiB: vLLM claims ``eval_gpu_share`` of the
    total when it starts and needs it free then, so a fit planned before the server starts leaves it, and
    one planned after sees it taken already (``free`` is then below ``total`` less the share)."""
    return min(free, total * (1 - eval_gpu_share)) if eval_gpu_share else free


class ValidatorHandle(Handle):
    """The run's validator, in-process or a Ray actor."""

    actor = Validator
    on_device = True

    async def validate(self, req: ValidateRequest) -> ValidationReport:
        return await self._call(Validator.validate, req)
