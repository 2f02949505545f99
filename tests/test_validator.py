"""Fail-fast: every kind of broken plan is caught before any full training."""

from __future__ import annotations

import asyncio

import pytest

from actors.curator import Curator
from actors.validator import SMOKE_ROWS, Validator
from ftdojo.dojo import DojoEnv, EnvHandle
from ftdojo.messages import ValidateRequest, Budget, DataRecipe, Plan, SourceMapping, TrainConfig


def _plan(**kw) -> Plan:
    recipe = kw.pop("recipe", DataRecipe(sources=[SourceMapping(source="algebra_drills", prompt="Solve for x: {equation}", answer="{solution}")]))
    train = TrainConfig(**{"steps": 20, "batch_size": 8, "lr": 3e-3, "warmup_steps": 0, **kw})
    return Plan(plan_id=kw.get("plan_id", "p"), hypothesis="h", recipe=recipe, train=train)


@pytest.fixture()
def parts(math_domain, tiny_model, tmp_path):
    env = DojoEnv("math-linear", tiny_model, Budget(max_train_steps=100))
    return env, Curator(EnvHandle(env), str(tmp_path)), Validator(EnvHandle(env), str(tmp_path), smoke_steps=6)


def _validate(parts, plan: Plan):
    env, curator, validator = parts

    async def go():
        data = await curator.curate(plan)
        return await validator.validate(ValidateRequest(plan=plan, data=data, card=env.describe()))

    return asyncio.run(go())


BROKEN = {
    "answers in the wrong format": (
        dict(recipe=DataRecipe(sources=[SourceMapping(source="algebra_drills", prompt="Solve for x: {equation}", answer="x equals {solution}")])),
        "targets_parseable",
    ),
    "max length that truncates the answers": (dict(max_length=40), "truncation"),
    "diverging learning rate": (dict(lr=5.0), "learning_rate"),
    "empty recipe": (dict(recipe=DataRecipe(sources=[SourceMapping(source="algebra_drills", prompt="{equation}", answer="{solution}", where={"form": "cubic"})])), "non_empty"),
    "target module the model lacks": (dict(target_modules=["q_proj", "qkv_fused"]), "target_modules"),
    "more steps than the budget": (dict(steps=500), "fits_budget"),
    "a micro-batch that cannot fit in memory": (dict(batch_size=512, max_length=4096), "memory"),
    "QLoRA where there is no CUDA": (dict(method="qlora"), "method"),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=lambda c: c.replace(" ", "-"))
def test_broken_plans_fail_fast(parts, case) -> None:
    overrides, check = BROKEN[case]
    report = _validate(parts, _plan(**overrides))
    failed = {c.name for c in report.checks if c.status == "fail"}
    assert not report.passed and check in failed, [c.model_dump() for c in report.checks]
    assert "smoke_train" not in {c.name for c in report.checks}  # nothing costly ran
    assert parts[0].usage().train_steps == 0


def test_good_plan_passes_with_a_falling_smoke_loss(parts) -> None:
    # the answer template of math tasks is 'Answer: {answer}': the curator applies it
    report = _validate(parts, _plan())
    assert report.passed, [c.model_dump() for c in report.checks if c.status != "pass"]
    names = {c.name for c in report.checks}
    assert {"non_empty", "well_formed", "targets_parseable", "truncation", "loss_mask", "prompt_prefix", "duplicates",
            "dev_overlap", "target_modules", "learning_rate", "fits_budget", "memory", "smoke_train"} <= names
    assert len(report.smoke_losses) == 6 and report.smoke_losses[-1] < report.smoke_losses[0]
    smoke = next(c for c in report.checks if c.name == "smoke_train")
    assert f"one batch of {SMOKE_ROWS}:" in smoke.reason  # on the host, not the plan's batch of 8
    assert report.memory_estimate_mb and report.memory_estimate_mb > 0
    # the widest example of the data, for the run's memory bound: within max_length, more than its labels
    assert report.longest_tokens and report.label_tokens and report.label_tokens < report.longest_tokens <= _plan().train.max_length


def test_a_lora_rank_the_vllm_evaluation_server_would_refuse_fails_before_training(math_domain, tiny_model, tmp_path) -> None:
    """vLLM takes adapters up to evaluation.max_lora_rank: a plan of higher rank would train and then fail at
    its first evaluation, so the validator refuses it first."""
    from ftdojo.messages import EvalBackend

    env = DojoEnv("math-linear", tiny_model, Budget(max_train_steps=100))
    vllm = EvalBackend(backend="server", server="vllm", max_lora_rank=8)
    validator = Validator(EnvHandle(env), str(tmp_path), use_gpu=True, evaluation=vllm)
    report = _validate((env, Curator(EnvHandle(env), str(tmp_path)), validator), _plan(lora_r=16))
    check = next(c for c in report.checks if c.name == "eval_lora_rank")
    assert check.status == "fail" and "lora_r=16" in check.reason and "evaluation.max_lora_rank" in check.reason
    assert "smoke_train" not in {c.name for c in report.checks}
    ok = asyncio.run(validator.config_checks(_plan(lora_r=8), env.describe(), []))
    assert next(c for c in ok if c.name == "eval_lora_rank").status == "pass"


def test_a_fit_leaves_the_vllm_servers_share_of_the_gpu_before_and_after_it_starts() -> None:
    from actors.validator import gpu_available_mb

    total = 80 * 1024
    assert gpu_available_mb(total - 500, total) == total - 500  # no server: what is free
    assert gpu_available_mb(total - 500, total, 0.35) == pytest.approx(0.65 * total)  # not started yet: its share kept
    assert gpu_available_mb(0.6 * total, total, 0.35) == pytest.approx(0.6 * total)  # started: already taken


def test_the_smoke_train_takes_a_few_rows_on_the_host_and_the_whole_batch_on_a_gpu() -> None:
    from actors.validator import smoke_rows

    assert smoke_rows(8, use_gpu=False) == SMOKE_ROWS == 2
    assert smoke_rows(8, use_gpu=True) == 8
    assert smoke_rows(1, use_gpu=False) == 1  # never more rows than the plan's batch
    assert smoke_rows(8, use_gpu=False, workers=4) == 4  # a sharded smoke train: a row per worker


def test_smoke_train_catches_a_loss_that_does_not_fall(parts) -> None:
    report = _validate(parts, _plan(lr=1e-6))
    smoke = next(c for c in report.checks if c.name == "smoke_train")
    assert smoke.status == "fail" and "loss" in smoke.reason


def test_the_memory_estimate_follows_the_device_the_method_and_the_length() -> None:
    from actors.validator import Arch, memory_estimate_mb

    arch = Arch(modules=set(), params=135_000_000, hidden=576, layers=30, heads=9)  # the bundled model's shape
    lora, full = TrainConfig(method="lora", batch_size=8, max_length=256), TrainConfig(method="full", batch_size=8, max_length=256)
    lora_cpu = memory_estimate_mb(arch, lora, 1e6, "cpu", True)
    assert memory_estimate_mb(arch, full, arch.params, "cpu", True) > lora_cpu + 135e6 * 16 / 2**20  # grads and Adam of every weight
    # on CPU (eager attention) doubling the length more than doubles the activations; on a GPU (SDPA) it doubles them,
    # and the process's cached base stays in host memory
    act = {d: [memory_estimate_mb(arch, lora.model_copy(update={"max_length": n}), 1e6, d, True) - memory_estimate_mb(
        arch, lora.model_copy(update={"max_length": 8}), 1e6, d, True) for n in (200, 400)] for d in ("cpu", "cuda")}
    assert act["cpu"][1] > 2.2 * act["cpu"][0] and act["cuda"][1] == pytest.approx(act["cuda"][0] * (400 - 8) / (200 - 8))
    mb = 2**20
    # the shared base in the fit's dtype: fp32 without bf16, bf16 with it, 4-bit NF4 under QLoRA
    assert memory_estimate_mb(arch, lora, 1e6, "cuda", False) - memory_estimate_mb(arch, lora, 1e6, "cuda", True) == pytest.approx(
        2 * 135e6 / mb, abs=1)
    qlora = lora.model_copy(update={"method": "qlora"})
    assert memory_estimate_mb(arch, lora, 1e6, "cuda", True) - memory_estimate_mb(arch, qlora, 1e6, "cuda", True) == pytest.approx(
        (2 - 0.56) * 135e6 / mb, abs=1)


def test_the_run_memory_bound_is_the_start_twice_the_bf16_model_and_the_largest_fit() -> None:
    """The bound on a run's model-holding process: its memory at the start, 2x the model's bf16 size, and the
    largest of the run's fits (activations of its widest examples, else at max_length; trainable state; the
    fit's fixed overhead)."""
    from actors.validator import OVERHEAD_MB, Arch, _activation_bytes, memory_bound_mb

    arch = Arch(modules=set(), params=135_000_000, hidden=576, layers=30, heads=9, vocab=49152)
    short, long = TrainConfig(batch_size=8, max_length=128), TrainConfig(batch_size=8, max_length=512)
    mb = 2**20
    none = memory_bound_mb(arch, [], "cpu", True, 600.0)
    assert none == pytest.approx(600 + 4 * 135e6 / mb + OVERHEAD_MB)  # an evaluation-only run (zero-shot)
    both = memory_bound_mb(arch, [(short, 1e6, None, None), (long, 2e6, None, None)], "cpu", True, 600.0)
    assert both == pytest.approx(none + (_activation_bytes(arch, long, "cpu", True) + 16 * 2e6) / mb)
    assert memory_bound_mb(arch, [(short, 1e6, None, None)], "cpu", True, 600.0) < both  # the largest fit counts, once
    # a fit whose data is 100 tokens at most (20 of them labels) is bounded by those, not by its max_length
    narrow = memory_bound_mb(arch, [(long, 2e6, 100, 20)], "cpu", True, 600.0)
    at_100 = long.model_copy(update={"max_length": 100})
    assert narrow == pytest.approx(none + (_activation_bytes(arch, at_100, "cpu", True, 0, 20) + 16 * 2e6) / mb)
    assert narrow < both / 2 and memory_bound_mb(arch, [(short, 1e6, 900, 900)], "cpu", True, 600.0) == pytest.approx(
        memory_bound_mb(arch, [(short, 1e6, None, None)], "cpu", True, 600.0))  # never wider than max_length


def test_a_process_peak_memory_restarts_from_a_reset() -> None:
    """``peak_rss_mb`` is since ``reset_peak_rss``: a run in a reused process (a test session, a reused actor)
    reports its own peak, not an earlier one."""
    from ftdojo import runtime

    if not runtime.reset_peak_rss():
        pytest.skip("this system keeps no resettable peak (no /proc/self/clear_refs)")
    start = runtime.rss_mb()
    block = bytearray(300 * 2**20)
    block[:: 4096] = b"x" * len(block[:: 4096])  # touch every page
    assert runtime.peak_rss_mb() > start + 250
    del block
    assert runtime.reset_peak_rss() and runtime.peak_rss_mb() < start + 100


@pytest.mark.parametrize("allocator", ["glibc", "jemalloc"])
def test_freed_heap_memory_goes_back_to_the_system_once_a_fit_ends(allocator: str) -> None:
    """What a fit frees stays in the C heap, resident, behind the blocks still in use; ``release_free_heap``
    (called when a fit or an evaluation ends) returns it, through glibc's ``malloc_trim`` or, in a process
    started with ``runtime.allocator_env("jemalloc")`` (a run's Ray actors), jemalloc's purge. In a fresh
    process: 200 MB of 100 KB blocks, each beside a small block that stays."""
    import json
    import os
    import subprocess
    import sys

    from ftdojo import runtime

    env = {**os.environ, **runtime.allocator_env(allocator)}
    if allocator == "jemalloc":
        assert runtime.jemalloc_path() and env["LD_PRELOAD"].split(":")[0] == runtime.jemalloc_path()
    code = (
        "import json\nfrom ftdojo import runtime\nbig, pins = [], []\n"
        "for _ in range(2000):\n    b = bytearray(100 * 1024); b[::4096] = b'x' * len(b[::4096]); big.append(b); pins.append(bytearray(1000))\n"
        "held = runtime.rss_mb()\ndel big\nfreed = runtime.rss_mb()\nok = runtime.release_free_heap()\n"
        "print(json.dumps([runtime.allocator(), held, freed, runtime.rss_mb(), ok]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    serving, held, freed, released, ok = json.loads(out.splitlines()[-1])
    assert serving == allocator
    if allocator == "jemalloc":
        assert ok  # the purge answered
    elif not ok:
        pytest.skip("this C library has no malloc_trim")
    if allocator == "glibc":
        assert freed > held - 50  # freed, yet still resident (jemalloc hands part of it back by itself)
    assert released < held - 150


def test_the_glibc_allocator_adds_nothing_to_a_run_environment() -> None:
    import os

    from ftdojo import runtime

    assert runtime.allocator_env("glibc") == {}
    # the allocator reported is the one this test process was started with
    assert runtime.allocator() == ("jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "glibc")


def test_the_memory_estimate_counts_fsdp_shards_and_gradient_checkpointing() -> None:
    """A 7B full fine-tune: unsharded it needs more than an 80 GB GPU; FSDP over 8 GPUs puts 1/8 of the weights,
    gradients and Adam state (and of the global batch) on each; gradient checkpointing keeps one layer's activations."""
    from actors.validator import Arch, memory_estimate_mb

    arch = Arch(modules=set(), params=7_600_000_000, hidden=3584, layers=28, heads=28)  # Qwen2.5-7B's shape
    full = TrainConfig(method="full", batch_size=8, max_length=2048)
    one = memory_estimate_mb(arch, full, arch.params, "cuda", True)
    eight = memory_estimate_mb(arch, full, arch.params, "cuda", True, workers=8, sharding="fsdp")
    assert one > 80 * 1024 and eight < one / 6
    assert memory_estimate_mb(arch, full, arch.params, "cuda", True, workers=8, sharding="ddp") > 18 * arch.params / 2**20  # DDP: replicas
    ckpt = full.model_copy(update={"gradient_checkpointing": True})
    gc = memory_estimate_mb(arch, ckpt, arch.params, "cuda", True, workers=8, sharding="fsdp")
    weights = memory_estimate_mb(arch, full.model_copy(update={"batch_size": 1, "max_length": 8}), arch.params, "cuda", True, 8, "fsdp")
    assert (gc - weights) < (eight - weights) / 10  # activations: a tenth or less of what every layer keeps


QWEN_7B = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
           "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
           "tie_word_embeddings": False, "torch_dtype": "bfloat16"}  # Qwen/Qwen2.5-7B-Instruct's config.json


@pytest.mark.parametrize("profile, gpu_gib", [("gpu-7b-lora", 80), ("gpu-7b-qlora", 40), ("gpu-7b-full-fsdp", 80), ("gpu-7b-lora-vllm", 80)])
def test_each_7b_gpu_profile_fits_the_gpu_its_description_names(profile: str, gpu_gib: int, tmp_path) -> None:
    """What the profiles promise, by the validator's own estimate: the fit per GPU plus the evaluator's bf16 base
    (its own process, on the run's first GPU) fits the GPU the description names; full fine-tuning fits only sharded."""
    import json

    from actors.validator import Validator, gpu_available_mb, memory_estimate_mb
    from ftdojo import config, methods

    (tmp_path / "config.json").write_text(json.dumps(QWEN_7B))
    validator = Validator.__new__(Validator)
    validator._archs = {}
    arch = validator._arch(str(tmp_path))
    assert 7.5e9 < arch.params < 7.7e9 and arch.stored_bytes == 2
    p = config.load_profile(profile)
    tc = TrainConfig(**{"target_modules": ["q_proj", "v_proj"], **p.train})
    trainable = arch.params * methods.get(tc.method).trainable_share(tc, arch.layers)
    fit = memory_estimate_mb(arch, tc, trainable, "cuda", True, p.resources.workers, p.resources.sharding)
    if p.evaluation.server == "vllm":  # vLLM holds its share (weights and KV cache); no local evaluator's base
        assert p.evaluation.gpu_memory_utilization * gpu_gib * 1024 > 1.5 * 2 * arch.params / 2**20  # weights and some KV cache
        assert fit < gpu_available_mb(gpu_gib * 1024, gpu_gib * 1024, p.evaluation.gpu_memory_utilization) * 0.8  # the check's margin
        assert tc.lora_r <= p.evaluation.max_lora_rank
    else:
        evaluator_base = 2 * arch.params / 2**20
        assert fit + evaluator_base < gpu_gib * 1024
    if tc.method == "full":
        assert memory_estimate_mb(arch, tc, trainable, "cuda", True) > 80 * 1024  # unsharded it cannot fit


def test_the_memory_estimate_counts_label_logits_and_micro_batches() -> None:
    """Logits exist only where labels are: the estimate grows with the data's longest completion times the
    vocabulary; micro-batches divide activations and logits, not weights."""
    from actors.validator import LOGIT_BYTES, Arch, memory_estimate_mb

    arch = Arch(modules=set(), params=1_540_000_000, hidden=1536, layers=28, heads=12, vocab=151936)
    tc = TrainConfig(method="lora", batch_size=16, max_length=2048, gradient_checkpointing=True)
    short = memory_estimate_mb(arch, tc, 3e7, "cuda", True, label_tokens=16)
    long = memory_estimate_mb(arch, tc, 3e7, "cuda", True, label_tokens=1016)
    assert long - short == pytest.approx(16 * 1000 * 151936 * LOGIT_BYTES / 2**20, rel=1e-9)
    assert memory_estimate_mb(arch, tc, 3e7, "cuda", True) > long  # unknown completions: as long as max_length
    weights = memory_estimate_mb(arch, tc.model_copy(update={"batch_size": 1, "max_length": 8}), 3e7, "cuda", True)
    micro = memory_estimate_mb(arch, tc.model_copy(update={"micro_batch_size": 4}), 3e7, "cuda", True, label_tokens=1016)
    assert micro - weights == pytest.approx((long - weights) / 4, rel=0.01)
