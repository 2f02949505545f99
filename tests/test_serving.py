"""The server evaluation backend against a scripted OpenAI-compatible server run as its own process, and the
command lines it builds for vLLM and ``transformers serve``."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from ftdojo import serving
from ftdojo.errors import EvalServerFailed
from ftdojo.messages import Candidate, EvalBackend
from ftdojo.registry import get_task

SCRIPT = str(Path(__file__).with_name("scripted_completions.py"))
ITEMS = [{"input": f"Solve x + {k} = {k}.", "answer": "0" if k % 2 == 0 else str(k), "category": "c"} for k in range(6)]


def _backend(*args: str, **over: object) -> EvalBackend:
    return EvalBackend(backend="server", server="command", command=[sys.executable, SCRIPT, "--port", "{port}", *args],
                       **{"startup_timeout_s": 30.0, **over})


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:  # a zombie has exited
        return f.read().split()[2] == "Z"


def _processes(needle: bytes) -> set[int]:
    """Every live process whose command line contains ``needle``."""
    found = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if needle in cmd and not _gone(int(p.name)):
                found.add(int(p.name))
    return found


def _children_of_test() -> set[int]:
    """The scripted server's processes (and their guards): none may outlive an evaluation."""
    return _processes(SCRIPT.encode())


def test_a_server_evaluation_scores_with_the_tasks_metric_and_leaves_no_process(tiny_model, tmp_path) -> None:
    record = tmp_path / "requests.jsonl"
    task = get_task("math-linear")
    report = serving.evaluate(task, ITEMS, Candidate(base_model=tiny_model), "dev", _backend("--record", str(record)))
    assert report.score == pytest.approx(3 / 6) and report.n == 6  # "Answer: 0" is right for the even items
    sent = [json.loads(x) for x in record.read_text().splitlines()]
    assert len(sent) == 6 and {r["max_tokens"] for r in sent} == {task.max_new_tokens} and {r["temperature"] for r in sent} == {0.0}
    assert "seed" not in sent[0] and "top_p" not in sent[0]  # greedy: no sampling settings
    from ftdojo import models, sft

    tok = models.tokenizer(tiny_model)  # the same rendered chat prompt the local backend decodes
    assert sorted(r["prompt"] for r in sent) == sorted(sft.render_prompt(tok, Candidate(base_model=tiny_model).prompt, task.instruction, i["input"])
                                                        for i in ITEMS)
    assert not _children_of_test()


def test_sampling_settings_reach_the_requests_and_pass_at_k_and_avg_at_k_match_hand_computed_values(tiny_model, tmp_path) -> None:
    """4 samples per item at temperature 0.7 / top-p 0.9: one request per sample with its own seed (the server
    ignores n, like transformers serve). Replies in order (one request at a time): item 0 right on 2 of 4
    samples, item 1 on none. avg@4 = 0.5 and 0; pass@2 = 1 - C(2,2)/C(4,2) = 5/6 and 0."""
    record = tmp_path / "requests.jsonl"
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps(["Answer: 0", "Answer: 5", "Answer: 0", "Answer: 5"] + ["Answer: 5"] * 4))
    items = [{"input": "x + 1 = 1", "answer": "0", "category": "a"}, {"input": "x + 2 = 9", "answer": "7", "category": "b"}]
    task = replace(get_task("math-linear"), temperature=0.7, top_p=0.9, samples=4, pass_k=1)
    spec = _backend("--record", str(record), "--replies", str(replies), concurrency=1)
    avg = serving.evaluate(task, items, Candidate(base_model=tiny_model), "dev", spec)
    assert avg.item_scores == [0.5, 0.0] and avg.sample_scores == [[1.0, 0.0, 1.0, 0.0], [0.0] * 4]
    sent = [json.loads(x) for x in record.read_text().splitlines()]
    assert len(sent) == 8 and {(r["temperature"], r["top_p"]) for r in sent} == {(0.7, 0.9)}
    assert len({r["seed"] for r in sent}) == 8  # each sample its own seed
    passk = serving.evaluate(replace(task, pass_k=2), items, Candidate(base_model=tiny_model), "dev", spec)
    assert passk.item_scores == pytest.approx([5 / 6, 0.0]) and passk.score == pytest.approx(5 / 12)
    # vLLM takes n: one request per item
    vllm = serving.requests_for(task, ["p0", "p1"], EvalBackend(backend="server", server="vllm"))
    assert [(r["prompt"], r["n"]) for r in vllm] == [("p0", 4), ("p1", 4)] and vllm[0]["top_p"] == 0.9


def test_a_server_that_never_gets_healthy_times_out_with_a_clear_error_and_is_stopped(tiny_model) -> None:
    t0 = time.monotonic()
    with pytest.raises(EvalServerFailed, match=r"not healthy after 2 s \(raise evaluation.startup_timeout_s"):
        serving.evaluate(get_task("math-linear"), ITEMS, Candidate(base_model=tiny_model), "dev",
                         _backend("--never-healthy", startup_timeout_s=2.0))
    assert time.monotonic() - t0 < 30 and not _children_of_test()


def test_a_server_that_fails_at_start_says_so_with_its_output(tiny_model) -> None:
    with pytest.raises(EvalServerFailed, match=r"exited with code 3 before it was healthy.*failing at start as asked"):
        serving.evaluate(get_task("math-linear"), ITEMS, Candidate(base_model=tiny_model), "dev", _backend("--exit-code", "3"))


def test_a_server_that_dies_mid_evaluation_fails_it_with_a_clear_error(tiny_model) -> None:
    with pytest.raises(EvalServerFailed, match=r"died during the evaluation \(exit code"):
        serving.evaluate(get_task("math-linear"), ITEMS, Candidate(base_model=tiny_model), "dev", _backend("--die-after", "2", concurrency=1))
    assert not _children_of_test()


def test_the_server_goes_when_the_evaluating_process_is_killed(tiny_model, tmp_path) -> None:
    """A killed evaluator (an actor killed by Ray, a run cancelled) leaves no server: its guard ends it."""
    import signal
    import subprocess

    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from test_serving import _backend; "
            f"from ftdojo import serving; s = serving.start(_backend(), {tiny_model!r}, 'cpu', 'fp32'); "
            "print(s.proc.pid, flush=True); import time; time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    guard = int(proc.stdout.readline())
    assert _children_of_test()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    while (_children_of_test() or not _gone(guard)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _children_of_test() and _gone(guard)


def test_a_dead_eval_server_fails_the_iteration_and_the_run_goes_on(math_domain, tiny_model, tmp_path) -> None:
    """naive-sft's one iteration evaluates on dev through a server that dies mid-way: the iteration is recorded
    as failed with the reason, and the run still finishes (its test evaluation gets a fresh, healthy server)."""
    import asyncio

    from actors.supervisor import RunSupervisor
    from ftdojo import config
    from ftdojo.messages import RunKey

    prof = config.load_profile("tiny", ["train.steps=2"])
    prof = prof.model_copy(update={"evaluation": _backend("--die-after", "1", "--once", str(tmp_path / "died"), concurrency=1)})
    key = RunKey(task="math-linear", agent="naive-sft", seed=0, profile="tiny", config_hash="0" * 16)
    rec = asyncio.run(RunSupervisor(key, config.load_agent("naive-sft"), prof, str(tmp_path / "w")).run())
    assert (tmp_path / "died").exists()
    failed = [e for e in rec.experiments if e.status == "failed"]
    assert failed and "evaluation server: command server died during the evaluation" in failed[0].error
    assert rec.status == "ok" and rec.final is not None and rec.test is not None
    assert not _children_of_test()


def test_vllm_and_transformers_command_lines(monkeypatch) -> None:
    """The arguments that matter: the model, loopback host and the chosen port, dtype, tensor parallel over the
    run's GPUs (as Ray set CUDA_VISIBLE_DEVICES), LoRA enabled with its rank cap, the memory share."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert serving.gpu_count() == 2
    spec = EvalBackend(backend="server", server="vllm", gpu_memory_utilization=0.25, max_lora_rank=32, extra_args=["--max-model-len", "8192"])
    port = serving.free_port()
    argv = serving.server_command(spec, "/models/qwen", port, "cuda", "bf16", serving.gpu_count(), served_name="base")
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    opts = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--")}
    assert opts["--model"] == "/models/qwen" and opts["--served-model-name"] == "base" and opts["--host"] == "127.0.0.1"
    assert opts["--port"] == str(port) and opts["--dtype"] == "bfloat16" and opts["--tensor-parallel-size"] == "2"
    assert opts["--gpu-memory-utilization"] == "0.25" and opts["--max-lora-rank"] == "32" and "--enable-lora" in argv
    assert argv[-2:] == ["--max-model-len", "8192"]
    assert serving.server_env(spec)["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    tf = serving.server_command(EvalBackend(backend="server"), "/tmp/merged", port, "cpu", "fp32")
    assert tf[1:4] == ["-m", "transformers.cli.transformers", "serve"] and tf[4] == "/tmp/merged"
    assert tf[tf.index("--dtype") + 1] == "float32" and tf[tf.index("--device") + 1] == "cpu" and tf[tf.index("--port") + 1] == str(port)
    with pytest.raises(ValueError, match="server 'command' needs command"):
        EvalBackend(backend="server", server="command")


def test_vllm_serves_the_base_once_and_loads_each_lora_candidate_by_name(tiny_model, tmp_path, monkeypatch) -> None:
    """vLLM's LoRA handling against the scripted server standing in for vLLM (same endpoints): one base server
    for two candidates, each adapter loaded by path under its own name for its requests and unloaded after."""
    from ftdojo import training
    from ftdojo.messages import PromptSpec, TrainConfig

    record = tmp_path / "requests.jsonl"
    stand_in = _backend("--record", str(record))
    monkeypatch.setattr(serving, "server_command", lambda spec, model, port, *a, **k: [x.format(port=port) for x in stand_in.command])
    spec = EvalBackend(backend="server", server="vllm", startup_timeout_s=30.0)
    data = tmp_path / "train.jsonl"
    from ftdojo import datafiles
    from ftdojo.messages import Example

    datafiles.write_models(data, [Example(input=f"q{k}", completion=f"Answer: {k}", source="s") for k in range(8)])
    adapters = []
    for i in range(2):
        r = training.fit(plan_id=f"a{i}", base_model=tiny_model, data_path=str(data), output_dir=str(tmp_path / f"a{i}"),
                         train=TrainConfig(steps=1, batch_size=4, seed=i), prompt=PromptSpec(), instruction="Reply.")
        assert r.status == "ok", r.error
        adapters.append(r.checkpoint)
    task = get_task("math-linear")
    try:
        for ckpt in adapters:
            serving.evaluate(task, ITEMS[:2], Candidate(base_model=tiny_model, checkpoint=ckpt), "dev", spec)
        assert len(serving._VLLM) == 1 and len(_children_of_test()) == 2  # one base server (and its guard), still up
    finally:
        serving.stop_all()
    sent = [json.loads(x) for x in record.read_text().splitlines()]
    loads = [r for r in sent if r["path"] == "/v1/load_lora_adapter"]
    assert [r["lora_path"] for r in loads] == [str(Path(c).resolve()) for c in adapters]
    names = [r["lora_name"] for r in loads]
    assert len(set(names)) == 2
    completions = [r for r in sent if r["path"] == "/v1/completions"]
    assert [r["model"] for r in completions] == [names[0]] * 2 + [names[1]] * 2
    assert [r["lora_name"] for r in sent if r["path"] == "/v1/unload_lora_adapter"] == names
    assert not _children_of_test()


def _transformers_servers() -> set[int]:
    return _processes(b"transformers.cli.transformers serve")


@pytest.mark.slow
def test_transformers_serve_scores_the_bundled_model_as_the_local_backend_does(math_domain) -> None:
    """The bundled model on math-linear's dev split (24 items), greedy: the server backend (transformers serve,
    continuous batching, fp32 on CPU) gives the local backend's answers, so the same scores; no server is
    left once the evaluation ends."""
    from ftdojo import datafiles, evaluation, models, repository

    task = get_task("math-linear")
    items = datafiles.read_items(repository.dev_path(task, math_domain))[:24]
    cand = Candidate(base_model=models.BUNDLED)
    local = evaluation.evaluate(task, items, cand, "dev")
    served = serving.evaluate(task, items, cand, "dev", EvalBackend(backend="server", concurrency=8))
    assert served.item_scores == local.item_scores and served.score == local.score
    assert [e.output for e in served.errors] == [e.output for e in local.errors]  # the same texts, not only scores
    assert not _transformers_servers()


def test_preflight_refuses_a_server_that_cannot_start_here_before_anything_runs(monkeypatch) -> None:
    """A missing package, vLLM on a CPU run, a command that is not on the PATH: one line naming the field
    and the fix, from the driver (``bench.prepare``) before any run starts and from each run's referee."""
    import importlib.util

    from ftdojo import bench, config
    from ftdojo.dojo import Referee
    from ftdojo.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    vllm = EvalBackend(backend="server", server="vllm")
    assert serving.preflight(vllm, "cuda") == "evaluation.server 'vllm' needs vllm, not installed here: pip install 'ftdojo[vllm]' on the GPU nodes"
    with pytest.raises(UserError, match=r"^profile gpu-7b-lora-vllm: evaluation.server 'vllm' needs vllm"):
        bench.prepare(config.load_profile("gpu-7b-lora-vllm"), [])
    with pytest.raises(UserError, match=r"needs vllm, not installed here"):
        Referee("math-linear", backend=vllm)
    monkeypatch.setattr(importlib.util, "find_spec", real)
    monkeypatch.setitem(serving.NEEDS, "vllm", (("json",), "-"))  # as if installed
    assert serving.preflight(vllm, "cpu") == "evaluation.server 'vllm' needs a GPU run (resources.gpus >= 1); on a CPU use server: transformers"
    assert serving.preflight(vllm, "cuda") is None
    missing = EvalBackend(backend="server", server="command", command=["no-such-server-xyz", "--port", "{port}"])
    assert serving.preflight(missing) == "evaluation.command: 'no-such-server-xyz' not found on this node's PATH"
    assert serving.preflight(_backend()) is None and serving.preflight(EvalBackend()) is None
    assert serving.preflight(EvalBackend(backend="server")) is None  # transformers serve: installed with the test extra


def test_a_run_evaluated_by_vllm_loads_its_adapter_by_name_and_frees_the_gpu_before_the_test(math_domain, tiny_model, tmp_path,
                                                                                                monkeypatch) -> None:
    """The whole vLLM path of a run through the supervisor, with the scripted server standing in for vLLM: the
    trained adapter is evaluated on dev under its own name on the one base server, that server is stopped
    before the referee's test evaluation (which starts its own and loads the same adapter), and none is left."""
    import asyncio

    from actors.supervisor import RunSupervisor
    from ftdojo import config
    from ftdojo.messages import RunKey

    record = tmp_path / "requests.jsonl"
    stand_in = _backend("--record", str(record))
    starts = []
    monkeypatch.setattr(serving, "server_command", lambda spec, model, port, *a, **k: starts.append(model) or
                        [x.format(port=port) for x in stand_in.command])
    monkeypatch.setattr(serving, "preflight", lambda *a: None)  # vLLM on a CPU: the stand-in needs no GPU
    prof = config.load_profile("tiny", ["train.steps=2"])
    prof = prof.model_copy(update={"evaluation": EvalBackend(backend="server", server="vllm", startup_timeout_s=30.0)})
    key = RunKey(task="math-linear", agent="naive-sft", seed=0, profile="tiny", config_hash="0" * 16)
    rec = asyncio.run(RunSupervisor(key, config.load_agent("naive-sft"), prof, str(tmp_path / "w")).run())
    assert rec.status == "ok" and rec.final is not None and rec.final.checkpoint and rec.test is not None
    assert len(starts) == 2 and not serving._VLLM  # dev's server, then the test's; both stopped
    sent = [json.loads(x) for x in record.read_text().splitlines()]
    loads = [r for r in sent if r["path"] == "/v1/load_lora_adapter"]
    assert [r["lora_path"] for r in loads] == [str(Path(rec.final.checkpoint).resolve())] * 2
    asked = {r["model"] for r in sent if r["path"] == "/v1/completions"}
    assert asked == {loads[0]["lora_name"]}  # every answer from the adapter, none from the bare base
    assert not _children_of_test()
