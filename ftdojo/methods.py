"""Fine-tuning methods: each a small class behind one Protocol, selected by name.

A method builds the model a fit trains (``training``) and the model an evaluation generates with
(``applied``), names the parameters that train, saves a checkpoint, and says which base model a
checkpoint was trained on (provenance). Every checkpoint carries ``ftdojo_method.json``, so nothing
outside this module asks which method wrote it.

Where it can, a method wraps the process's one shared base model (``models.shared_base``: the
profile's dtype, on the run's device) and restores it on exit, so neither a fit nor an evaluation
copies the base:

* ``lora`` — peft LoRA adapters on ``target_modules`` (fp32, fused forward) over the shared base
  (bf16 where training runs under bf16); evaluation loads the adapter onto the base unmerged
  (bench: the same generation speed as a merged copy on the bundled model) and unloads it after.
* ``qlora`` — LoRA over a 4-bit NF4 base (``bitsandbytes``, CUDA only); its adapter evaluates like
  LoRA's, on the run's evaluation base.
* ``full`` — every parameter trains: a private fp32 model read from disk (the shared base is not
  loaded); across several workers the profile's ``sharding: fsdp`` shards it (``ftdojo.training``).
* ``freeze`` — only the last ``trainable_layers`` decoder layers (or the modules named in
  ``trainable_modules``) train: their tensors are swapped for fp32 trainable copies inside the shared
  base and swapped back after; the checkpoint holds just those tensors.

Adding a method is one class here plus its entry in ``METHODS``.
"""

from __future__ import annotations

import importlib.util
import json
import types
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ftdojo import models
from ftdojo.errors import UnknownName
from ftdojo.messages import Check, TrainConfig

MARKER = "ftdojo_method.json"
"""Written into every checkpoint: which method wrote it, on which base model."""


class Method(Protocol):
    name: ClassVar[str]

    def training(self, spec: str, tc: TrainConfig, dtype: str, device: str, init_from: str | None) -> AbstractContextManager[Any]:
        """The model to train, in train mode: the shared base (``dtype`` on ``device``) wrapped for this method,
        or a private model, starting from ``init_from`` (this method's checkpoint of a parent experiment) when
        given; on exit the shared base is as it was."""
        ...

    def trainable(self, model: Any) -> list[tuple[str, Any]]:
        """The parameters that train, by name."""
        ...

    def save(self, model: Any, tok: Any, out: Path, base_model: str, state: dict[str, Any] | None = None) -> None:
        """Write the checkpoint; ``state``: the trained model's full state dict where the model is sharded."""
        ...

    def applied(self, base: Any, checkpoint: Path) -> AbstractContextManager[Any]:
        """A model to generate with: the (shared) ``base`` plus the checkpoint; on exit the base is as it was."""
        ...

    def trained_on(self, checkpoint: Path) -> str | None:
        """The base model the checkpoint says it was trained on."""
        ...

    def checks(self, tc: TrainConfig, modules: set[str], layers: int) -> list[Check]:
        """Config checks of this method against the model's module names and layer count."""
        ...

    def unavailable(self, device_type: str) -> str | None:
        """Why the method cannot train on ``device_type`` here (a missing package, no CUDA), or None."""
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


def _unload(peft_model: Any, base: Any) -> None:
    """Take every adapter off the shared base (the LoRA layers replaced by their base layers, unmerged)."""
    peft_model.unload()
    for attr in ("peft_config", "_hf_peft_config_loaded"):
        if attr in base.__dict__:
            delattr(base, attr)
    base.requires_grad_(False)
    base.eval()


def _swap(model: Any, replace: dict[int, Any]) -> list[tuple[Any, str, Any]]:
    """Put ``replace[id(p)]`` in place of each parameter ``p`` wherever a module holds it (tied weights
    included); return what undoes it."""
    undo = []
    for m in model.modules():
        for k, p in list(m._parameters.items()):
            if p is not None and id(p) in replace:
                undo.append((m, k, p))
                m._parameters[k] = replace[id(p)]
    return undo


def _unswap(undo: list[tuple[Any, str, Any]]) -> None:
    for m, k, p in reversed(undo):
        m._parameters[k] = p


class Lora:
    name: ClassVar[str] = "lora"

    def _base(self, spec: str, tc: TrainConfig, dtype: str, device: str) -> Any:
        return models.shared_base(spec, dtype, device)[0]

    @contextmanager
    def training(self, spec: str, tc: TrainConfig, dtype: str, device: str, init_from: str | None) -> Iterator[Any]:
        base = self._base(spec, tc, dtype, device)
        with models.base_lock:
            if init_from:
                from peft import PeftModel

                model = PeftModel.from_pretrained(base, init_from, is_trainable=True)
            else:
                from peft import LoraConfig, get_peft_model

                model = get_peft_model(base, LoraConfig(r=tc.lora_r, lora_alpha=tc.lora_alpha, lora_dropout=tc.lora_dropout,
                                                        target_modules=tc.target_modules, task_type="CAUSAL_LM"))
            try:
                for _, p in _trainable(model):
                    p.data = p.data.float()  # adapters in fp32 over a bf16 base (autocast computes in bf16)
                fuse_lora(model)
                model.train()
                yield model
            finally:
                _unload(model, base)

    def trainable(self, model: Any) -> list[tuple[str, Any]]:
        return _trainable(model)

    def save(self, model: Any, tok: Any, out: Path, base_model: str, state: dict[str, Any] | None = None) -> None:
        model.save_pretrained(out)  # peft: the adapter only
        _marker(out, self.name, base_model)

    @contextmanager
    def applied(self, base: Any, checkpoint: Path) -> Iterator[Any]:
        from peft import PeftModel

        with models.base_lock:
            model = PeftModel.from_pretrained(base, str(checkpoint)).eval()
            try:
                yield model
            finally:
                _unload(model, base)

    def trained_on(self, checkpoint: Path) -> str | None:
        cfg = checkpoint / "adapter_config.json"
        return (json.loads(cfg.read_text()).get("base_model_name_or_path") or None) if cfg.exists() else None

    def checks(self, tc: TrainConfig, modules: set[str], layers: int) -> list[Check]:
        missing = sorted(set(tc.target_modules) - modules)
        return [Check(name="target_modules", status="fail" if missing else "pass",
                      reason=f"missing in the model: {missing}" if missing else f"all of {tc.target_modules} exist")]

    def unavailable(self, device_type: str) -> str | None:
        return None

    def trainable_share(self, tc: TrainConfig, layers: int) -> float:
        return 0.02


class QLora(Lora):
    """LoRA over the base quantised to 4-bit NF4 with ``bitsandbytes`` (double quantisation, bf16 compute):
    the process's shared base is that quantised model. Needs CUDA and ``pip install bitsandbytes``."""

    name: ClassVar[str] = "qlora"

    def _base(self, spec: str, tc: TrainConfig, dtype: str, device: str) -> Any:
        if (why := self.unavailable("cuda" if device.startswith("cuda") else device)) is not None:
            raise RuntimeError(why)
        from peft import prepare_model_for_kbit_training

        base = models.shared_base(spec, "nf4", device)[0]
        if not getattr(base, "_ftdojo_kbit_ready", False):  # norms to fp32, input grads: once per loaded base
            prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
            base._ftdojo_kbit_ready = True
        return base

    def unavailable(self, device_type: str) -> str | None:
        if device_type != "cuda":
            return "qlora quantises the base with bitsandbytes, which needs a CUDA GPU; use method 'lora' on this device"
        if importlib.util.find_spec("bitsandbytes") is None:
            return "qlora needs bitsandbytes: pip install 'ftdojo[gpu]' (or bitsandbytes) on the GPU nodes"
        return None


class Full:
    name: ClassVar[str] = "full"

    @contextmanager
    def training(self, spec: str, tc: TrainConfig, dtype: str, device: str, init_from: str | None) -> Iterator[Any]:
        model, _ = models.load(init_from or spec, device=device)  # fp32 master weights, private (they all train)
        model.train()
        yield model

    def trainable(self, model: Any) -> list[tuple[str, Any]]:
        return _trainable(model)

    def save(self, model: Any, tok: Any, out: Path, base_model: str, state: dict[str, Any] | None = None) -> None:
        model.save_pretrained(out, state_dict=state)
        tok.save_pretrained(out)
        _marker(out, self.name, base_model)

    @contextmanager
    def applied(self, base: Any, checkpoint: Path) -> Iterator[Any]:
        model, _ = models.load(str(checkpoint), dtype=base.dtype, device=str(base.device))
        yield model

    def trained_on(self, checkpoint: Path) -> str | None:
        return _marked_base(checkpoint)

    def checks(self, tc: TrainConfig, modules: set[str], layers: int) -> list[Check]:
        return []

    def unavailable(self, device_type: str) -> str | None:
        return None

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

    def _state(self, model: Any, checkpoint: Path) -> dict[str, Any]:
        from safetensors.torch import load_file

        state = load_file(str(checkpoint / self.FILE))
        unknown = sorted(set(state) - {n for n, _ in model.named_parameters()})
        if unknown:
            raise ValueError(f"{checkpoint}: tensors {unknown[:3]} are not parameters of the base model")
        return state

    @contextmanager
    def training(self, spec: str, tc: TrainConfig, dtype: str, device: str, init_from: str | None) -> Iterator[Any]:
        import torch

        base = models.shared_base(spec, dtype, device)[0]
        with models.base_lock:
            params = dict(base.named_parameters())
            state = self._state(base, Path(init_from)) if init_from else {}
            keep = self.chosen(base, tc)
            fresh = {id(params[n]): torch.nn.Parameter(state.get(n, params[n].detach()).to(params[n].device, torch.float32).clone())
                     for n in keep}  # fp32 master copies of the trained tensors only
            undo = _swap(base, fresh)
            base.train()
            try:
                yield base
            finally:
                _unswap(undo)
                base.eval()

    def trainable(self, model: Any) -> list[tuple[str, Any]]:
        return _trainable(model)

    def save(self, model: Any, tok: Any, out: Path, base_model: str, state: dict[str, Any] | None = None) -> None:
        from safetensors.torch import save_file

        save_file({n: p.detach().contiguous() for n, p in _trainable(model)}, str(out / self.FILE))
        _marker(out, self.name, base_model)

    @contextmanager
    def applied(self, base: Any, checkpoint: Path) -> Iterator[Any]:
        import torch

        with models.base_lock:
            params = dict(base.named_parameters())
            state = self._state(base, checkpoint)
            undo = _swap(base, {id(params[n]): torch.nn.Parameter(t.to(params[n].device, params[n].dtype), requires_grad=False)
                                for n, t in state.items()})
            try:
                yield base
            finally:
                _unswap(undo)

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

    def unavailable(self, device_type: str) -> str | None:
        return None

    def trainable_share(self, tc: TrainConfig, layers: int) -> float:
        return 0.1 if tc.trainable_modules else min(1.0, tc.trainable_layers / max(1, layers))


METHODS: dict[str, Method] = {m.name: m for m in (Lora(), QLora(), Full(), Freeze())}


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
