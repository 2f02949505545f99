"""Supervised fine-tuning through Ray Train's TorchTrainer.

``fit`` is the one training path. With ``num_workers=0`` Ray Train runs the
loop in the calling process (one device, no worker actors, ~0 s overhead);
with ``num_workers>=1`` it starts that many workers and the loop wraps the
model in DDP (gloo on CPU, NCCL on GPU). Each global batch is split across
ranks and the loss is normalised by the *global* count of label tokens, so N
workers follow the same trajectory as one worker at the same global batch.

The loop itself (``run_loop``) is plain torch behind a small ``Session``
(rank, world size, how to report): ``train_loop`` runs it under Ray Train,
and ``python -m torch.distributed.run -m ftdojo.training CONFIG.json`` runs
the same loop under torchrun, for machines without Ray.

The LM head is applied only at positions whose next token is a label
(``CompletionLM``): on a 49k-vocabulary model most of the head's FLOPs would
otherwise go to prompt positions whose logits are thrown away.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from ftdojo.datafiles import read_models
from ftdojo.errors import TrainingFailed
from ftdojo.messages import Example, LoopJob, PromptSpec, TrainConfig, TrainResult

Precision = Literal["auto", "fp32", "bf16"]


def _completion_lm(model: Any) -> Any:
    import torch

    class CompletionLM(torch.nn.Module):
        """Causal LM loss summed over label tokens; logits only where needed."""

        def __init__(self, lm: Any) -> None:
            super().__init__()
            self.lm = lm

        def forward(self, input_ids: Any, attention_mask: Any, labels: Any) -> tuple[Any, Any, Any]:
            causal = self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm
            hidden = causal.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
            targets = labels[:, 1:]
            keep = targets != -100
            logits = causal.get_output_embeddings()(hidden[:, :-1][keep])
            token_loss = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="none")
            rows = keep.nonzero()[:, 0]
            per_row = torch.zeros(input_ids.shape[0], device=token_loss.device).index_add(0, rows, token_loss.detach())
            return token_loss.sum(), keep.sum(), per_row / keep.sum(1).clamp(min=1)

    return CompletionLM(model)


def use_bf16(precision: str, device_type: str) -> bool:
    """bf16 autocast when asked, or on auto where the hardware has native bf16 math."""
    import torch

    if precision != "auto":
        return precision == "bf16"
    if device_type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def attention_impl(device_type: str, max_length: int) -> str:
    """Eager attention on CPU for short sequences (bench/throughput.py: 1.2x over SDPA's CPU kernel at
    ~100 tokens, whose backward dominates there); SDPA elsewhere."""
    return "eager" if device_type == "cpu" and max_length <= 512 else "sdpa"


def lr_factor(step: int, tc: TrainConfig, constant: bool = False) -> float:
    """Multiplier of the peak learning rate: linear warm-up, then cosine decay to 10%."""
    if constant:
        return 1.0
    if step < tc.warmup_steps:
        return (step + 1) / max(1, tc.warmup_steps)
    progress = (step - tc.warmup_steps) / max(1, tc.steps - tc.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


class Session:
    """Where the loop runs: rank, world size, local rank, and how it reports its result."""

    def __init__(self, rank: int, world: int, local_rank: int) -> None:
        self.rank, self.world, self.local_rank = rank, world, local_rank

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        """Outside Ray the result is the checkpoint folder's metrics.json, written by rank 0."""


class RaySession(Session):
    def __init__(self) -> None:
        import ray.train

        ctx = ray.train.get_context()
        super().__init__(ctx.get_world_rank(), ctx.get_world_size(), ctx.get_local_rank())

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
        ray.train.report(metrics, checkpoint=checkpoint)


def train_loop(job: LoopJob) -> None:
    """Runs on each Ray Train worker (or in-process with zero workers); ``fit`` binds the job."""
    session = RaySession()
    if job.devices:  # a worker pinned into the run's reservation: its device by rank, set before CUDA starts
        os.environ["CUDA_VISIBLE_DEVICES"] = job.devices[session.rank % len(job.devices)]
        session.local_rank = 0  # the one device this process sees
    run_loop(job, session)


@contextlib.contextmanager
def _configured(model: Any, attention: str, checkpointing: bool) -> Iterator[None]:
    """The fit's attention kernel and gradient checkpointing on the (possibly shared) model, undone on exit."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    before = getattr(causal.config, "_attn_implementation", None)
    if hasattr(causal, "set_attn_implementation"):  # older transformers: keep the default
        causal.set_attn_implementation(attention)
    if checkpointing:
        causal.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        yield
    finally:
        if checkpointing:
            causal.gradient_checkpointing_disable()
        if before is not None and hasattr(causal, "set_attn_implementation"):
            causal.set_attn_implementation(before)


COMPILE_BACKEND = "inductor"
"""``torch.compile`` backend of compiled layers (tests use ``aot_eager``: same tracing and caching, no codegen)."""


def compiles_layers(job: LoopJob, device_type: str, distributed: bool) -> bool:
    """Whether a fit runs its decoder layers compiled: asked for by the profile, on a one-process LoRA fit on the
    CPU without gradient checkpointing (the case measured), and not for a smoke train (a few steps on a couple of
    rows, which compilation would cost more than it saves)."""
    return (job.compile_layers and device_type == "cpu" and not distributed and not job.smoke
            and job.train.method == "lora" and not job.train.gradient_checkpointing)


@contextlib.contextmanager
def _compiled(model: Any, on: bool) -> Iterator[None]:
    """Each decoder layer under ``torch.compile(dynamic=True)`` for the fit, eager again when it ends (evaluation
    decodes with a KV cache, which compiled layers would retrace). Dynamo keeps the compiled code on the layer
    class's code, guarded on shapes and module structure rather than identity, so a later fit in the process
    (a fresh LoRA on the same base) reuses it without compiling again."""
    if not on:
        yield
        return
    layers = list(decoder_layers(model))
    for layer in layers:
        layer.compile(dynamic=True, backend=COMPILE_BACKEND)
    try:
        yield
    finally:
        for layer in layers:
            layer._compiled_call_impl = None  # nn.Module.compile's slot: the layer calls its eager forward again


def decoder_layers(model: Any) -> Any:
    """The model's stack of decoder layers (the ModuleList as long as ``num_hidden_layers``)."""
    import torch

    n = model.config.num_hidden_layers
    return next(m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n)


def _shard(net: Any, model: Any, device_type: str, bf16: bool) -> Any:
    """FSDP (torch's ``fully_shard``): each decoder layer its own unit, the rest (embeddings, norm, head)
    the root's; weights, gradients and Adam's state live 1/world on each rank, a layer is gathered
    for its forward and backward. bf16 on GPUs gathers in bf16 and reduces gradients in fp32."""
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device_type, (dist.get_world_size(),))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 and device_type == "cuda" else MixedPrecisionPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    fully_shard(net, mesh=mesh, mp_policy=mp)
    return net


def run_loop(job: LoopJob, session: Session) -> None:
    """The training loop proper: plain torch, launched by Ray Train (``train_loop``) or torchrun (``main``)."""
    import torch
    import torch.distributed as dist

    from ftdojo import methods, models, sft

    tc = job.train
    method = methods.get(tc.method)
    rank, world = session.rank, session.world
    torch.set_num_threads(max(1, job.threads))  # reused Ray workers may keep a stale count
    torch.manual_seed(tc.seed)
    device = torch.device("cuda", session.local_rank) if job.use_gpu and torch.cuda.is_available() else None
    device_type = "cuda" if device is not None else "cpu"
    if (why := method.unavailable(device_type)) is not None:
        raise TrainingFailed(why)
    bf16 = use_bf16(job.precision, device_type)
    distributed = dist.is_available() and dist.is_initialized()
    fsdp = job.sharding == "fsdp" and distributed and world > 1 and tc.method == "full"
    tok = models.tokenizer(job.base_model)
    examples = read_models(job.data_path, Example)
    enc = sft.encode_examples(tok, examples, job.prompt, job.instruction, tc.max_length)
    schedule = sft.batch_schedule(len(enc), tc.batch_size, tc.steps, tc.seed, [len(e.input_ids) for e in enc])
    if job.smoke:  # smoke test: fit one batch, so the loss must fall unless something is broken
        schedule = [schedule[0]] * tc.steps

    # The shared base (or the method's private model) in the dtype and on the device of the fit,
    # restored when the fit ends however it ends: nothing is copied per fit.
    compiled = compiles_layers(job, device_type, distributed)
    with method.training(job.base_model, tc, "bf16" if bf16 else "fp32", str(device or "cpu"), job.init_from) as model, \
            _configured(model, attention_impl(device_type, tc.max_length), tc.gradient_checkpointing), \
            _compiled(model, compiled):
        net = _completion_lm(model)
        if fsdp:
            net = _shard(net, model, device_type, bf16)
        elif distributed:  # Ray Train workers or torchrun: DDP (gloo on CPU, NCCL on GPU)
            net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device is not None else None)
        metrics = _steps(job, net, method.trainable(model), enc, examples, schedule, tok.pad_token_id, rank, world, device, bf16)
        metrics["sharding"] = "fsdp" if fsdp else ("ddp" if distributed and world > 1 else "none")
        metrics["compiled_layers"] = compiled
        state = None
        if fsdp and job.save:  # a collective: every rank takes part, rank 0 keeps the gathered tensors
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        checkpoint_dir = None
        if rank == 0:
            # Ray Train keeps metrics only alongside a checkpoint once workers are involved, so
            # rank 0 always reports one: the adapter (when saving) plus the metrics as JSON.
            out = Path(job.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            if job.save:
                method.save(model, tok, out, job.base_model, state)
            (out / "metrics.json").write_text(json.dumps(metrics))
            checkpoint_dir = out
    session.report(metrics, checkpoint_dir)


def _steps(job: LoopJob, net: Any, trainable: list[tuple[str, Any]], enc: list[Any], examples: list[Example],
           schedule: list[list[int]], pad_id: int, rank: int, world: int, device: Any, bf16: bool) -> dict[str, Any]:
    """The optimizer steps of one fit; its metrics (losses, tokens, per-source fit, devices seen)."""
    import torch
    import torch.distributed as dist

    from ftdojo import sft

    tc = job.train
    device_type = "cuda" if device is not None else "cpu"
    params = [p for _, p in trainable]
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, tc, job.smoke))
    losses: list[float] = []
    source_sum: dict[str, float] = {}
    source_n: dict[str, int] = {}
    tokens = 0
    t0 = time.perf_counter()
    for step, idx in enumerate(schedule):
        shard = idx[rank::world]
        micro = tc.micro_batch_size or max(1, len(shard))
        chunks = [shard[i : i + micro] for i in range(0, len(shard), micro)] or [shard]
        batches = [sft.collate([enc[i] for i in c], pad_id) for c in chunks]
        # the step's label tokens over every rank, known before any backward: each micro-batch's loss is
        # scaled by the same global count, so accumulating them gives the one-pass gradient
        total = sum((b["labels"][:, 1:] != sft.IGNORE).sum() for b in batches).float()
        if device is not None:
            total = total.to(device)
        if world > 1:
            dist.all_reduce(total)
        loss_sum = torch.zeros((), device=device)
        for k, (chunk, batch) in enumerate(zip(chunks, batches, strict=True)):
            if device is not None:
                batch = {key: v.to(device) for key, v in batch.items()}
            last = k == len(chunks) - 1
            # DDP: gradients are all-reduced once, on the last micro-batch (FSDP reduces each one's shards)
            sync = net.no_sync() if isinstance(net, torch.nn.parallel.DistributedDataParallel) and not last else contextlib.nullcontext()
            with sync:
                with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
                    chunk_sum, _, row_loss = net(**batch)
                # DDP and FSDP average gradients over ranks; scale so the sum equals the global mean.
                (chunk_sum * world / total.clamp(min=1)).backward()
            loss_sum = loss_sum + chunk_sum.detach()
            tokens += int(batch["attention_mask"].sum())
            if step >= tc.steps // 2:  # per-source fit over the second half: noisy labels stay high
                for i, v in zip(chunk, row_loss.tolist(), strict=True):
                    src = examples[i].source
                    source_sum[src] = source_sum.get(src, 0.0) + v
                    source_n[src] = source_n.get(src, 0) + 1
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step_loss = loss_sum.detach().float()
        if world > 1:
            dist.all_reduce(step_loss)
        value = float(step_loss / total.clamp(min=1))
        if not math.isfinite(value):
            raise TrainingFailed(f"non-finite loss {value} at step {step}")
        losses.append(value)
    elapsed = time.perf_counter() - t0
    if world > 1:
        t = torch.tensor([tokens], dtype=torch.long, device=device)
        dist.all_reduce(t)
        tokens = int(t.item())
    seen = [os.environ.get("CUDA_VISIBLE_DEVICES")]
    if world > 1:
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, seen[0])
        seen = gathered
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device is not None else None
    return {"losses": losses, "tokens": tokens, "train_s": elapsed,
            "source_losses": {k: source_sum[k] / source_n[k] for k in sorted(source_sum)}, "bf16": bf16,
            "device": device_type, "visible_devices": seen, "peak_device_mb": peak}


def checkpoint_sha256(directory: str | Path) -> str:
    """Digest of a checkpoint's weight and config files (names and bytes), for provenance."""
    import hashlib

    h = hashlib.sha256()
    root = Path(directory)
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "metrics.json":
            h.update(str(p.relative_to(root)).encode() + b"\0")
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def fit(
    *,
    plan_id: str,
    base_model: str,
    data_path: str,
    output_dir: str,
    train: TrainConfig,
    prompt: PromptSpec,
    instruction: str,
    threads: int = 1,
    workers: int = 0,
    use_gpu: bool = False,
    precision: Precision = "auto",
    save: bool = True,
    smoke: bool = False,
    init_from: str | None = None,
    devices: list[str] | None = None,
    sharding: str = "ddp",
    compile_layers: bool = False,
) -> TrainResult:
    """Train with Ray Train and return a TrainResult; a crash becomes ``status="failed"``.
    ``threads``, ``workers``, ``use_gpu`` and ``precision`` are the profile's resources; ``init_from``:
    a checkpoint of the same method to continue instead of starting from the base model; ``devices``: the
    run's GPU ids, one per worker; ``sharding``: ``fsdp`` shards full fine-tuning across the workers;
    ``compile_layers``: the profile's compiled decoder layers (``compiles_layers`` says where they apply).

    Inside a run's placement group (``runtime.reserve``) the workers are pinned into it (they take none
    of its CPUs or GPUs from Ray, so a full cluster cannot leave a fit waiting for more), share the run's
    CPUs (``threads`` split between them), and each sets its own device from ``devices`` by rank."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from ftdojo import runtime

    pin = runtime.worker_pin() if workers else None
    per_worker = max(1, threads // workers) if pin and workers else threads
    job = LoopJob(train=train, prompt=prompt, base_model=base_model, data_path=data_path, output_dir=output_dir,
                  instruction=instruction, threads=per_worker, use_gpu=use_gpu, precision=precision, save=save,
                  smoke=smoke, init_from=init_from, devices=list(devices or []) if pin else [], sharding=sharding,
                  compile_layers=compile_layers)
    t0 = time.perf_counter()
    if pin is not None:
        scaling = ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker=pin)
    else:
        scaling = ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=None if use_gpu else {"CPU": max(1, threads)})
    trainer = TorchTrainer(
        functools.partial(train_loop, job),
        scaling_config=scaling,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(
            name=f"{plan_id}-{os.getpid()}-{time.time_ns()}",
            storage_path=str(Path(output_dir).parent / "ray_train"),
            failure_config=FailureConfig(max_failures=0, controller_failure_limit=0),
        ),
    )
    try:
        result = trainer.fit()
    except Exception as e:  # noqa: BLE001 - Ray wraps worker errors; the iteration fails, the run goes on
        return TrainResult(plan_id=plan_id, status="failed", error=_root_cause(e), wall_s=time.perf_counter() - t0)
    finally:
        runtime.release_free_heap()  # the loop ran here without workers: its activations go back to the system
    m = result.metrics or {}
    if not m.get("losses") and result.checkpoint is not None:
        m = json.loads((Path(result.checkpoint.path) / "metrics.json").read_text())
    ckpt_dir = result.checkpoint.path if result.checkpoint is not None else output_dir
    losses = [float(x) for x in m.get("losses", [])]
    train_s = float(m.get("train_s", 0.0)) or 1e-9
    return TrainResult(
        plan_id=plan_id,
        status="ok",
        losses=losses,
        steps=len(losses),
        tokens=int(m.get("tokens", 0)),
        tokens_per_s=float(m.get("tokens", 0)) / train_s,
        wall_s=time.perf_counter() - t0,
        checkpoint=ckpt_dir if save else None,
        checkpoint_sha256=checkpoint_sha256(ckpt_dir) if save else None,
        source_losses={k: float(v) for k, v in (m.get("source_losses") or {}).items()},
        device=str(m.get("device", "cpu")),
        bf16=bool(m.get("bf16", False)),
        compiled_layers=bool(m.get("compiled_layers", False)),
        workers=workers,
        visible_devices=list(m.get("visible_devices") or []),
        sharding=m.get("sharding", "none"),
        peak_device_mb=m.get("peak_device_mb"),
    )


def main(argv: list[str] | None = None) -> int:
    """``torchrun [--nproc_per_node N] -m ftdojo.training CONFIG.json``: the same loop without Ray.

    JOB.json is a ``LoopJob`` (what ``fit`` builds: train config, prompt, base
    model, data, output folder, resources). Rank 0 writes the checkpoint and
    ``metrics.json`` into output_dir. With ``--max-restarts``, launch with
    ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``: torchrun's shared rendezvous store
    keeps the dead attempt's gloo/NCCL addresses and the restarted group fails
    to connect (pytorch#135712; measured on torch 2.13).
    """
    import sys

    import torch
    import torch.distributed as dist

    args = sys.argv[1:] if argv is None else argv
    job = LoopJob.model_validate_json(Path(args[0]).read_text())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if "WORLD_SIZE" in os.environ:
        gpu = job.use_gpu and torch.cuda.is_available()
        if gpu:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if gpu else "gloo")
    try:
        run_loop(job, Session(int(os.environ.get("RANK", "0")), world, local))
        if dist.is_initialized():
            # Ranks leave together: a rank that tore its gloo pairs down while rank 0 was
            # still writing the checkpoint could abort the group (SIGABRT in CI, stop 15).
            dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def _root_cause(e: BaseException) -> str:
    while e.__cause__ is not None:
        e = e.__cause__
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:500]


if __name__ == "__main__":
    raise SystemExit(main())
