"""The bench end to end on a real local Ray cluster, with the tiny model profile."""

from __future__ import annotations

import json

import pytest

from ftdojo import datafiles, bench
from ftdojo.messages import RunRecord

pytestmark = pytest.mark.ray


def test_bench_runs_one_math_task_end_to_end_and_resumes(ray_cluster, tmp_path, capsys) -> None:
    out = tmp_path / "bench"
    argv = ["math-linear", "--profile", "tiny", "--out", str(out), "train.steps=10"]
    assert bench.main(argv) == 0
    records = [RunRecord.model_validate_json(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    assert {(r.key.agent, r.status) for r in records} == {("zero-shot", "ok"), ("naive-sft", "ok")}
    sft = next(r for r in records if r.key.agent == "naive-sft")
    assert sft.experiments[0].status == "ok" and sft.experiments[0].train.steps == 10
    losses = sft.experiments[0].train.losses
    assert sum(losses[-3:]) < 0.8 * sum(losses[:3])
    assert sft.test is not None and sft.test.n == 120 and len(sft.test_sha256) == 64
    assert not sft.fallback_to_base and sft.final.checkpoint
    # each run's own Ray actor: its peak since its start, and the bound on a model-holding process beside it
    assert all(r.memory_bound_mb and r.peak_rss_mb["supervisor"] > 100 for r in records)
    assert all(r.over_memory_bound == [k for k, v in r.peak_rss_mb.items() if v > r.memory_bound_mb] for r in records)
    table = (out / "results.md").read_text()
    assert "| math-linear |" in table and "zero-shot" in table and "naive-sft" in table
    summary = json.loads((out / "results.json").read_text())
    assert len(summary["rows"]) == 2
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    capsys.readouterr()
    assert bench.main(argv) == 0  # everything finished: nothing reruns
    assert "(2 already done)" in capsys.readouterr().err
    assert mtimes == {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}


def test_bench_rejects_bad_input_before_running(capsys) -> None:
    assert bench.main(["math-nope", "--profile", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: unknown suite or task 'math-nope'; valid: ")
    assert {"all", "math", "math-arith", "math-linear"} <= set(err.split("valid: ")[1].strip().split(", "))


def test_killing_the_trainer_mid_iteration_fails_that_iteration_only(ray_cluster, math_domain, tmp_path) -> None:
    import time

    import ray

    from actors.supervisor import RunSupervisor
    from ftdojo import config
    from ftdojo.messages import RunKey

    prof = config.load_profile("tiny", ["train.steps=250", "budget.max_train_steps=1000", "budget.max_iterations=2"])
    key = RunKey(task="math-linear", agent="ft-agent-no-failfast", seed=0, profile="tiny", config_hash="0" * 16)
    sup = ray.remote(RunSupervisor).options(num_cpus=1, max_concurrency=4).remote(
        key, config.load_agent("ft-agent-no-failfast"), prof, str(tmp_path / "ws"), "ray"
    )
    ref = sup.run.remote()
    deadline = time.time() + 120
    while ray.get(sup.state.remote()).phase != "train":
        assert time.time() < deadline, "never reached training"
        time.sleep(0.2)
    time.sleep(2.0)
    ray.kill(ray.get(sup.peer.remote("trainer")).target, no_restart=True)
    rec = ray.get(ref, timeout=300)
    first, second = rec.experiments[0], rec.experiments[1]
    assert first.status == "failed" and "actor died" in first.error
    assert second.status == "ok" and second.train.steps > 0  # a fresh trainer took over
    from ftdojo.search import best_node

    assert all(e.status == "ok" for e in rec.experiments[1:])  # the first was a probe; the fresh trainer fits the rest
    assert rec.status == "ok" and rec.final.checkpoint == best_node(rec.experiments, "max").train.checkpoint
    ray.kill(sup)


def test_ddp_on_two_workers_matches_one_worker_at_the_same_global_batch(ray_cluster, tiny_model, tmp_path) -> None:
    """gloo DDP: each rank takes half of every global batch; the loss is normalised by the global token count."""
    import random

    from ftdojo import training
    from ftdojo.messages import Example, PromptSpec, TrainConfig

    rng = random.Random(0)
    data = tmp_path / "train.jsonl"
    datafiles.write_models(data, [Example(input=f"q{rng.randint(0, 999)}", completion=f"Answer: {i % 7}", source="s") for i in range(64)])
    runs = {}
    for workers in (1, 2):
        cfg = TrainConfig(steps=8, batch_size=8, lr=3e-3, warmup_steps=0)
        r = training.fit(plan_id=f"ddp{workers}", base_model=tiny_model, data_path=str(data), output_dir=str(tmp_path / f"a{workers}"),
                         train=cfg, prompt=PromptSpec(), instruction="i", threads=1, workers=workers, precision="fp32")
        assert r.status == "ok", r.error
        assert r.workers == workers
        runs[workers] = r
    one, two = runs[1].losses, runs[2].losses
    assert max(abs(a - b) for a, b in zip(one, two, strict=True)) < 1e-3, (one, two)
    assert runs[1].tokens == runs[2].tokens


def test_fsdp_on_two_gloo_workers_follows_one_worker_and_saves_the_whole_model(ray_cluster, tiny_model, tmp_path) -> None:
    """Full fine-tuning sharded by FSDP across 2 Ray Train workers (gloo) follows 1 unsharded worker at the same
    global batch (losses within 1e-3), and rank 0 saves the gathered model: it reloads to the same weights as the
    one-worker fit's within the same tolerance."""
    import random

    from ftdojo import training
    from ftdojo.messages import Example, PromptSpec, TrainConfig

    rng = random.Random(0)
    data = tmp_path / "train.jsonl"
    datafiles.write_models(data, [Example(input=f"q{rng.randint(0, 999)}", completion=f"Answer: {i % 7}", source="s") for i in range(64)])
    runs = {}
    for workers, sharding in ((1, "ddp"), (2, "fsdp")):
        cfg = TrainConfig(method="full", steps=6, batch_size=8, lr=1e-3, warmup_steps=0)
        runs[workers] = r = training.fit(
            plan_id=f"fsdp{workers}", base_model=tiny_model, data_path=str(data), output_dir=str(tmp_path / f"f{workers}"),
            train=cfg, prompt=PromptSpec(), instruction="i", threads=1, workers=workers, precision="fp32", sharding=sharding)
        assert r.status == "ok", r.error
    assert runs[2].sharding == "fsdp" and runs[1].sharding == "none"
    one, two = runs[1].losses, runs[2].losses
    assert max(abs(a - b) for a, b in zip(one, two, strict=True)) < 1e-3, (one, two)
    assert two[-1] < two[0]
    import torch

    from ftdojo import models

    a, b = (models.load(runs[w].checkpoint)[0].state_dict() for w in (1, 2))
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-3
    base = models.load(tiny_model)[0].state_dict()
    assert sum(not torch.equal(base[k], b[k]) for k in b) > 10  # it trained every layer


def _bench_cmd(out, seeds: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "ftdojo.bench", "math", "--profile", "tiny", "--agents", "zero-shot,naive-sft",
            "--seeds", seeds, "--out", str(out), "--num-cpus", "2", "train.steps=6", "resources.cpus=1"]


def _score_table(out) -> list[tuple]:
    rows = json.loads((out / "results.json").read_text())["rows"]
    return sorted((r["task"], r["agent"], tuple(r["seeds"]), tuple(r["test"]), tuple(r["dev"])) for r in rows)


def test_sigkilled_driver_resumes_without_redoing_finished_runs(math_domain, tmp_path) -> None:
    import os
    import signal
    import subprocess
    import time

    env = {**os.environ, "FTDOJO_LOG_JSON": "1"}
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    proc = subprocess.Popen(_bench_cmd(killed, "0"), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and len(list((killed / "runs").glob("*.json"))) < 1:
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only; its runs die with their owner
        proc.wait()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # then whatever of its local cluster is left
        except ProcessLookupError:
            pass
    before = {p.name: p.read_bytes() for p in (killed / "runs").glob("*.json")}
    assert 1 <= len(before) < 4, f"kill landed outside the bench: {len(before)} of 4 runs done"
    resumed = subprocess.run(_bench_cmd(killed, "0"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"4 runs ({len(before)} already done)" in resumed.stderr
    after = {p.name: p.read_bytes() for p in (killed / "runs").glob("*.json")}
    assert len(after) == 4 and all(after[k] == v for k, v in before.items())  # finished runs untouched
    full = subprocess.run(_bench_cmd(reference, "0"), env=env, capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr[-2000:]
    assert _score_table(killed) == _score_table(reference)


USER_SPEC = """\
id: upper-words
description: Write a lower-case word in capitals.
instruction: "Reply as 'Answer: <WORD>'."
answer_format: "A line 'Answer: <WORD>'."
answer_template: "Answer: {answer}"
answer_pattern: "Answer:\\\\s*([A-Z]+)"
metric: exact
items: upper_eval.jsonl
dev_size: 10
test_size: 20
sources:
  - name: upper_pairs
    file: upper_train.jsonl
    readme: Words and their capitalised form.
    suggested_prompt: "Capitalise: {word}"
    suggested_answer: "{upper}"
"""


def test_a_task_from_the_users_own_jsonl_runs_through_the_bench(ray_cluster, tmp_path, monkeypatch) -> None:
    """README, 'Add your own task': a YAML spec next to JSONL files, on FTDOJO_TASKS; no code change."""
    import random

    from ftdojo import registry

    rng = random.Random(1)
    words = list(dict.fromkeys("".join(rng.choice("abcdefghij") for _ in range(5)) for _ in range(300)))
    folder = tmp_path / "my-tasks"
    folder.mkdir()
    (folder / "upper.yaml").write_text(USER_SPEC)
    (folder / "upper_eval.jsonl").write_text("".join(json.dumps({"input": f"Capitalise: {w}", "answer": w.upper()}) + "\n" for w in words[:30]))
    (folder / "upper_train.jsonl").write_text("".join(json.dumps({"word": w, "upper": w.upper()}) + "\n" for w in words[30:]))
    monkeypatch.setenv("FTDOJO_TASKS", str(folder))
    registry.reload()
    try:
        out = tmp_path / "bench"
        assert bench.main(["upper-words", "--profile", "tiny", "--out", str(out), "train.steps=6"]) == 0
        records = [RunRecord.model_validate_json(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
        assert {(r.key.task, r.key.agent, r.status) for r in records} == {("upper-words", "zero-shot", "ok"), ("upper-words", "naive-sft", "ok")}
        sft = next(r for r in records if r.key.agent == "naive-sft")
        assert sft.test.n == 20 and sft.experiments[0].curated.per_source == {"upper_pairs": len(words) - 30}
        assert "| upper-words |" in (out / "results.md").read_text()
    finally:
        monkeypatch.delenv("FTDOJO_TASKS")
        registry.reload()


def test_a_sigkilled_driver_leaves_no_process_of_its_local_cluster(tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    script = "import time\nfrom ftdojo import runtime\nruntime.init_ray(num_cpus=1)\nprint('ready', flush=True)\ntime.sleep(600)\n"
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(2)  # the raylet's agents are up
        kids = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(k.cmdline()) for k in kids)
        assert "raylet" in names and "DashboardAgent" in names and "RuntimeEnvAgent" in names, names
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(k.is_running() and k.status() != psutil.STATUS_ZOMBIE for k in kids):
            time.sleep(0.5)
        left = [" ".join(k.cmdline())[:80] for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
        assert left == [], left
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_an_llm_agents_transcript_crosses_ray_and_lands_beside_its_record(ray_cluster, math_domain, tmp_path, capsys) -> None:
    """FT-Agent with an LLM backbone (a scripted endpoint on loopback) through the bench on real Ray: the
    planner's, diagnostician's and curator's actors (the curator's data model writes rationales for a synthesis
    step) each keep what they asked and were answered, the run gathers them in time order and hashes them into
    its record, and the driver writes them beside it; ``ftdojo trace`` shows them and notices an edit."""
    import yaml

    from scripted_llm import ScriptedLLM

    from ftdojo import cli, transcripts
    from ftdojo.messages import DataRecipe, SourceMapping, Synthesis, TrainConfig

    plan = json.dumps({"hypothesis": "drills in the answer format", "recipe": DataRecipe(sources=[SourceMapping(
        source="algebra_drills", prompt="Solve for x: {equation}", answer="{solution}")], synthesis=[Synthesis(
        name="reasons", source="worked_solutions", produce="rationale", prompt="{problem}", answer="{final}", max_rows=2)]).model_dump(),
        "train": TrainConfig(steps=2, batch_size=4, lr=2e-3).model_dump()})
    verdict = json.dumps({"findings": [], "decision": "stop"})
    look = json.dumps({"lookup": {"source": "algebra_drills", "n": 2}})  # the planner actor asks the env actor for rows
    written = "Work it through.\nAnswer: {}"

    def reply(body: dict) -> str:
        if body["messages"][0]["content"].startswith("You write training data"):
            return written.format(body["messages"][1]["content"].rsplit("Correct answer: ", 1)[1])
        if "diagnostician" in body["messages"][0]["content"][:200]:
            return verdict
        return look if len(body["messages"]) == 2 else plan
    with ScriptedLLM(reply) as srv:
        agent = tmp_path / "ft-agent-scripted.yaml"
        agent.write_text(yaml.safe_dump({"name": "ft-agent-scripted", "policy": "ft-agent",
                                         "backbone": {"kind": "llm", "model": "scripted", "base_url": srv.url, "cache": "off"}}))
        out = tmp_path / "bench"
        assert bench.main(["math-linear", "--profile", "tiny", "--agents", str(agent), "--seeds", "0", "--out", str(out),
                           "budget.max_iterations=1"]) == 0
    [path] = sorted((out / "runs").glob("*.json"))
    rec = RunRecord.model_validate_json(path.read_text())
    assert rec.status == "ok" and rec.transcript == []  # the exchanges live beside the record, not in it
    exchanges, state = transcripts.read(path, rec.transcript_sha256)
    assert state == "ok" and [x.role for x in exchanges] == ["planner", "planner", "data:reasons", "data:reasons", "diagnostician"]
    order = [0, 1, 4]  # the data model's two requests run concurrently: their order is the server's to choose
    assert [exchanges[i].request["messages"] for i in order] == [srv.requests[i]["messages"] for i in order]  # what was sent, in order
    assert sorted(json.dumps(x.request["messages"]) for x in exchanges[2:4]) == sorted(json.dumps(r["messages"]) for r in srv.requests[2:4])
    assert [exchanges[i].reply for i in order] == [look, plan, verdict] and all(x.reply.startswith("Work it") for x in exchanges[2:4])
    assert sum(x.tokens for x in exchanges) == rec.usage.llm_tokens + rec.usage.data_tokens and rec.usage.data_requests == 2
    [exp] = [e for e in rec.experiments if e.curated]
    got = exp.curated.sources["reasons"]  # the two rows' written examples, through the recipe's filters
    assert got.rows == 2 and got.kept == 2 - got.dropped.get("duplicate", 0) >= 1
    rows = json.loads(exchanges[1].request["messages"][-1]["content"])["rows"]  # answered across Ray by the env actor
    assert rec.usage.llm_lookups == 1 and len(rows) == 2 and set(rows[0]) == {"equation", "solution", "form"}
    capsys.readouterr()
    assert cli.main(["trace", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "transcript: 5 exchanges, 600 tokens" in shown and "(hash matches the record)" in shown and "#4 diagnostician -> scripted" in shown
    t = transcripts.path_for(path)
    t.write_text(t.read_text().replace("drills in the answer format", "something else"))
    assert cli.main(["trace", str(path)]) == 0 and "ALTERED" in capsys.readouterr().out


def test_two_llm_backbones_side_by_side_over_three_seeds_with_cost_per_run(ray_cluster, math_domain, tmp_path, monkeypatch) -> None:
    """The frontier comparison on real Ray with two scripted endpoints standing in for two providers: each
    agent's runs talk to its own endpoint with its own key (set in the driver after the cluster started, so it
    reaches the actors only by being forwarded), and the report puts both beside zero-shot with LLM tokens and
    cost per run at each agent's price."""
    import yaml

    from scripted_llm import ScriptedLLM

    from ftdojo import report
    from ftdojo.messages import DataRecipe, SourceMapping, TrainConfig

    plan = json.dumps({"hypothesis": "drills", "recipe": DataRecipe(sources=[SourceMapping(
        source="algebra_drills", prompt="Solve for x: {equation}", answer="{solution}")]).model_dump(),
        "train": TrainConfig(steps=2, batch_size=4, lr=2e-3).model_dump()})
    verdict = json.dumps({"findings": [], "decision": "stop"})
    reply = lambda body: verdict if "diagnostician" in body["messages"][0]["content"][:200] else plan  # noqa: E731
    monkeypatch.setenv("FTDOJO_TEST_KEY_A", "key-a")
    monkeypatch.setenv("FTDOJO_TEST_KEY_B", "key-b")
    with ScriptedLLM(reply) as a, ScriptedLLM(reply) as b:
        files = []
        for name, srv, key, price in (("llm-a", a, "FTDOJO_TEST_KEY_A", 2.0), ("llm-b", b, "FTDOJO_TEST_KEY_B", 10.0)):
            f = tmp_path / f"{name}.yaml"
            f.write_text(yaml.safe_dump({"name": name, "policy": "ft-agent", "backbone": {
                "kind": "llm", "model": name, "base_url": srv.url, "api_key_env": key, "cache": "off", "usd_per_1m_tokens": price}}))
            files.append(str(f))
        out = tmp_path / "bench"
        assert bench.main(["math-linear", "--profile", "tiny", "--agents", ",".join(["zero-shot", *files]), "--seeds", "0,1,2",
                           "--out", str(out), "budget.max_iterations=1"]) == 0
    assert len(a.requests) == len(b.requests) == 3 * 2  # a plan and a verdict per run, each to its own endpoint
    assert set(a.keys) == {"Bearer key-a"} and set(b.keys) == {"Bearer key-b"}
    summary = report.summarize(report.load_records(out))
    ea, eb = summary.efficiency["llm-a"], summary.efficiency["llm-b"]
    assert ea.llm_tokens == eb.llm_tokens == 240  # per run: two requests of 120
    assert ea.llm_cost_usd == pytest.approx(240 * 2.0 / 1e6) and eb.llm_cost_usd == pytest.approx(240 * 10.0 / 1e6)
    md = (out / "results.md").read_text()
    assert "| llm-a | 3 | 3 |" in md and "$0.0024 |" in md and "LLM cost / run" in md
    pairs = {frozenset((c.a, c.b)): c.pairs for c in summary.paired}
    assert pairs[frozenset(("llm-a", "zero-shot"))] == pairs[frozenset(("llm-b", "llm-a"))] == 3  # paired over the three seeds
