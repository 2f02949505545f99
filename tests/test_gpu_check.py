"""The prepared device check (bench/gpu.py) on the CPU: the same script the GPU machine runs, with tiny
shapes, so it cannot rot between the sessions that get a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_device_check_runs_its_path_on_cpu(tiny_model: str, tmp_path: Path) -> None:
    prepared, out = tmp_path / "device", tmp_path / "out"
    env = {"FTDOJO_GPU_MODELS": str(tmp_path / "weights")}
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), *a], capture_output=True, text=True,  # noqa: E731
                                    env={**os.environ, **env}, cwd=ROOT)
    done = run("prepare", str(prepared), tiny_model, "--tiny", "--no-wheels")
    assert done.returncode == 0, done.stderr[-2000:]
    configs = json.loads((prepared / "configs.json").read_text())
    assert {c["name"] for c in configs} == {"smollm2-lora", "qwen1.5b-lora", "qwen1.5b-lora-gc", "qwen1.5b-full"}
    by = {c["name"]: c for c in configs}
    # the validator's estimate for a CUDA device: full fine-tuning (16 bytes/param + bf16 copies) costs more than LoRA
    assert by["qwen1.5b-full"]["estimate_mb"] > by["qwen1.5b-lora"]["estimate_mb"] > by["qwen1.5b-lora-gc"]["estimate_mb"]

    done = run("run", str(prepared), str(out), "--cpu", "--only=qwen1.5b-lora,qwen1.5b-full")
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    result = json.loads((out / "gpu.json").read_text())
    runs = {r["name"]: r for r in result["runs"]}
    assert set(runs) == {"qwen1.5b-lora", "qwen1.5b-full"}
    for r in runs.values():
        assert r["rc"] == 0 and r["loss_fell"] and r["placed"] and r["tokens_per_s"] > 0
        assert r["last_losses"][-1] < r["first_losses"][0]
    ev = runs["qwen1.5b-lora"]["eval"]
    assert ev["items"] > 0 and ev["parameters_on"] == ["cpu"] and ev["base_restored"]
    assert "eval" not in runs["qwen1.5b-full"]
    serve = runs["qwen1.5b-lora"]["serve"]  # vLLM needs a GPU: transformers serve, the adapter merged
    assert serve.get("error") is None and serve["server"] == "transformers" and serve["items"] == ev["items"]
    assert serve["items_per_s_generation"] > 0 and serve["identical_to_local"] >= 0.9 * ev["items"]  # fp32 on CPU: as local
    assert "error" not in runs["qwen1.5b-full"] and "serve" not in runs["qwen1.5b-full"]


def test_real_shape_is_qwen_1_5b() -> None:
    """The GPU configuration's shape has Qwen2.5-1.5B's parameter count (1.54B with tied embeddings)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu
    finally:
        sys.path.remove(str(ROOT / "bench"))
    cfg = AutoConfig.for_model(**{k: v for k, v in gpu.QWEN_1_5B.items() if k != "architectures"})
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    assert 1.50e9 < sum(p.numel() for p in model.parameters()) < 1.58e9
