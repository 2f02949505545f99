"""The trainer on a tiny model: loss falls, adapter-only checkpoints reload to the same outputs."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import pytest
import torch

from ftdojo import datafiles, evaluation, methods, models, sft, training
from ftdojo.messages import LoopJob, Candidate, Example, PromptSpec, TrainConfig

INSTR = "Reply as 'Answer: <word>'."


def _examples(n: int = 64) -> list[Example]:
    rng = random.Random(0)
    words = ["red", "blue", "green", "gold"]
    return [Example(input=f"colour {i % 4}?", completion=f"Answer: {words[i % 4]}", source="s") for i in rng.sample(range(1000), n)]


def _fit(tmp_path: Path, tiny_model: str, precision: str = "auto", **train: object):
    data = tmp_path / "train.jsonl"
    datafiles.write_models(data, _examples())
    cfg = TrainConfig(**{"steps": 30, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, **train})
    return training.fit(
        plan_id="t", base_model=tiny_model, data_path=str(data), output_dir=str(tmp_path / "adapter"),
        train=cfg, prompt=PromptSpec(), instruction=INSTR, precision=precision,  # type: ignore[arg-type]
    )


def test_lora_loss_falls_and_checkpoint_is_adapter_only(tmp_path, tiny_model) -> None:
    r = _fit(tmp_path, tiny_model)
    assert r.status == "ok", r.error
    assert r.steps == 30 and r.tokens > 0 and r.tokens_per_s > 0
    first, last = sum(r.losses[:3]) / 3, sum(r.losses[-3:]) / 3
    assert last < 0.6 * first, (first, last)
    files = {p.name for p in Path(r.checkpoint).iterdir()}
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files


def test_continuing_an_adapter_starts_from_the_parents_loss(tmp_path, tiny_model) -> None:
    parent = _fit(tmp_path / "p", tiny_model)
    fresh = _fit(tmp_path / "f", tiny_model, steps=5, lr=1e-4, warmup_steps=0)
    data = tmp_path / "p" / "train.jsonl"
    cont = training.fit(
        plan_id="c", base_model=tiny_model, data_path=str(data), output_dir=str(tmp_path / "c" / "adapter"),
        train=TrainConfig(steps=5, batch_size=8, lr=1e-4, warmup_steps=0), prompt=PromptSpec(), instruction=INSTR,
        init_from=parent.checkpoint,
    )
    assert cont.status == "ok", cont.error
    tail = sum(parent.losses[-5:]) / 5
    assert max(cont.losses) < 0.5 * min(fresh.losses), (cont.losses, fresh.losses)
    assert sum(cont.losses) / 5 < 1.5 * tail, (cont.losses, tail)
    assert training.checkpoint_sha256(cont.checkpoint) != training.checkpoint_sha256(parent.checkpoint)


def test_checkpoint_reloads_to_same_outputs(tmp_path, tiny_model) -> None:
    """Evaluation applies the adapter unmerged on the shared base: the same logits as peft's merged model,
    the same generations each time, and the base is the plain model again afterwards."""
    from peft import PeftModel

    r = _fit(tmp_path, tiny_model)
    cand = Candidate(base_model=tiny_model, checkpoint=r.checkpoint)
    base, _ = models.load(tiny_model)
    merged = PeftModel.from_pretrained(base, r.checkpoint).merge_and_unload().eval()
    tok = models.tokenizer(tiny_model)
    prompt = sft.render_prompt(tok, PromptSpec(), INSTR, "colour 2?")
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        with evaluation.candidate_model(cand) as (applied, _):
            a = applied(**ids).logits
            out1 = evaluation.generate(applied, tok, [prompt], 10)
        b = merged(**ids).logits
        plain = models.load(tiny_model)[0](**ids).logits
        shared = models.shared_base(tiny_model)[0](**ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, plain, atol=1e-3)  # training changed the model
    assert torch.equal(shared, plain)  # ... and not the shared base
    with evaluation.candidate_model(cand) as (again, _):
        assert evaluation.generate(again, tok, [prompt], 10) == out1


def test_trained_model_learns_the_format(tmp_path, tiny_model) -> None:
    r = _fit(tmp_path, tiny_model, steps=200)
    with evaluation.candidate_model(Candidate(base_model=tiny_model, checkpoint=r.checkpoint)) as (model, tok):
        prompts = [sft.render_prompt(tok, PromptSpec(), INSTR, f"colour {i}?") for i in range(4)]
        outs = evaluation.generate(model, tok, prompts, 16)
    assert sum(o.startswith("Answer: ") for o in outs) >= 3, outs


def test_full_finetune_saves_full_weights(tmp_path, tiny_model) -> None:
    r = _fit(tmp_path, tiny_model, method="full", steps=5, lr=1e-3)
    assert r.status == "ok", r.error
    assert (Path(r.checkpoint) / "model.safetensors").exists()
    base, _ = models.load(tiny_model)
    with evaluation.candidate_model(Candidate(base_model=tiny_model, checkpoint=r.checkpoint)) as (tuned, _):
        changed = [n for (n, a), (_, b) in zip(tuned.named_parameters(), base.named_parameters(), strict=True) if not torch.equal(a, b)]
    assert len(changed) > 10  # full fine-tuning moved the weights, not just adapters


def test_bad_target_module_fails_cleanly(tmp_path, tiny_model) -> None:
    r = _fit(tmp_path, tiny_model, target_modules=["nonexistent_proj"], steps=2)
    assert r.status == "failed" and "nonexistent_proj" in (r.error or "")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precisions_both_train(tmp_path, tiny_model, precision) -> None:
    r = _fit(tmp_path, tiny_model, precision=precision, steps=10)
    assert r.status == "ok" and r.losses[-1] < r.losses[0]


def test_torchrun_launcher_runs_the_same_loop_with_two_gloo_ranks(tmp_path, tiny_model) -> None:
    """``torchrun -m ftdojo.training CONFIG`` (no Ray): 2 gloo ranks follow the in-process loss curve."""
    import json
    import os
    import subprocess
    import sys

    ref = _fit(tmp_path / "ref", tiny_model, steps=6, precision="fp32")
    job = LoopJob(train=TrainConfig(steps=6, batch_size=8, lr=3e-3, warmup_steps=2), prompt=PromptSpec(), base_model=tiny_model,
                  data_path=str(tmp_path / "ref" / "train.jsonl"), output_dir=str(tmp_path / "tr"), instruction=INSTR,
                  threads=1, precision="fp32")
    (tmp_path / "cfg.json").write_text(job.model_dump_json())
    # One elastic restart, as a torchrun user would allow: gloo's TCP transport can abort a rank
    # in a set-up/tear-down race on a loaded machine. A real bug fails the restarted group too.
    # A restart only works with the rendezvous store unshared (pytorch#135712): shared, the
    # restarted ranks dial the dead attempt's gloo addresses and the retry always fails.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--max-restarts", "1",
           "-m", "ftdojo.training", str(tmp_path / "cfg.json")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    # The children's own error lines, wherever they are in stderr (torchrun's summary comes last).
    keys = ("failed (exitcode", "terminate called", "what()", "Error")
    lines = "\n".join(x for x in done.stderr.splitlines() if any(k in x for k in keys))[-4000:]
    assert done.returncode == 0, lines or done.stderr[-2000:]
    if "failed (exitcode" in done.stderr:
        warnings.warn(f"torchrun restarted the worker group once; the restarted group passed:\n{lines}", stacklevel=1)
    losses = json.loads((tmp_path / "tr" / "metrics.json").read_text())["losses"]
    assert max(abs(a - b) for a, b in zip(losses, ref.losses, strict=True)) < 1e-3, (losses, ref.losses)
    assert (tmp_path / "tr" / "adapter_model.safetensors").exists()


def test_completion_only_head_computes_the_full_head_loss(tiny_model) -> None:
    """The LM head applied at label positions only gives HF's own causal-LM loss on a padded batch."""
    model, tok = models.load(tiny_model)
    enc = [sft.encode(tok, sft.render_prompt(tok, PromptSpec(), INSTR, e.input), e.completion, 256) for e in _examples(6)]
    batch = sft.collate(enc, tok.pad_token_id)
    loss_sum, count, _ = training._completion_lm(model)(**batch)
    with torch.no_grad():
        reference = model(**batch).loss  # mean over label tokens, shifted inside
    assert int(count) == sum(sum(x != sft.IGNORE for x in e.labels[1:]) for e in enc)
    assert float(loss_sum / count) == pytest.approx(float(reference), rel=1e-5)


def test_the_training_forward_builds_no_kv_cache(tiny_model, monkeypatch) -> None:
    """A fit never reads a KV cache, so its forward must not build one (the model's config says use_cache):
    a cache is work per layer, and it breaks compiled layers on every step (bench/RESULTS.md)."""
    from transformers import cache_utils

    model, tok = models.load(tiny_model)
    assert model.config.use_cache  # the default this guards against
    built = []
    init = cache_utils.DynamicCache.__init__
    monkeypatch.setattr(cache_utils.DynamicCache, "__init__", lambda self, *a, **k: (built.append(1), init(self, *a, **k))[1])
    enc = [sft.encode(tok, sft.render_prompt(tok, PromptSpec(), INSTR, e.input), e.completion, 256) for e in _examples(4)]
    loss_sum, count, _ = training._completion_lm(model)(**sft.collate(enc, tok.pad_token_id))
    assert built == [] and float(count) > 0 and torch.isfinite(loss_sum)
    with torch.no_grad():
        model(**sft.collate(enc, tok.pad_token_id), use_cache=True)
    assert built, "the probe must see a cache where one is asked for"


def test_compiled_layers_match_eager_and_are_kept_for_the_next_fit(tmp_path, tiny_model, monkeypatch) -> None:
    """The profile's compile_layers: a LoRA fit runs its decoder layers compiled, on eager's trajectory; the next
    fit in the process (a fresh LoRA, other batch shapes) reuses the compiled code instead of compiling again;
    the layers are eager again once a fit ends (evaluation decodes with a KV cache); a smoke train stays eager.
    ``aot_eager`` traces and caches as inductor does, without its C++ codegen (seconds, not a minute)."""
    from torch._dynamo.backends.debugging import aot_eager

    compiles: list[int] = []

    def counting(gm, example_inputs):
        compiles.append(len(gm.graph.nodes))
        return aot_eager(gm, example_inputs)

    torch._dynamo.reset()
    monkeypatch.setattr(training, "COMPILE_BACKEND", counting)
    data = tmp_path / "train.jsonl"
    datafiles.write_models(data, _examples())

    def fit(name: str, compile_layers: bool, smoke: bool = False, seed: int = 0):
        r = training.fit(plan_id=name, base_model=tiny_model, data_path=str(data), output_dir=str(tmp_path / name),
                         train=TrainConfig(steps=6, batch_size=8, lr=3e-3, warmup_steps=2, seed=seed), prompt=PromptSpec(),
                         instruction=INSTR, precision="fp32", compile_layers=compile_layers, smoke=smoke, save=False)
        assert r.status == "ok", r.error
        return r

    try:
        eager = fit("eager", False)
        assert not eager.compiled_layers and compiles == []
        first = fit("compiled", True)
        assert first.compiled_layers and compiles, "a compiled fit must compile its layers"
        assert first.losses == pytest.approx(eager.losses, rel=1e-4)
        n = len(compiles)
        second = fit("again", True, seed=1)
        assert second.compiled_layers and second.losses != first.losses  # other batches, so other shapes
        assert len(compiles) == n, "the next fit must reuse the compiled layers, not compile them again"
        base = models.shared_base(tiny_model, "fp32", "cpu")[0]
        assert all(layer._compiled_call_impl is None for layer in training.decoder_layers(base))
        smoke = fit("smoke", True, smoke=True)
        assert not smoke.compiled_layers and len(compiles) == n
    finally:
        torch._dynamo.reset()


def test_fused_lora_forward_matches_peft(tiny_model) -> None:
    from peft import LoraConfig, get_peft_model

    base, tok = models.load(tiny_model)
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], task_type="CAUSAL_LM"))
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in lora.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)  # a trained-looking adapter (B starts at zero)
    ids = tok(sft.render_prompt(tok, PromptSpec(), INSTR, "colour 3?"), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        reference = lora(**ids).logits
        assert methods.fuse_lora(lora) == 6  # 2 layers x 3 modules
        fused = lora(**ids).logits
    assert torch.allclose(reference, fused, atol=1e-5)


def _changed(base, trained) -> set[str]:
    b = dict(base.named_parameters())
    return {n for n, p in trained.named_parameters() if not torch.equal(p, b[n])}


def test_freeze_trains_only_the_last_layers_and_reloads_them(tmp_path, tiny_model) -> None:
    """The method seam: ``freeze`` is one class plus its registry entry. With one trainable layer of two,
    every tensor of the last decoder layer changes and nothing else does (embeddings, first layer, norm);
    the checkpoint holds just those tensors and evaluation loads them onto the base."""
    r = _fit(tmp_path, tiny_model, method="freeze", trainable_layers=1, lr=1e-2, steps=8)
    assert r.status == "ok", r.error
    assert r.losses[-1] < r.losses[0]
    ckpt = Path(r.checkpoint)
    assert {p.name for p in ckpt.iterdir()} >= {"trainable.safetensors", methods.MARKER}
    assert methods.of_checkpoint(ckpt).name == "freeze" and methods.of_checkpoint(ckpt).trained_on(ckpt) == tiny_model
    base, _ = models.load(tiny_model)
    shared = models.shared_base(tiny_model)[0]
    with methods.of_checkpoint(ckpt).applied(shared, ckpt) as trained:
        changed = _changed(base, trained)
    layer1 = {n for n, _ in base.named_parameters() if n.startswith("model.layers.1.")}
    assert changed == layer1 and layer1
    assert not _changed(base, shared)  # the shared base has its own tensors back


def test_freeze_of_named_modules_changes_only_those(tmp_path, tiny_model) -> None:
    r = _fit(tmp_path, tiny_model, method="freeze", trainable_modules=["o_proj"], lr=1e-2, steps=6)
    assert r.status == "ok", r.error
    base, _ = models.load(tiny_model)
    with methods.get("freeze").applied(models.shared_base(tiny_model)[0], Path(r.checkpoint)) as trained:
        changed = _changed(base, trained)
    assert changed == {"model.layers.0.self_attn.o_proj.weight", "model.layers.1.self_attn.o_proj.weight"}


def test_every_checkpoint_names_its_method_and_base(tmp_path, tiny_model) -> None:
    lora = _fit(tmp_path / "l", tiny_model, steps=2)
    full = _fit(tmp_path / "f", tiny_model, method="full", steps=2)
    assert [methods.of_checkpoint(c).name for c in (lora.checkpoint, full.checkpoint)] == ["lora", "full"]
    assert methods.of_checkpoint(full.checkpoint).trained_on(Path(full.checkpoint)) == tiny_model
    with pytest.raises(Exception, match="unknown fine-tuning method 'dora'"):
        methods.get("dora")


def _pristine(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


def test_one_base_in_memory_per_process_across_fits_and_evaluations(tmp_path, tiny_model) -> None:
    """LoRA, freeze and LoRA-continuation fits and evaluations of their checkpoints all wrap the process's one
    shared base: it is read from disk once per dtype, never copied (the same tensors, by storage), and after
    each fit and evaluation it is exactly the plain model again (no adapter modules, no peft state, frozen)."""
    models.release_base()
    loads = models.loads
    base = models.shared_base(tiny_model, "fp32")[0]
    before = _pristine(base)
    storages = {n: p.data_ptr() for n, p in base.named_parameters()}
    types_before = [type(m) for m in base.modules()]
    prompt = sft.render_prompt(models.tokenizer(tiny_model), PromptSpec(), INSTR, "colour 1?")
    runs = [_fit(tmp_path / "a", tiny_model, precision="fp32", steps=6),
            _fit(tmp_path / "b", tiny_model, precision="fp32", method="freeze", trainable_layers=1, steps=6)]
    runs.append(training.fit(plan_id="c", base_model=tiny_model, data_path=str(tmp_path / "a" / "train.jsonl"),
                             output_dir=str(tmp_path / "c" / "adapter"), train=TrainConfig(steps=4, batch_size=8, warmup_steps=0),
                             prompt=PromptSpec(), instruction=INSTR, precision="fp32", init_from=runs[0].checkpoint))
    for r in runs:
        assert r.status == "ok", r.error
        with evaluation.candidate_model(Candidate(base_model=tiny_model, checkpoint=r.checkpoint)) as (model, tok):
            assert evaluation.generate(model, tok, [prompt], 8)
    assert models.loads == loads + 1  # one read from disk for three fits and three evaluations
    assert models.shared_base(tiny_model, "fp32")[0] is base
    assert {n: p.data_ptr() for n, p in base.named_parameters()} == storages
    assert [type(m) for m in base.modules()] == types_before
    assert not hasattr(base, "peft_config") and not any(p.requires_grad for p in base.parameters())
    after = _pristine(base)
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_an_exception_inside_a_fit_leaves_the_shared_base_clean(tmp_path, tiny_model) -> None:
    models.release_base()
    base = models.shared_base(tiny_model, "fp32")[0]
    before = _pristine(base)
    with pytest.raises(RuntimeError, match="boom"):
        with methods.get("lora").training(tiny_model, TrainConfig(), "fp32", "cpu", None) as model:
            assert any("lora_A" in n for n, _ in model.named_parameters())
            raise RuntimeError("boom")
    assert not any("lora" in n for n, _ in base.named_parameters())
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())


def test_gradient_checkpointing_gives_the_same_losses(tmp_path, tiny_model) -> None:
    """Recomputing activations in the backward pass changes memory, not the math: the same loss curve
    (within float rounding) for LoRA and full fine-tuning; the shared base has checkpointing off afterwards."""
    for method in ("lora", "full"):
        plain = _fit(tmp_path / f"p{method}", tiny_model, precision="fp32", method=method, steps=6, lr=1e-3)
        ckpt = _fit(tmp_path / f"c{method}", tiny_model, precision="fp32", method=method, steps=6, lr=1e-3, gradient_checkpointing=True)
        assert plain.status == ckpt.status == "ok", (plain.error, ckpt.error)
        assert max(abs(a - b) for a, b in zip(plain.losses, ckpt.losses, strict=True)) < 1e-4, (plain.losses, ckpt.losses)
    assert not any(getattr(m, "gradient_checkpointing", False) for m in models.shared_base(tiny_model, "fp32")[0].modules())


def test_micro_batches_accumulate_to_the_same_step(tmp_path, tiny_model) -> None:
    """Gradient accumulation over micro-batches of 3, 3 and 2 rows is the one-pass step of 8 rows: the same
    loss curve within float rounding (LoRA and full, fp32), and the per-source fit sees every row."""
    for method in ("lora", "full"):
        whole = _fit(tmp_path / f"w{method}", tiny_model, precision="fp32", method=method, steps=6, lr=1e-3, batch_size=8)
        parts = _fit(tmp_path / f"m{method}", tiny_model, precision="fp32", method=method, steps=6, lr=1e-3, batch_size=8,
                     micro_batch_size=3)
        assert whole.status == parts.status == "ok", (whole.error, parts.error)
        assert max(abs(a - b) for a, b in zip(whole.losses, parts.losses, strict=True)) < 1e-4, (whole.losses, parts.losses)
        assert whole.tokens == parts.tokens and whole.source_losses.keys() == parts.source_losses.keys()
        assert all(abs(whole.source_losses[k] - parts.source_losses[k]) < 1e-4 for k in whole.source_losses)


def test_qlora_plugs_into_the_method_seam_and_says_what_it_needs(tmp_path, tiny_model) -> None:
    """Without CUDA a QLoRA fit fails with the reason (the validator turns the same reason into a failed check)."""
    q = methods.get("qlora")
    assert q.unavailable("cpu") and "CUDA" in q.unavailable("cpu")
    r = _fit(tmp_path, tiny_model, method="qlora", steps=2)
    assert r.status == "failed" and "needs a CUDA GPU" in (r.error or ""), r.error


@pytest.mark.skipif(not torch.cuda.is_available(), reason="QLoRA needs a CUDA GPU and bitsandbytes; this machine has no CUDA")
def test_qlora_trains_on_a_gpu(tmp_path, tiny_model) -> None:
    pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (pip install 'ftdojo[gpu]')")
    data = tmp_path / "train.jsonl"
    datafiles.write_models(data, _examples())
    r = training.fit(plan_id="q", base_model=tiny_model, data_path=str(data), output_dir=str(tmp_path / "q"),
                     train=TrainConfig(method="qlora", steps=20, batch_size=8, lr=3e-3, warmup_steps=2), prompt=PromptSpec(),
                     instruction=INSTR, use_gpu=True, precision="bf16")
    assert r.status == "ok", r.error
    assert r.losses[-1] < r.losses[0] and methods.of_checkpoint(r.checkpoint).name == "qlora"
