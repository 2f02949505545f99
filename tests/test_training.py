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
    from peft import PeftModel

    r = _fit(tmp_path, tiny_model)
    cand = Candidate(base_model=tiny_model, checkpoint=r.checkpoint)
    merged, tok = evaluation.load_candidate(cand)
    base, _ = models.load(tiny_model)
    unmerged = PeftModel.from_pretrained(base, r.checkpoint).eval()
    prompt = sft.render_prompt(tok, PromptSpec(), INSTR, "colour 2?")
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        a, b = merged(**ids).logits, unmerged(**ids).logits
        plain = models.load(tiny_model)[0](**ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, plain, atol=1e-3)  # training changed the model
    again, _ = evaluation.load_candidate(cand)
    out1 = evaluation.generate(merged, tok, [prompt], 10)
    out2 = evaluation.generate(again, tok, [prompt], 10)
    assert out1 == out2


def test_trained_model_learns_the_format(tmp_path, tiny_model) -> None:
    r = _fit(tmp_path, tiny_model, steps=200)
    model, tok = evaluation.load_candidate(Candidate(base_model=tiny_model, checkpoint=r.checkpoint))
    prompts = [sft.render_prompt(tok, PromptSpec(), INSTR, f"colour {i}?") for i in range(4)]
    outs = evaluation.generate(model, tok, prompts, 16)
    assert sum(o.startswith("Answer: ") for o in outs) >= 3, outs


def test_full_finetune_saves_full_weights(tmp_path, tiny_model) -> None:
    r = _fit(tmp_path, tiny_model, method="full", steps=5, lr=1e-3)
    assert r.status == "ok", r.error
    assert (Path(r.checkpoint) / "model.safetensors").exists()
    tuned, _ = evaluation.load_candidate(Candidate(base_model=tiny_model, checkpoint=r.checkpoint))
    base, _ = models.load(tiny_model)
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
    trained = methods.of_checkpoint(ckpt).load(base, ckpt)
    layer1 = {n for n, _ in base.named_parameters() if n.startswith("model.layers.1.")}
    assert _changed(base, trained) == layer1 and layer1


def test_freeze_of_named_modules_changes_only_those(tmp_path, tiny_model) -> None:
    r = _fit(tmp_path, tiny_model, method="freeze", trainable_modules=["o_proj"], lr=1e-2, steps=6)
    assert r.status == "ok", r.error
    base, _ = models.load(tiny_model)
    trained = methods.get("freeze").load(base, Path(r.checkpoint))
    assert _changed(base, trained) == {"model.layers.0.self_attn.o_proj.weight", "model.layers.1.self_attn.o_proj.weight"}


def test_every_checkpoint_names_its_method_and_base(tmp_path, tiny_model) -> None:
    lora = _fit(tmp_path / "l", tiny_model, steps=2)
    full = _fit(tmp_path / "f", tiny_model, method="full", steps=2)
    assert [methods.of_checkpoint(c).name for c in (lora.checkpoint, full.checkpoint)] == ["lora", "full"]
    assert methods.of_checkpoint(full.checkpoint).trained_on(Path(full.checkpoint)) == tiny_model
    with pytest.raises(Exception, match="unknown fine-tuning method 'qlora'"):
        methods.get("qlora")
