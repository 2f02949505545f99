"""GPU path check: CUDA torch, NCCL DDP and bf16 through ftdojo's training loop, with figures.

Runs ``ftdojo.training`` under torchrun (the Ray-free launcher of the same
loop) on every visible GPU with NCCL, in bf16 and fp32, on a model with
SmolLM2-135M-Instruct's exact shapes and tokenizer (random weights: the
device machine has no copy of the bundled weights, and throughput depends
only on shapes), and on curated math-linear training data. Also measures the
GPU's bf16 matmul peak, for the share-of-ceiling figure.

Prepared here, run there:

    .venv/bin/python bench/gpu.py prepare .device      # tokenizer, config, data, wheels for the device
    # on the GPU machine (carry .device):
    pip install --no-index --find-links .device/wheels --target /tmp/site pydantic structlog
    PYTHONPATH=/tmp/site:. python3 bench/gpu.py run .device $OUT

``run`` writes ``$OUT/gpu.json``: tokens/s per precision and batch size, the
loss curves (which must fall), NCCL world size, the device name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def prepare(dest: Path) -> None:
    import asyncio

    from actors.curator import Curator
    from ftdojo import models
    from ftdojo.dojo import DojoEnv, EnvHandle
    from ftdojo.messages import Budget, DataRecipe, Plan, SourceMapping, TrainConfig

    dest.mkdir(parents=True, exist_ok=True)
    src = Path(models.resolve(models.BUNDLED))
    shape = dest / "smollm2-shape"
    shape.mkdir(exist_ok=True)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (src / name).exists():
            shutil.copy(src / name, shape / name)
    env = DojoEnv("math-linear", models.BUNDLED, Budget())
    mapping = SourceMapping(source="worked_solutions", prompt="{problem}", answer="{final}", rationale="{solution}")
    plan = Plan(plan_id="gpu", hypothesis="gpu", recipe=DataRecipe(sources=[mapping]), train=TrainConfig())
    data = asyncio.run(Curator(EnvHandle(env), str(dest / "work")).curate(plan))
    shutil.copy(data.path, dest / "train.jsonl")
    (dest / "instruction.txt").write_text(env.describe().instruction)
    # The device image has torch, transformers and peft but not pydantic or structlog: carry wheels.
    for version in ("3.10", "3.11", "3.12", "3.13"):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "pydantic==2.14.*", "structlog", "--only-binary", ":all:",
                        "--python-version", version, "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
                        "-d", str(dest / "wheels")], check=True)
    print(f"prepared {dest}: {sum(1 for _ in open(dest / 'train.jsonl'))} examples")


def _matmul_peak() -> float:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    return 2 * 8192**3 * 20 / (time.perf_counter() - t0)


def run(prepared: Path, out: Path) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path("/tmp/ftdojo-gpu-model")
    if not (model_dir / "model.safetensors").exists():
        cfg = AutoConfig.from_pretrained(prepared / "smollm2-shape")
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg)
        model.save_pretrained(model_dir)
        AutoTokenizer.from_pretrained(prepared / "smollm2-shape").save_pretrained(model_dir)
    gpus = torch.cuda.device_count()
    result: dict = {
        "device": torch.cuda.get_device_name(0), "gpus": gpus, "torch": torch.__version__, "cuda": torch.version.cuda,
        "nccl": str(torch.cuda.nccl.version()), "bf16_matmul_peak_tflops": _matmul_peak() / 1e12, "runs": [],
    }
    from ftdojo.messages import LoopJob, PromptSpec, TrainConfig

    for precision, batch in (("bf16", 16), ("fp32", 16), ("bf16", 64)):
        tc = TrainConfig(steps=40, batch_size=batch, lr=1e-3, warmup_steps=5, max_length=256)
        run_dir = out / f"{precision}-b{batch}"
        job = LoopJob(train=tc, prompt=PromptSpec(), base_model=str(model_dir), data_path=str(prepared / "train.jsonl"),
                      output_dir=str(run_dir), instruction=(prepared / "instruction.txt").read_text(), threads=4, use_gpu=True,
                      precision=precision, save=False)  # type: ignore[arg-type]
        (out / f"cfg-{precision}-{batch}.json").write_text(job.model_dump_json())
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus),
               "-m", "ftdojo.training", str(out / f"cfg-{precision}-{batch}.json")]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        entry: dict = {"precision": precision, "batch": batch, "world": gpus, "backend": "nccl", "rc": done.returncode, "wall_s": wall}
        if done.returncode == 0:
            m = json.loads((run_dir / "metrics.json").read_text())
            entry |= {"tokens_per_s": m["tokens"] / m["train_s"], "train_s": m["train_s"], "first_losses": m["losses"][:3],
                      "last_losses": m["losses"][-3:], "loss_fell": sum(m["losses"][-5:]) < 0.5 * sum(m["losses"][:5])}
        else:
            entry["stderr"] = done.stderr[-3000:]
        result["runs"].append(entry)
        print(json.dumps(entry), flush=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
    return 0 if all(r["rc"] == 0 for r in result["runs"]) else 1


if __name__ == "__main__":
    what, *rest = sys.argv[1:]
    if what == "prepare":
        prepare(Path(rest[0]))
    else:
        sys.exit(run(Path(rest[0]), Path(rest[1] if len(rest) > 1 else os.environ.get("OUT", "/tmp/gpu-out"))))
