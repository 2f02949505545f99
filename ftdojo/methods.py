"""Fine-tuning methods: each a small class behind one Protocol, selected by name.

A method wraps the base model for training (and can continue from its own
checkpoint), names the parameters that train, saves a checkpoint, loads one
for evaluation, and says which base model a checkpoint was trained on
(provenance). Every checkpoint carries ``ftdojo_method.json``, so nothing
outside this module asks which method wrote it.

* ``lora`` — peft LoRA adapters on ``target_modules``; frozen weights stored
  in bf16 where training runs under bf16, adapters in fp32, fused forward.
* ``full`` — every parameter trains; the checkpoint is a whole model.
* ``freeze`` — only the last ``trainable_layers`` decoder layers (or the
  modules named in ``trainable_modules``) train; the checkpoint holds just
  those tensors.

Adding a method is one class here plus its entry in ``METHODS``.
"""

from __future__ import annotations

import copy
import json
import types
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ftdojo.errors import UnknownName
from ftdojo.messages import Check, TrainConfig

MARKER = "ftdojo_method.json"
"""Written into every checkpoint: which method wrote it, on which base model."""


class Method(Protocol):
    name: ClassVar[str]

    def prepare(self, model: Any, tc: TrainConfig, bf16: bool, init_from: str | None) -> Any:
        """The model to train: ``model`` (a private copy of the base) wrapped for this method, starting
        from ``init_from`` (this method's checkpoint of a parent experiment) when given."""
        ...

    def trainable(self, model: Any) -> list[tuple[str, Any]]:
        """The parameters that train, by name."""
        ...

    def save(self, model: Any, tok: Any, out: Path, base_model: str) -> None: ...

    def load(self, base: Any, checkpoint: Path) -> Any:
        """A model to generate with: the (shared, read-only) ``base`` plus the checkpoint."""
        ...

    def trained_on(self, checkpoint: Path) -> str | None:
        """The base model the checkpoint says it was trained on."""
        ...

    def checks(self, tc: TrainConfig, modules: set[str], layers: int) -> list[Check]:
        """Config checks of this method against the model's module names and layer count."""
        ...

    def trainable_share(self, tc: TrainConfig, layers: int) -> float:
        """Rough share of the model's parameters that train (memory estimate)."""
        ...


def _trainable(model: Any) -> list[tuple[str, Any]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _marker(out: Path, name: str, base_model: str) -> None:
    (out / MARKER).write_text(json.dumps({"method": name, "base_model": base_model}) + "\n")


def _marked_base(checkpoint: Path) -> str | None:
    p = checkpoint / MARKER
    return json.loads(p.read_text()).get("base_model") if p.exists() else None


def fuse_lora(model: Any) -> int:
    """Swap peft's LoRA forward for one fused ``base(x) + scaling * (x A^T) B^T`` (the adapter's
    product added inside one ``addmm``, scaling folded in): same math, fewer kernels and casts
    (bench/throughput.py: +12% tokens/s on the bundled model). Only for plain single-adapter
    LoRA without dropout; the weights stay in peft's modules, so saving is unchanged."""
    import torch
    from peft.tuners.lora import Linear as LoraLinear

    def forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        out = self.base_layer(x)
        h = torch.nn.functional.linear(x, self.lora_A["default"].weight)
        flat = torch.addmm(out.reshape(-1, out.shape[-1]), h.reshape(-1, h.shape[-1]),
                           self.lora_B["default"].weight.t(), alpha=self.scaling["default"])
        return flat.view(out.shape)

    n = 0
    for m in model.modules():
        if not isinstance(m, LoraLinear) or list(m.lora_A) != ["default"] or getattr(m, "merged", False):
            continue
        if getattr(m, "use_dora", {}).get("default", False) or not isinstance(m.lora_dropout["default"], torch.nn.Identity):
            continue
        m.forward = types.MethodType(forward, m)
        n += 1
    return n


class Lora:
    name: ClassVar[str] = "lora"

    def prepare(self, model: Any, tc: TrainConfig, bf16: bool, init_from: str | None) -> Any:
        import torch

        if bf16:
            model.to(torch.bfloat16)  # frozen weights in bf16 (autocast would cast them every step); adapters stay fp32
        if init_from:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, init_from, is_trainable=True)
        else:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(r=tc.lora_r, lora_alpha=tc.lora_alpha, lora_dropout=tc.lora_dropout,
                                                     target_modules=tc.target_modules, task_type="CAUSAL_LM"))
        for _, p in _trainable(model):
            p.data = p.data.float()
        fuse_lora(model)
        return model

    def trainable(self, model: Any) -> list[tuple[str, Any]]:
        return _trainable(model)

    def save(self, model: Any, tok: Any, out: Path, base_model: str) -> None:
        model.save_pretrained(out)  # peft: the adapter only
        _marker(out, self.name, base_model)

    def load(self, base: Any, checkpoint: Path) -> Any:
        from peft import PeftModel

        return PeftModel.from_pretrained(copy.deepcopy(base), str(checkpoint)).merge_and_unload().eval()

    def trained_on(self, checkpoint: Path) -> str | None:
        cfg = checkpoint / "adapter_config.json"
        return (json.loads(cfg.read_text()).get("base_model_name_or_path") or None) if cfg.exists() else None

    def checks(self, tc: TrainConfig, modules: set[str], layers: int) -> list[Check]:
        missing = sorted(set(tc.target_modules) - modules)
        return [Check(name="target_modules", status="fail" if missing else "pass",
                      reason=f"missing in the model: {missing}" if missing else f"all of {tc.target_modules} exist")]

    def trainable_share(self, tc: TrainConfig, layers: int) -> float:
        return 0.02


class Full:
    name: ClassVar[str] = "full"

    def prepare(self, model: Any, tc: TrainConfig, bf16: bool, init_from: str | None) -> Any:
        if init_from:
            model.load_state_dict(self.load(model, Path(init_from)).state_dict())
        return model

    def trainable(self, model: Any) -> list[tuple[str, Any]]:
        return _trainable(model)

    def save(self, model: Any, tok: Any, out: Path, base_model: str) -> None:
        model.save_pretrained(out)
        tok.save_pretrained(out)
        _marker(out, self.name, base_model)

    def load(self, base: Any, checkpoint: Path) -> Any:
        import torch
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32).eval()

    def trained_on(self, checkpoint: Path) -> str | None:
        return _marked_base(checkpoint)

    def checks(self, tc: TrainConfig, modules: set[str], layers: int) -> list[Check]:
        return []

    def trainable_share(self, tc: TrainConfig, layers: int) -> float:
        return 1.0


class Freeze:
    """Train the last ``trainable_layers`` decoder layers, or the modules named in ``trainable_modules``."""

    name: ClassVar[str] = "freeze"
    FILE: ClassVar[str] = "trainable.safetensors"

    @staticmethod
    def chosen(model: Any, tc: TrainConfig) -> set[str]:
        """Names of the parameters the config lets train."""
        import torch

        named = dict(model.named_modules())
        if tc.trainable_modules:
            prefixes = [n for n in named if n and n.rsplit(".", 1)[-1] in tc.trainable_modules]
        else:
            n_layers = model.config.num_hidden_layers
            stack = next(n for n, m in named.items() if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers)
            prefixes = [f"{stack}.{i}" for i in range(max(0, n_layers - tc.trainable_layers), n_layers)]
        return {n for n, _ in model.named_parameters() if any(n == p or n.startswith(p + ".") for p in prefixes)}

    def prepare(self, model: Any, tc: TrainConfig, bf16: bool, init_from: str | None) -> Any:
        if init_from:
            self._apply(model, Path(init_from))
        keep = self.chosen(model, tc)
        for n, p in model.named_parameters():
            p.requires_grad_(n in keep)
        return model

    def trainable(self, model: Any) -> list[tuple[str, Any]]:
        return _trainable(model)

    def save(self, model: Any, tok: Any, out: Path, base_model: str) -> None:
        from safetensors.torch import save_file

        save_file({n: p.detach().contiguous() for n, p in _trainable(model)}, str(out / self.FILE))
        _marker(out, self.name, base_model)

    def _apply(self, model: Any, checkpoint: Path) -> None:
        from safetensors.torch import load_file

        state = load_file(str(checkpoint / self.FILE))
        unknown = sorted(set(state) - {n for n, _ in model.named_parameters()})
        if unknown:
            raise ValueError(f"{checkpoint}: tensors {unknown[:3]} are not parameters of the base model")
        model.load_state_dict(state, strict=False)

    def load(self, base: Any, checkpoint: Path) -> Any:
        model = copy.deepcopy(base)
        self._apply(model, checkpoint)
        return model.eval()

    def trained_on(self, checkpoint: Path) -> str | None:
        return _marked_base(checkpoint)

    def checks(self, tc: TrainConfig, modules: set[str], layers: int) -> list[Check]:
        if tc.trainable_modules:
            missing = sorted(set(tc.trainable_modules) - modules)
            return [Check(name="trainable_modules", status="fail" if missing else "pass",
                          reason=f"missing in the model: {missing}" if missing else f"all of {tc.trainable_modules} exist")]
        ok = 1 <= tc.trainable_layers <= layers
        return [Check(name="trainable_layers", status="pass" if ok else "fail",
                      reason=f"trainable_layers={tc.trainable_layers} of {layers} layers (valid: 1..{layers})")]

    def trainable_share(self, tc: TrainConfig, layers: int) -> float:
        return 0.1 if tc.trainable_modules else min(1.0, tc.trainable_layers / max(1, layers))


METHODS: dict[str, Method] = {m.name: m for m in (Lora(), Full(), Freeze())}


def get(name: str) -> Method:
    if name not in METHODS:
        raise UnknownName("fine-tuning method", name, list(METHODS))
    return METHODS[name]


def of_checkpoint(checkpoint: str | Path) -> Method:
    """The method that wrote a checkpoint (by its marker; a checkpoint from before markers: a peft
    adapter is LoRA, anything else a whole model)."""
    path = Path(checkpoint)
    if (path / MARKER).exists():
        return get(json.loads((path / MARKER).read_text())["method"])
    return METHODS["lora"] if (path / "adapter_config.json").exists() else METHODS["full"]
