"""Evaluation through an OpenAI-compatible inference server (the ``server`` evaluation backend).

The evaluating process (the run's environment for dev, the referee for test) starts the server as a child on
its own node, so it runs inside the run's reservation and sees the run's devices (``CUDA_VISIBLE_DEVICES`` is
inherited); it waits for ``GET /health``, sends every prompt to ``POST /v1/completions`` as the same rendered
chat prompt the local backend decodes (so greedy answers can match token for token), ``concurrency`` at a
time, with the task's generation settings, and scores the answers with the task's metric
(``evaluation.score``). The server is stopped however the evaluation ends; a guard process kills it if the
evaluating process dies without stopping it (a killed actor leaves no server behind).

* ``transformers`` — ``transformers serve`` (CPU or GPU): one server per candidate, for the base model or a
  temporary checkpoint with the candidate's adapter merged in; it ignores ``n``, so each sample is its own
  request with its own seed.
* ``vllm`` — GPU: the base model served once per process with LoRA enabled (tensor parallel over the run's
  GPUs); a LoRA candidate is loaded by name (``/v1/load_lora_adapter``) and unloaded after, never merged; full
  and freeze checkpoints get a server of their own. ``n`` samples come from one request.
* ``command`` — any server (SGLang, TGI, a test's scripted server): an argv with ``{model}``, ``{host}`` and
  ``{port}``; candidates are served like ``transformers``.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ftdojo import models
from ftdojo.errors import EvalServerFailed
from ftdojo.messages import Candidate, EvalBackend, EvalReport
from ftdojo.tasking import Item, TaskSpec

HOST = "127.0.0.1"

# Runs as the server's parent: starts the server in this process group, and kills the group when the
# evaluating process (its own parent) is gone, so no server outlives a killed actor.
_GUARD = """
import os, signal, subprocess, sys, time
parent = int(sys.argv[1])
child = subprocess.Popen(sys.argv[2:])
def stop(*_):
    os.killpg(0, signal.SIGKILL)
signal.signal(signal.SIGTERM, stop)
while child.poll() is None:
    if os.getppid() != parent:
        stop()
    time.sleep(0.5)
sys.exit(child.returncode)
"""


def free_port(host: str = HOST) -> int:
    """A port free on this node now (the server binds it a moment later)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def gpu_count() -> int:
    """The run's GPUs as this process sees them (Ray sets ``CUDA_VISIBLE_DEVICES`` to the reservation's)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def server_command(spec: EvalBackend, model: str, port: int, device: str = "cpu", dtype: str = "fp32",
                   gpus: int = 0, served_name: str | None = None) -> list[str]:
    """The server's argv for serving ``model`` (a local folder) on ``HOST:port``."""
    torch_dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(dtype, "auto")
    if spec.server == "transformers":
        argv = [sys.executable, "-m", "transformers.cli.transformers", "serve", model, "--host", HOST, "--port", str(port),
                "--device", "cuda" if device.startswith("cuda") else "cpu", "--dtype", torch_dtype, "--log-level", "warning",
                "--continuous-batching"]  # paged attention, requests batched: 4.9x the throughput of one generate per request
    elif spec.server == "vllm":
        argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", served_name or model,
                "--host", HOST, "--port", str(port), "--dtype", torch_dtype, "--tensor-parallel-size", str(max(1, gpus)),
                "--gpu-memory-utilization", str(spec.gpu_memory_utilization), "--seed", "0", "--enable-lora",
                "--max-lora-rank", str(spec.max_lora_rank), "--max-loras", "2"]  # request logging is off by default (vLLM 0.11 removed --disable-log-requests)
    else:
        argv = [a.format(model=model, host=HOST, port=port) for a in spec.command]
    return argv + list(spec.extra_args)


# What each server needs in the evaluating process's Python, and how to get it.
NEEDS = {
    "transformers": (("fastapi", "uvicorn", "openai"), "pip install 'ftdojo[serve]'"),
    "vllm": (("vllm", "openai"), "pip install 'ftdojo[vllm]' on the GPU nodes"),
    "command": (("openai",), "pip install openai"),
}


def preflight(spec: EvalBackend, device: str = "cpu") -> str | None:
    """Why ``spec`` cannot serve here (a missing package, vLLM without a GPU, a command not found), or None.
    Asked where the evaluation will run, when the run starts: before any compute is spent."""
    if spec.backend != "server":
        return None
    import importlib.util

    mods, fix = NEEDS[spec.server]
    missing = [m for m in mods if importlib.util.find_spec(m) is None]
    if missing:
        return f"evaluation.server {spec.server!r} needs {', '.join(missing)}, not installed here: {fix}"
    if spec.server == "vllm" and not device.startswith("cuda"):
        return "evaluation.server 'vllm' needs a GPU run (resources.gpus >= 1); on a CPU use server: transformers"
    if spec.server == "command" and shutil.which(spec.command[0]) is None and not Path(spec.command[0]).is_file():
        return f"evaluation.command: {spec.command[0]!r} not found on this node's PATH"
    return None


def server_env(spec: EvalBackend) -> dict[str, str]:
    env = dict(os.environ)
    if spec.server == "vllm":
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"  # adapters loaded and unloaded per candidate
    return env


class Server:
    """One inference server process (behind its guard), its log, and its address."""

    def __init__(self, argv: list[str], port: int, name: str, env: dict[str, str] | None = None, label: str = "server") -> None:
        self.argv, self.port, self.name, self.label = argv, port, name, label
        self.root = f"http://{HOST}:{port}"
        fd, log_name = tempfile.mkstemp(prefix="ftdojo-server-", suffix=".log")
        self.log_path = Path(log_name)
        try:
            with os.fdopen(fd, "wb") as log:
                self.proc = subprocess.Popen([sys.executable, "-c", _GUARD, str(os.getpid()), *argv], stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        except BaseException:
            self.log_path.unlink(missing_ok=True)
            raise

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(x.strip() for x in text[-lines:])[-600:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive():
                raise EvalServerFailed(f"{self.label} exited with code {self.proc.returncode} before it was healthy "
                                       f"({' '.join(self.argv[:4])} ...): {self.log_tail() or 'no output'}")
            try:
                with urllib.request.urlopen(f"{self.root}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise EvalServerFailed(f"{self.label} not healthy after {timeout_s:g} s (raise evaluation.startup_timeout_s "
                                       f"in the profile if the model is large): {self.log_tail() or 'no output'}")
            time.sleep(0.25)

    def post(self, path: str, body: dict[str, Any], timeout_s: float = 60.0) -> None:
        req = urllib.request.Request(f"{self.root}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s):
                pass
        except urllib.error.HTTPError as e:
            raise EvalServerFailed(f"{self.label} refused {path}: HTTP {e.code} {e.read()[:300].decode(errors='replace')}") from None
        except (urllib.error.URLError, OSError) as e:
            raise EvalServerFailed(f"{self.label} did not answer {path}: {e}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the server's own children, if any are left
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log_path.unlink(missing_ok=True)


def start(spec: EvalBackend, model: str, device: str, dtype: str, served_name: str | None = None) -> Server:
    """Start a server for ``model`` and wait until it is healthy (or raise ``EvalServerFailed``, server stopped)."""
    port = free_port()
    argv = server_command(spec, model, port, device, dtype, gpu_count() if device.startswith("cuda") else 0, served_name)
    server = Server(argv, port, served_name or model, server_env(spec), label=f"{spec.server} server")
    try:
        server.wait_healthy(spec.startup_timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


_VLLM: dict[tuple[str, str, str], Server] = {}
_VLLM_LOCK = threading.Lock()


def _vllm_base(spec: EvalBackend, base: str, device: str, dtype: str) -> Server:
    """vLLM serving the base model, once per process (stopped when the process exits or the server died)."""
    key = (base, device, dtype)
    with _VLLM_LOCK:
        server = _VLLM.get(key)
        if server is None or not server.alive():
            for old in _VLLM.values():
                old.stop()
            _VLLM.clear()
            server = _VLLM[key] = start(spec, base, device, dtype, served_name="base")
        return server


@atexit.register
def stop_all() -> None:
    """Stop the process's long-lived servers (vLLM's base)."""
    with _VLLM_LOCK:
        for server in _VLLM.values():
            server.stop()
        _VLLM.clear()


def _merged_checkpoint(candidate: Candidate, dtype: str, out: Path) -> Path:
    """The candidate as a plain model folder: a full checkpoint as it is; an adapter or frozen layers applied
    to a private copy of the base (never the process's shared one) and saved."""
    from ftdojo import methods

    ckpt = Path(candidate.checkpoint or "")
    method = methods.of_checkpoint(str(ckpt))
    if method.name == "full":
        return ckpt
    model, tok = models.load(candidate.base_model, dtype=models.torch_dtype(dtype if dtype != "nf4" else "bf16"))
    if method.name in ("lora", "qlora"):
        from peft import PeftModel

        PeftModel.from_pretrained(model, str(ckpt)).merge_and_unload().save_pretrained(out)
    else:
        with method.applied(model, ckpt) as applied:
            applied.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@contextlib.contextmanager
def served(candidate: Candidate, spec: EvalBackend, device: str, dtype: str) -> Iterator[tuple[Server, str]]:
    """A healthy server and the model name it answers for ``candidate`` under; stopped (or the adapter
    unloaded) when the block ends, however it ends."""
    from ftdojo import methods

    base = models.resolve(candidate.base_model)
    if spec.server == "vllm" and (candidate.checkpoint is None or methods.of_checkpoint(candidate.checkpoint).name in ("lora", "qlora")):
        server = _vllm_base(spec, base, device, dtype)
        if candidate.checkpoint is None:
            yield server, server.name
            return
        name = "cand-" + hashlib.sha256(str(Path(candidate.checkpoint).resolve()).encode()).hexdigest()[:12]
        server.post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(Path(candidate.checkpoint).resolve())})
        try:
            yield server, name
        finally:
            if server.alive():
                with contextlib.suppress(EvalServerFailed):
                    server.post("/v1/unload_lora_adapter", {"lora_name": name})
        return
    tmp = Path(tempfile.mkdtemp(prefix="ftdojo-candidate-"))
    try:
        model = base if candidate.checkpoint is None else str(_merged_checkpoint(candidate, dtype, tmp))
        server = start(spec, model, device, dtype)
        try:
            yield server, server.name
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def requests_for(task: TaskSpec, prompts: list[str], spec: EvalBackend) -> list[dict[str, Any]]:
    """The completion requests of an evaluation, item-major: one per sample where the server ignores ``n``
    (each with its own seed), else one per item with ``n``. Greedy when the task's temperature is 0."""
    n = max(1, task.samples)
    base: dict[str, Any] = {"max_tokens": task.max_new_tokens, "temperature": float(task.temperature)}
    if task.temperature > 0:
        base["top_p"] = float(task.top_p)
    out = []
    for i, p in enumerate(prompts):
        if n > 1 and spec.server == "vllm":
            out.append({**base, "prompt": p, "n": n, "seed": task.seed * 1_000_003 + i})
        else:
            out += [{**base, "prompt": p, **({"seed": task.seed * 1_000_003 + i * n + j} if task.temperature > 0 else {})} for j in range(n)]
    return out


def complete(server: Server, name: str, requests: list[dict[str, Any]], spec: EvalBackend) -> list[str]:
    """Every request's completion texts, in order, ``concurrency`` at a time; a server that dies or refuses
    fails the evaluation with ``EvalServerFailed``."""
    import openai

    client = openai.OpenAI(base_url=f"{server.root}/v1", api_key="EMPTY", max_retries=0, timeout=spec.request_timeout_s)

    def one(body: dict[str, Any]) -> list[str]:
        try:
            r = client.completions.create(model=name, **body)
        except openai.APIStatusError as e:
            raise EvalServerFailed(f"{server.label} refused a completion: HTTP {e.status_code} {str(e)[:300]}") from None
        except openai.APIError as e:
            with contextlib.suppress(subprocess.TimeoutExpired):  # a dead server's guard notices within a second
                server.proc.wait(timeout=3)
            if not server.alive():
                raise EvalServerFailed(f"{server.label} died during the evaluation (exit code {server.proc.returncode}): "
                                       f"{server.log_tail() or 'no output'}") from None
            raise EvalServerFailed(f"{server.label} did not answer a completion: {type(e).__name__}: {e}") from None
        texts = [c.text for c in sorted(r.choices, key=lambda c: c.index)]
        if len(texts) != body.get("n", 1):
            raise EvalServerFailed(f"{server.label} returned {len(texts)} choices for n={body.get('n', 1)}")
        return texts

    with ThreadPoolExecutor(max_workers=spec.concurrency) as pool:
        return [t for texts in pool.map(one, requests) for t in texts]


def evaluate(task: TaskSpec, items: list[Item], candidate: Candidate, split: str, spec: EvalBackend,
             device: str = "cpu", dtype: str = "fp32") -> EvalReport:
    """``evaluation.evaluate`` through a server: the same prompts, the same scoring."""
    from ftdojo import evaluation, sft

    t0 = time.perf_counter()
    tok = models.tokenizer(candidate.base_model)
    prompts = [sft.render_prompt(tok, candidate.prompt, task.instruction, i["input"]) for i in items]
    with served(candidate, spec, device, dtype) as (server, name):
        outputs = complete(server, name, requests_for(task, prompts, spec), spec)
    return evaluation.score(task, items, outputs, split, time.perf_counter() - t0)
