"""Evaluation throughput: the local backend (in-process batched greedy decoding) against the server backend
(``transformers serve`` with continuous batching on this CPU; vLLM where a GPU is lent), side by side in one
run, on the same dev items of a built-in task, with the answers compared one by one.

    .venv/bin/python bench/serving.py                       # bundled model, math-linear, 64 dev items
    .venv/bin/python bench/serving.py --n 32 --concurrency 16 --json out.json
    .venv/bin/python bench/serving.py --adapter-steps 40   # a trained LoRA candidate (merged for the server)

Reported: items/s of each backend, the ratio, how many answers are identical, and the server's start-up
time (counted in its wall: a candidate's evaluation pays it; vLLM's base server is paid once per process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def _adapter(cand, task, steps: int):
    """A LoRA candidate: ``steps`` of training on the task's drill source, as an agent's first fit would."""
    import asyncio
    import tempfile

    from actors.curator import Curator
    from ftdojo import training
    from ftdojo.dojo import DojoEnv, EnvHandle
    from ftdojo.messages import Budget, DataRecipe, Plan, PromptSpec, SourceMapping, TrainConfig

    work = Path(tempfile.mkdtemp(prefix="ftdojo-serving-bench-"))
    env = DojoEnv(task.id, cand.base_model, Budget())
    mapping = SourceMapping(source="algebra_drills", prompt="Solve for x: {equation}", answer="{solution}")
    tc = TrainConfig(steps=steps, batch_size=8, lr=2e-3)
    plan = Plan(plan_id="serving", hypothesis="serving bench", recipe=DataRecipe(sources=[mapping]), train=tc)
    data = asyncio.run(Curator(EnvHandle(env), str(work)).curate(plan))
    r = training.fit(plan_id="serving", base_model=cand.base_model, data_path=data.path, output_dir=str(work / "fit"), train=tc,
                     prompt=PromptSpec(), instruction=env.describe().instruction)
    assert r.status == "ok", r.error
    return cand.model_copy(update={"checkpoint": r.checkpoint})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--task", default="math-linear")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--server", default="transformers", choices=["transformers", "vllm"])
    ap.add_argument("--adapter-steps", type=int, default=0,
                    help="evaluate a LoRA candidate trained this many steps (0: the base model); the server gets it merged")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)

    import torch

    from ftdojo import datafiles, evaluation, models, repository, serving, sft
    from ftdojo.messages import Candidate, EvalBackend
    from ftdojo.registry import get_domain, get_task

    task = get_task(a.task)
    domain = get_domain(task.domain)
    repository.materialize(domain)
    items = datafiles.read_items(repository.dev_path(task, domain))[: a.n]
    device, dtype = evaluation.setting(torch.cuda.is_available(), "auto")
    cand = Candidate(base_model=models.BUNDLED if a.model == "smollm2-135m-instruct" else a.model)
    if a.adapter_steps:
        cand = _adapter(cand, task, a.adapter_steps)
    spec = EvalBackend(backend="server", server=a.server, concurrency=a.concurrency)
    tok = models.tokenizer(cand.base_model)
    prompts = [sft.render_prompt(tok, cand.prompt, task.instruction, i["input"]) for i in items]

    with evaluation.candidate_model(cand, device, dtype) as (model, _):  # the adapter unmerged on the shared base
        t0 = time.perf_counter()
        local = evaluation.generate(model, tok, prompts, task.max_new_tokens)
        local_s = time.perf_counter() - t0
    models.release_base()

    t0 = time.perf_counter()
    with serving.served(cand, spec, device, dtype) as (server, name):
        startup_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        served = serving.complete(server, name, serving.requests_for(task, prompts, spec), spec)
        generate_s = time.perf_counter() - t1
    server_s = time.perf_counter() - t0

    local_scores = evaluation.score(task, items, local, "dev").item_scores
    served_scores = evaluation.score(task, items, served, "dev").item_scores
    out = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "device": device, "dtype": dtype},
        "model": a.model, "adapter_steps": a.adapter_steps, "task": a.task, "n": len(items), "max_new_tokens": task.max_new_tokens, "server": a.server,
        "concurrency": a.concurrency,
        "local_items_per_s": len(items) / local_s, "server_items_per_s_generation": len(items) / generate_s,
        "server_items_per_s_with_startup": len(items) / server_s, "server_startup_s": startup_s,
        "ratio_generation": local_s / generate_s, "ratio_with_startup": local_s / server_s,
        "identical_answers": sum(x == y for x, y in zip(local, served, strict=True)),
        "same_item_scores": sum(x == y for x, y in zip(local_scores, served_scores, strict=True)),
        "differing": [(x, y) for x, y in zip(local, served, strict=True) if x != y][:5],
    }
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
