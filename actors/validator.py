"""Fail-fast validator: cheap checks on a plan and its data before full training.

Each check is named and returns pass / warn / fail with the measured value.
Data checks need only the tokenizer; config checks read the model's module
names from its config (built on the meta device, no weights); the memory
estimate is arithmetic; the smoke train runs a few real steps through the
same training path. A plan with any ``fail`` costs no full training.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Arch:
    modules: set[str]
    params: int
    hidden: int
    layers: int
    heads: int = 1


# Memory per trained token, measured on the bundled model through this project's training loop (bf16
# autocast; bench/memory.py, bench/RESULTS.md) and scaled by the architecture: bytes of saved activations
# per token, layer and hidden unit, and per attention score that eager attention keeps (the fp32 softmax
# and its bf16 copy, 6 bytes: the length-squared term SDPA does not have).
ACT_BYTES = {"lora": 73.0, "full": 93.0, "freeze": 93.0}
SCORE_BYTES = 6.2
OVERHEAD_MB = 240.0
"""What a fit costs beyond weights, states and activations (allocator, tokenised data, autograd buffers)."""


def memory_estimate_mb(arch: Arch, tc: Any, trainable: float, device_type: str, bf16: bool) -> float:
    """Peak memory of one fit on ``device_type``, in MiB: the process's cached fp32 base (host memory:
    counted on CPU only), the trained copy (fp32 when made; LoRA then keeps it in bf16), gradients and
    Adam's two moments of the trainable weights (16 bytes each), autocast's bf16 copies of trained
    weights, the activations of one micro-batch, and eager attention's scores (CPU at short lengths)."""
    p = arch.params
    weights = (4 * p if device_type == "cpu" else 0) + 4 * p + 16 * trainable
    if tc.method != "lora" and bf16:
        weights += 2 * p
    tokens = tc.batch_size * tc.max_length
    per_token = arch.layers * arch.hidden * ACT_BYTES.get(tc.method, ACT_BYTES["full"])
    if training.attention_impl(device_type, tc.max_length) == "eager":
        per_token += arch.layers * arch.heads * tc.max_length * SCORE_BYTES
    return (weights + tokens * per_token) / 2**20 + OVERHEAD_MB


def _check(name: str, ok: bool, reason: str, value: float | None = None, warn: bool = False) -> Check:
    status = "pass" if ok else ("warn" if warn else "fail")
    return Check(name=name, status=status, reason=reason, value=value)


class Validator:
    def __init__(self, env: EnvHandle, workspace: str, threads: int = 1, use_gpu: bool = False, precision: Precision = "auto",
                 smoke_steps: int = SMOKE_STEPS) -> None:
        self.env = env
        self.workspace = Path(workspace)
        self.threads, self.use_gpu, self.precision = threads, use_gpu, precision
        self.smoke_steps = smoke_steps
        self._tok: dict[str, Any] = {}
        self._archs: dict[str, Arch] = {}

    def _tokenizer(self, spec: str) -> Any:
        if spec not in self._tok:
            from transformers import AutoTokenizer

            self._tok[spec] = AutoTokenizer.from_pretrained(models.resolve(spec))
        return self._tok[spec]

    def _arch(self, spec: str) -> Arch:
        """Module names and sizes from the model's config, built on the meta device (no weights)."""
        if spec not in self._archs:
            import torch
            from transformers import AutoConfig, AutoModelForCausalLM

            cfg = AutoConfig.from_pretrained(models.resolve(spec))
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(cfg)
            self._archs[spec] = Arch(
                modules={n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n},
                params=sum(p.numel() for p in model.parameters()),
                hidden=cfg.hidden_size,
                layers=cfg.num_hidden_layers,
                heads=getattr(cfg, "num_attention_heads", 1) or 1,
            )
        return self._archs[spec]

    async def validate(self, req: ValidateRequest) -> ValidationReport:
        plan, data, card = req.plan, req.data, req.card
        t0 = time.perf_counter()
        examples = read_models(data.path, Example)
        checks = self.data_checks(plan, examples, card)
        checks += await self.config_checks(plan, card, examples)
        smoke: list[float] = []
        mem = self.memory_mb(plan, card)
        checks.append(_memory_check(mem, self.use_gpu))
        if all(c.status != "fail" for c in checks):  # the smoke train is the one costly check: run it last
            t1 = time.perf_counter()
            check, smoke = self.smoke_train(plan, data, card)
            checks.append(check.model_copy(update={"seconds": time.perf_counter() - t1}))
        return ValidationReport(
            plan_id=plan.plan_id, checks=checks, smoke_losses=smoke, memory_estimate_mb=mem,
            wall_s=time.perf_counter() - t0,
        )

    def data_checks(self, plan: Plan, examples: list[Example], card: TaskCard) -> list[Check]:
        n = len(examples)
        checks = [_check("non_empty", n > 0, f"{n} examples")]
        if n == 0:
            return checks
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
        return checks

    async def config_checks(self, plan: Plan, card: TaskCard, examples: list[Example]) -> list[Check]:
        tc = plan.train
        checks = []
        dev = await self.env.read_dev()
        index = overlap.OverlapIndex([d.input for d in dev])
        sample = random.Random(0).sample(examples, min(2000, len(examples)))
        rate = overlap.contamination_rate([e.text for e in sample], index)
        checks.append(_check("dev_overlap", rate <= 0.01, f"{rate:.1%} of training examples overlap dev items", rate))
        arch = self._arch(card.base_model)
        checks += methods.get(tc.method).checks(tc, arch.modules, arch.layers)
        lo, hi = LR_RANGE
        checks.append(_check("learning_rate", lo <= tc.lr <= hi, f"lr={tc.lr:g}, valid range [{lo:g}, {hi:g}]", tc.lr))
        left = card.budget.max_train_steps - (await self.env.usage()).train_steps
        checks.append(_check("fits_budget", 1 <= tc.steps <= left, f"{tc.steps} steps asked, {left:g} left in the budget", tc.steps))
        return checks

    def memory_mb(self, plan: Plan, card: TaskCard) -> float:
        """Peak memory of the plan's fit on the run's device (``memory_estimate_mb``), in MiB."""
        arch = self._arch(card.base_model)
        tc = plan.train
        trainable = arch.params * methods.get(tc.method).trainable_share(tc, arch.layers)
        device = "cuda" if self.use_gpu else "cpu"
        # bf16 as the trainer will decide it; a GPU run planned where torch sees no CUDA assumes the GPU has bf16
        bf16 = training.use_bf16(self.precision, device) if device == "cpu" or _cuda() else self.precision != "fp32"
        return memory_estimate_mb(arch, tc, trainable, device, bf16)

    def smoke_train(self, plan: Plan, data: CuratedData, card: TaskCard) -> tuple[Check, list[float]]:
        steps = self.smoke_steps
        smoke_cfg = plan.train.model_copy(update={"steps": steps, "warmup_steps": 0})
        res = training.fit(  # in-process (no workers): one batch does not need the run's training workers
            plan_id=f"{plan.plan_id}-smoke", base_model=card.base_model, data_path=data.path,
            output_dir=str(self.workspace / plan.plan_id / "smoke"), train=smoke_cfg, prompt=plan.prompt,
            instruction=card.instruction, threads=self.threads, use_gpu=self.use_gpu, precision=self.precision,
            save=False, smoke=True,
        )
        if res.status != "ok":
            return _check("smoke_train", False, f"smoke train crashed: {res.error}"), []
        losses = res.losses  # the same batch every step, constant lr: the loss must fall
        finite = all(math.isfinite(x) for x in losses)
        first, last = losses[0], losses[-1]
        ok = finite and last < first * (1 - SMOKE_MIN_DROP)
        reason = f"{steps} steps on one batch: loss {first:.3f} -> {last:.3f} (must fall by {SMOKE_MIN_DROP:.0%})"
        return _check("smoke_train", ok, reason + ("" if finite else "; non-finite"), last), losses


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _memory_check(mb: float, use_gpu: bool = False) -> Check:
    """The estimate against what is free where the fit runs: the run's GPU, or host memory."""
    if use_gpu and _cuda():
        import torch

        avail, where = torch.cuda.mem_get_info()[0] / 2**20, f"free on {torch.cuda.get_device_name(0)}"
    else:
        avail, where = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") / 2**20, "of host memory available"
    return _check("memory", mb < 0.8 * avail, f"estimated {mb:.0f} MiB, {avail:.0f} MiB {where}", mb)


class ValidatorHandle(Handle):
    """The run's validator, in-process or a Ray actor."""

    actor = Validator
    on_device = True

    async def validate(self, req: ValidateRequest) -> ValidationReport:
        return await self._call(Validator.validate, req)
