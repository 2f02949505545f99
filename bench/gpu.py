"""The prepared device check: ftdojo's GPU path on a real GPU, with figures.

What it runs there, each configuration in a fresh process through the project's own code
(``ftdojo.training.run_loop`` as the trainer runs it in-process, ``ftdojo.evaluation`` as the evaluator
runs it):

* **placement**: each process is given one device id in ``CUDA_VISIBLE_DEVICES`` (the last GPU, as Ray
  sets it for an actor inside a run's reservation); the fit's record must name that id and the device.
* **training in bf16 on models of real shape**: Qwen2.5-1.5B's architecture (config written by hand,
  random weights: the device machine reaches no hub, and speed and memory depend only on shapes) with
  LoRA, LoRA with gradient checkpointing, and full fine-tuning; SmolLM2-135M's shape with LoRA. The loss
  must fall on curated math-linear data (a random model learns the format).
* **evaluation on the device**: the LoRA candidate's adapter loaded unmerged onto the process's shared
  bf16 base on the GPU, batched greedy decoding of dev prompts; items/s and generated tokens/s.
* **the server evaluation backend on the device**: the same LoRA candidate and prompts through vLLM where
  it is installed (adapter loaded by name on the served base), else ``transformers serve`` (adapter merged):
  items/s against the local backend's, start-up time, and how many greedy answers are identical.
* **the memory check against real usage**: the validator's estimate (``memory_estimate_mb``, computed
  at ``prepare`` time for a CUDA device) against the fit's ``torch.cuda.max_memory_allocated``.
* **throughput and MFU**: trained tokens/s, and model FLOPs/s (6 N per token for full fine-tuning, 4 N
  for LoRA: no weight gradients of the frozen base; attention's FLOPs left out) over the device's bf16
  peak, both the nominal dense peak (where the device is known) and a measured 8192^3 matmul.

Not here: Ray (not in the device image; its wheel is larger than the 64 MiB a check carries), so the Ray
path's placement is tested on CPU with declared GPUs (tests/test_bench_ray.py) and has not run on a GPU;
FSDP and NCCL across GPUs (one GPU on the device machine); QLoRA (bitsandbytes is not in the image).

Prepared here, run there:

    .venv/bin/python bench/gpu.py prepare .device      # configs, tokenizer, data, estimates, wheels
    # on the GPU machine (carry .device):
    pip install --no-index --find-links .device/wheels --target /tmp/site pydantic structlog openai fastapi uvicorn rich
    PYTHONPATH=/tmp/site:. python3 bench/gpu.py run .device $OUT

``run`` writes ``$OUT/gpu.json`` and prints one JSON line per configuration. ``run --cpu`` runs the same
code on the CPU with the tiny shapes ``prepare --tiny`` writes (the test of this script); ``--only=A,B``
runs the named configurations.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

QWEN_1_5B = {  # Qwen2.5-1.5B's published architecture (config.json of Qwen/Qwen2.5-1.5B)
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 8960,
    "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
    "hidden_act": "silu", "torch_dtype": "bfloat16", "bos_token_id": 151643, "eos_token_id": 151643,
}
TINY = {**QWEN_1_5B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 49152, "bos_token_id": 0, "eos_token_id": 0}
ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]

# name, shape, method, batch, max_length, steps, gradient checkpointing, evaluate afterwards
CONFIGS = [
    ("smollm2-lora", "smollm2", "lora", 16, 256, 30, False, False),
    ("qwen1.5b-lora", "qwen1.5b", "lora", 8, 512, 30, False, True),
    ("qwen1.5b-lora-gc", "qwen1.5b", "lora", 8, 512, 10, True, False),
    ("qwen1.5b-full", "qwen1.5b", "full", 8, 512, 10, False, False),
]
NOMINAL_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10G": 125.0, "L4": 121.0}
"""Dense bf16 tensor-core peaks from the vendors' data sheets (SXM parts), by name fragment."""
SERVE_WHEELS = ["openai", "fastapi", "uvicorn", "rich"]
"""What ``transformers serve`` needs beyond transformers (the image lacks them; about 8 MB of wheels)."""
EVAL_PROMPTS = 64
EVAL_TOKENS = 128


def _shape_dirs(dest: Path, source: Path, tiny: bool) -> dict[str, Path]:
    """A folder per shape: its config.json plus the bundled tokenizer (every shape uses its ids)."""
    dirs = {}
    for name in ("smollm2", "qwen1.5b"):
        d = dest / f"{name}-shape"
        d.mkdir(parents=True, exist_ok=True)
        for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
            if (source / f).exists():
                shutil.copy(source / f, d / f)
        if name == "smollm2" and not tiny:
            shutil.copy(source / "config.json", d / "config.json")
        else:
            (d / "config.json").write_text(json.dumps(TINY if tiny else QWEN_1_5B, indent=1))
        dirs[name] = d
    return dirs


def prepare(dest: Path, source_model: str | None = None, tiny: bool = False, wheels: bool = True) -> None:
    """Everything the device needs that it cannot build: configs, tokenizer, training data, dev prompts,
    the validator's estimates; and wheels for what the device image lacks (pydantic, structlog, and what
    ``transformers serve`` needs)."""
    import asyncio

    from actors.curator import Curator
    from actors.validator import Validator, memory_estimate_mb
    from ftdojo import methods, models, sft
    from ftdojo.dojo import DojoEnv, EnvHandle
    from ftdojo.messages import Budget, DataRecipe, Plan, PromptSpec, SourceMapping, TrainConfig

    dest.mkdir(parents=True, exist_ok=True)
    source = Path(models.resolve(source_model or models.BUNDLED))
    dirs = _shape_dirs(dest, source, tiny)
    env = DojoEnv("math-linear", str(source), Budget())
    mapping = SourceMapping(source="worked_solutions", prompt="{problem}", answer="{final}", rationale="{solution}")
    plan = Plan(plan_id="gpu", hypothesis="gpu", recipe=DataRecipe(sources=[mapping]), train=TrainConfig())
    data = asyncio.run(Curator(EnvHandle(env), str(dest / "work")).curate(plan))
    shutil.copy(data.path, dest / "train.jsonl")
    shutil.rmtree(dest / "work", ignore_errors=True)
    desc = env.describe()
    (dest / "instruction.txt").write_text(desc.instruction)
    dev = [item.input for item in env.read_dev()][:EVAL_PROMPTS]
    (dest / "dev_inputs.json").write_text(json.dumps(dev))
    validator = Validator.__new__(Validator)  # the architecture reader only (config on the meta device)
    validator._archs = {}
    tok = models.tokenizer(str(dirs["qwen1.5b"]))
    rows = [json.loads(line) for line in open(dest / "train.jsonl")][:512]
    configs = []
    for name, shape, method, batch, length, steps, gc, ev in CONFIGS:
        tc = TrainConfig(method=method, steps=6 if tiny else steps, batch_size=batch, max_length=length, lr=1e-4 if method == "full" else 1e-3,
                         warmup_steps=0 if tiny else 3, gradient_checkpointing=gc, target_modules=ATTN)
        arch = validator._arch(str(dirs[shape]))
        trainable = arch.params * methods.get(method).trainable_share(tc, arch.layers)
        labels = max(sum(x != sft.IGNORE for x in sft.encode(tok, sft.render_prompt(tok, PromptSpec(), desc.instruction, r["input"]),
                                                               r["completion"], length).labels) for r in rows)  # as the validator counts
        configs.append({"name": name, "shape": shape, "train": tc.model_dump(), "evaluate": ev, "params": arch.params, "label_tokens": labels,
                        "estimate_mb": memory_estimate_mb(arch, tc, trainable, "cuda", True, label_tokens=labels)})
    (dest / "configs.json").write_text(json.dumps(configs, indent=1))
    if wheels:  # the device image has torch, transformers and peft but not pydantic, structlog or a server's web stack
        for version in ("3.10", "3.11", "3.12", "3.13"):
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "pydantic==2.14.*", "structlog", *SERVE_WHEELS, "--only-binary", ":all:",
                            "--python-version", version, "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
                            "-d", str(dest / "wheels")], check=True)
    print(f"prepared {dest}: {sum(1 for _ in open(dest / 'train.jsonl'))} examples, {len(configs)} configurations")


def _matmul_peak(device: str) -> float:
    import torch

    n = 8192 if device == "cuda" else 256
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * 20 / (time.perf_counter() - t0)


def _weights(prepared: Path, shape: str) -> Path:
    """Random bf16 weights of a shape, written once per machine (the device reaches no hub)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    d = Path(os.environ.get("FTDOJO_GPU_MODELS", "/tmp/ftdojo-gpu-models")) / f"{prepared.resolve().name}-{shape}"
    if not (d / "model.safetensors").exists() and not (d / "model.safetensors.index.json").exists():
        src = prepared / f"{shape}-shape"
        cfg = AutoConfig.from_pretrained(src)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        model.save_pretrained(d)
        AutoTokenizer.from_pretrained(src).save_pretrained(d)
    return d


def one(prepared: Path, out: Path, name: str, cpu: bool) -> dict:
    """One configuration in this process: fit through ``run_loop``, then (if asked) evaluate on the device."""
    import torch

    from ftdojo import evaluation, models, sft, training
    from ftdojo.messages import Candidate, LoopJob, PromptSpec, TrainConfig

    cfg = next(c for c in json.loads((prepared / "configs.json").read_text()) if c["name"] == name)
    model_dir = _weights(prepared, cfg["shape"])
    run_dir = out / name
    tc = TrainConfig.model_validate(cfg["train"])
    instruction = (prepared / "instruction.txt").read_text()
    job = LoopJob(train=tc, prompt=PromptSpec(), base_model=str(model_dir), data_path=str(prepared / "train.jsonl"),
                  output_dir=str(run_dir), instruction=instruction, threads=max(1, (os.cpu_count() or 2) // 2), use_gpu=not cpu,
                  precision="bf16", save=cfg["evaluate"])
    training.run_loop(job, training.Session(0, 1, 0))
    m = json.loads((run_dir / "metrics.json").read_text())
    n, tokens_per_s = cfg["params"], m["tokens"] / m["train_s"]
    flops_per_token = (6 if tc.method == "full" else 4) * n
    entry = {
        "name": name, "method": tc.method, "params": n, "batch": tc.batch_size, "max_length": tc.max_length, "steps": tc.steps,
        "gradient_checkpointing": tc.gradient_checkpointing, "device": m["device"], "bf16": m["bf16"],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "visible_devices": m["visible_devices"],
        "device_name": torch.cuda.get_device_name(0) if not cpu else "cpu",
        "tokens_per_s": tokens_per_s, "model_tflops_per_s": flops_per_token * tokens_per_s / 1e12, "train_s": m["train_s"],
        "first_losses": m["losses"][:3], "last_losses": m["losses"][-3:],
        "loss_fell": sum(m["losses"][-3:]) < sum(m["losses"][:3]),
        "peak_device_mb": m["peak_device_mb"], "estimate_mb": cfg["estimate_mb"],
        "estimate_ratio": cfg["estimate_mb"] / m["peak_device_mb"] if m["peak_device_mb"] else None,
    }
    if cfg["evaluate"]:
        device, dtype = evaluation.setting(not cpu, "auto")
        prompts_in = json.loads((prepared / "dev_inputs.json").read_text())
        candidate = Candidate(base_model=str(model_dir), checkpoint=str(run_dir))
        t0 = time.perf_counter()
        with evaluation.candidate_model(candidate, device, dtype) as (model, tok):
            on = {str(p.device) for p in model.parameters()}
            prompts = [sft.render_prompt(tok, candidate.prompt, instruction, x) for x in prompts_in]
            outputs = evaluation.generate(model, tok, prompts, 4 if cpu else EVAL_TOKENS, batch_size=32)
        wall = time.perf_counter() - t0
        base = models.shared_base(str(model_dir), dtype, device)[0]
        entry["eval"] = {"device": device, "dtype": dtype, "parameters_on": sorted(on), "items": len(outputs), "wall_s": wall,
                         "items_per_s": len(outputs) / wall, "max_new_tokens": 4 if cpu else EVAL_TOKENS,
                         "base_restored": not hasattr(base, "peft_config"), "base_loads": models.loads}
        models.release_base()
        entry["serve"] = _serve(candidate, prompts, outputs, device, dtype, 4 if cpu else EVAL_TOKENS)
    return entry


def _serve(candidate, prompts: list[str], local: list[str], device: str, dtype: str, tokens: int) -> dict:
    """The server evaluation backend on the device: vLLM where it is installed (the adapter loaded by name),
    else ``transformers serve`` (the adapter merged); the same prompts, greedy, against the local answers."""
    from ftdojo import serving
    from ftdojo.messages import EvalBackend

    skipped = []
    for server in ("vllm", "transformers"):
        spec = EvalBackend(backend="server", server=server, concurrency=32, startup_timeout_s=300.0)
        why = serving.preflight(spec, device)
        if why is None:
            break
        skipped.append(why)
    else:
        return {"skipped": skipped}
    bodies = [{"prompt": p, "max_tokens": tokens, "temperature": 0.0} for p in prompts]
    t0 = time.perf_counter()
    try:
        with serving.served(candidate, spec, device, dtype) as (srv, name):
            startup = time.perf_counter() - t0
            t1 = time.perf_counter()
            texts = serving.complete(srv, name, bodies, spec)
            generation = time.perf_counter() - t1
    except Exception as e:  # noqa: BLE001 - a figure for the report, not a crash of the check
        return {"server": server, "skipped": skipped, "error": f"{type(e).__name__}: {e}"[-1500:]}
    wall = time.perf_counter() - t0
    serving.stop_all()  # vLLM keeps its base server for the process's next candidate; this is the last
    prefix = [len(os.path.commonprefix([a, b])) / max(1, len(a)) for a, b in zip(local, texts, strict=True)]
    return {"server": server, "skipped": skipped, "items": len(texts), "startup_s": startup,
            "items_per_s_generation": len(texts) / generation, "items_per_s_with_startup": len(texts) / wall,
            "identical_to_local": sum(a == b for a, b in zip(local, texts, strict=True)),
            "mean_share_of_local_answer_agreeing": sum(prefix) / len(prefix)}


def run(prepared: Path, out: Path, cpu: bool = False, only: set[str] | None = None) -> int:
    out.mkdir(parents=True, exist_ok=True)
    if cpu:
        result: dict = {"device": "cpu", "gpus": 0}
    else:
        import torch

        gpus = torch.cuda.device_count()
        name = torch.cuda.get_device_name(0)
        nominal = next((v for k, v in NOMINAL_BF16_TFLOPS.items() if k in name), None)
        result = {"device": name, "gpus": gpus, "torch": torch.__version__, "cuda": torch.version.cuda,
                  "bf16_nominal_tflops": nominal, "bf16_matmul_tflops": _matmul_peak("cuda") / 1e12}
    result["runs"] = []
    pin = "" if cpu else str(result["gpus"] - 1)  # one device id, as Ray gives an actor of a one-GPU run
    for cfg in json.loads((prepared / "configs.json").read_text()):
        if only and cfg["name"] not in only:
            continue
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(Path(__file__).resolve().parents[1])]))}
        env.pop("CUDA_VISIBLE_DEVICES", None)
        if pin:
            env["CUDA_VISIBLE_DEVICES"] = pin
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "one", str(prepared), str(out), cfg["name"]] + (["--cpu"] if cpu else []),
                              capture_output=True, text=True, env=env)
        if done.returncode == 0:
            entry = json.loads(done.stdout.strip().splitlines()[-1])
            entry["placed"] = entry["visible_devices"] == [pin or None]
            for peak in ("bf16_nominal_tflops", "bf16_matmul_tflops"):
                if result.get(peak):
                    entry[f"mfu_vs_{peak.removeprefix('bf16_').removesuffix('_tflops')}"] = entry["model_tflops_per_s"] / result[peak]
        else:
            entry = {"name": cfg["name"], "stderr": done.stderr[-3000:]}
        entry |= {"rc": done.returncode, "wall_s": time.perf_counter() - t0}
        result["runs"].append(entry)
        print(json.dumps(entry), flush=True)
        (out / "gpu.json").write_text(json.dumps(result, indent=2))  # after each: a killed check keeps what ran
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
    return 0 if all(r["rc"] == 0 and r.get("loss_fell") and r.get("placed") for r in result["runs"]) else 1


if __name__ == "__main__":
    what, *rest = sys.argv[1:]
    flags = {a.split("=")[0] for a in rest if a.startswith("--")}
    only = next((set(a.split("=", 1)[1].split(",")) for a in rest if a.startswith("--only=")), None)
    rest = [a for a in rest if not a.startswith("--")]
    if what == "prepare":
        prepare(Path(rest[0]), rest[1] if len(rest) > 1 else None, tiny="--tiny" in flags, wheels="--no-wheels" not in flags)
    elif what == "one":
        print(json.dumps(one(Path(rest[0]), Path(rest[1]), rest[2], "--cpu" in flags)))
    else:
        sys.exit(run(Path(rest[0]), Path(rest[1] if len(rest) > 1 else os.environ.get("OUT", "/tmp/gpu-out")), cpu="--cpu" in flags, only=only))
