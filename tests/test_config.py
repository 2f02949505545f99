"""Configs: every YAML loads; bad input gives one-line errors naming file, field and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftdojo import agents, config, models, registry
from ftdojo.errors import ConfigError, ModelNotFound, UnknownName
from ftdojo.registry import get_task


@pytest.mark.parametrize("path", sorted(config.CONFIG_DIR.rglob("*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_yaml_in_configs_loads(path: Path) -> None:
    kind = path.parent.name
    loaded = {"agents": config.load_agent, "profiles": config.load_profile, "suites": config.load_suite}[kind](str(path))
    assert loaded.name == path.stem
    if kind == "suites":
        for t in loaded.tasks:
            get_task(t)
        for a in loaded.agents:
            config.load_agent(a)


@pytest.mark.parametrize(
    "body, match",
    [
        ("policy: naive-sft\ntrain:\n  learning_rate: 0.1\n", r"agent.yaml: train.learning_rate: unknown field; valid fields: .*\blr\b"),
        ("policy: magic\n", r"agent.yaml: policy: unknown policy 'magic'; valid: .*'zero-shot'"),
        ("policy: naive-sft\ntrain:\n  lora_r: -4\n", r"agent.yaml: train.lora_r: Input should be greater than or equal to 1 \(got -4\)"),
        ("policy: naive-sft\nprompt:\n  template: '{question}'\n", r"agent.yaml: prompt: .*must name \{input\}"),
        ("description: forgot the policy\n", r"agent.yaml: policy: missing; valid: .*'ft-agent'.*'naive-sft'"),
        ("policy: [unclosed\n", r"agent.yaml: invalid YAML at line \d+, column \d+"),
    ],
    ids=["unknown-field", "unknown-policy", "lora-r", "prompt-template", "no-policy", "bad-yaml"],
)
def test_a_bad_agent_yaml_names_file_field_and_value(tmp_path, body, match) -> None:
    p = tmp_path / "agent.yaml"
    p.write_text("name: x\n" + body)
    with pytest.raises(ConfigError, match=match) as e:
        agents.load(str(p))
    assert "\n" not in str(e.value)


def test_unknown_names_list_valid_ones() -> None:
    with pytest.raises(UnknownName, match=r"unknown task 'math-nope'; valid: .*chem-rings.*math-arith, math-linear"):
        get_task("math-nope")
    with pytest.raises(UnknownName, match=r"unknown agent 'nope'; valid: .*naive-sft"):
        config.load_agent("nope")


def test_overrides_apply_and_are_validated() -> None:
    p = config.load_profile("tiny", ["train.steps=3", "budget.max_dev_evals=9", "resources.cpus=1"])
    assert p.train["steps"] == 3 and p.budget.max_dev_evals == 9
    assert config.agent_train(config.load_agent("naive-sft"), p).steps == 3
    with pytest.raises(ConfigError, match=r"train.stepz"):
        config.load_profile("tiny", ["train.stepz=3"])
    with pytest.raises(ConfigError, match=r"budget.max_dev_evals: .*got 'many'"):
        config.load_profile("tiny", ["budget.max_dev_evals=many"])
    with pytest.raises(ConfigError, match="FIELD.PATH=VALUE"):
        config.load_profile("tiny", ["train.steps"])


def test_missing_model_says_what_is_valid(tmp_path) -> None:
    with pytest.raises(ModelNotFound, match=r"no such directory; use 'smollm2-135m-instruct'"):
        models.resolve(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="has no config.json"):
        models.resolve(str(tmp_path / "empty"))


@pytest.mark.parametrize(
    "override, field",
    [
        ("train.lora_r=-4", "train.lora_r"),
        ("train.lr=-0.001", "train.lr"),
        ("train.lr=0", "train.lr"),
        ("train.steps=0", "train.steps"),
        ("train.batch_size=0", "train.batch_size"),
        ("train.lora_dropout=1.5", "train.lora_dropout"),
        ("train.target_modules=[]", "train"),
        ("budget.max_iterations=-3", "budget.max_iterations"),
        ("budget.max_train_steps=-1", "budget.max_train_steps"),
        ("budget.max_wall_s=0", "budget.max_wall_s"),
        ("resources.cpus=0", "resources.cpus"),
        ("resources.gpus=-1", "resources.gpus"),
        ("eval_batch_size=0", "eval_batch_size"),
    ],
)
def test_out_of_range_values_are_refused_before_any_compute(override, field) -> None:
    with pytest.raises(ConfigError) as e:
        config.load_profile("tiny", [override])
    msg = str(e.value)
    assert f": {field}:" in msg and "\n" not in msg, msg
    value = override.split("=", 1)[1]
    if value != "[]":
        assert f"(got {value}" in msg or f"got {value}" in msg or "greater" in msg or "less" in msg, msg


def test_a_suite_needs_tasks_agents_and_seeds(tmp_path) -> None:
    p = tmp_path / "suite.yaml"
    p.write_text("name: s\ntasks: []\nagents: [zero-shot]\n")
    with pytest.raises(ConfigError, match=r"suite.yaml: tasks: .*at least 1 item"):
        config.load_suite(str(p))


def test_the_main_suite_runs_ft_agent_on_one_task_per_domain_beside_the_baselines_on_all() -> None:
    from ftdojo import bench

    suite = config.load_suite("all")
    _, runs, _ = bench.plan_runs(bench.parse_args(["all"]))
    grid = {(r.key.task, r.key.agent) for r in runs}
    ft = sorted(t for t, a in grid if a == "ft-agent")
    assert ft == sorted(suite.agent_tasks["ft-agent"]) and len(ft) == 5
    domain_of = {t.id: d.name for d in registry.domains().values() for t in d.tasks}
    assert len(ft) == len({domain_of[t] for t in ft}) == len({domain_of[t] for t in suite.tasks})  # one per domain
    assert all((t, a) in grid for t in suite.tasks for a in ("zero-shot", "naive-sft"))
    assert len(runs) == 2 * 13 + 5 and {r.key.seed for r in runs} == {0}
    # --agents narrows the agents, not the tasks each runs on
    _, only, _ = bench.plan_runs(bench.parse_args(["all", "--agents", "ft-agent", "--seeds", "0,1"]))
    assert sorted({r.key.task for r in only}) == ft and len(only) == 10


@pytest.mark.parametrize("body, match", [
    ("agent_tasks: {ft-agent: [math-arith]}", r"agent_tasks.ft-agent: 'ft-agent' is not one of the suite's agents \(zero-shot\); add it"),
    ("agents: [zero-shot, ft-agent]\nagent_tasks: {ft-agent: [chem-rings]}", r"agent_tasks.ft-agent: chem-rings not among the suite's tasks"),
    ("agents: [zero-shot, ft-agent]\nagent_tasks: {ft-agent: []}", r"agent_tasks.ft-agent: no tasks"),
])
def test_a_suites_agent_tasks_must_name_its_own_agents_and_tasks(tmp_path, body, match) -> None:
    p = tmp_path / "suite.yaml"
    p.write_text("name: s\ntasks: [math-arith]\n" + ("" if body.startswith("agents") else "agents: [zero-shot]\n") + body + "\n")
    with pytest.raises(ConfigError, match=r"suite.yaml: .*" + match) as e:
        config.load_suite(str(p))
    assert "\n" not in str(e.value)


def test_the_frontier_suite_puts_two_llm_backbones_beside_the_heuristic_agent_and_the_baselines() -> None:
    suite = config.load_suite("frontier")
    agents = {a: config.load_agent(a) for a in suite.agents}
    llms = {a: c.backbone for a, c in agents.items() if c.backbone.kind == "llm"}
    assert len(llms) >= 2 and len({c.base_url for c in llms.values()}) == len(llms)  # two providers' endpoints
    assert all(c.usd_per_1m_tokens > 0 for c in llms.values())  # so the report's cost per run means something
    assert {"zero-shot", "naive-sft", "ft-agent"} <= set(suite.agents) and len(suite.seeds) == 3


def test_the_bench_refuses_a_hosted_endpoint_whose_key_is_unset(monkeypatch) -> None:
    from ftdojo import bench
    from ftdojo.errors import UserError

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with pytest.raises(UserError, match=r"agent ft-agent-claude: backbone.api_key_env ANTHROPIC_API_KEY is not set.*export ANTHROPIC_API_KEY"):
        bench.plan_runs(bench.parse_args(["frontier", "--profile", "tiny"]))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    _, runs, _ = bench.plan_runs(bench.parse_args(["frontier", "--profile", "tiny"]))
    assert len(runs) == 5 * 5 * 3
    assert config.load_agent("ft-agent-claude").api_keys == ("ANTHROPIC_API_KEY",)


def test_the_bench_refuses_the_reference_on_a_task_without_one_before_any_compute() -> None:
    """The reference is the suite authors' recipe over their sources' roles: on a paper task (a hub dataset,
    no roles) the bench says so before a run starts; on a built-in task it plans the run."""
    from ftdojo import bench
    from ftdojo.errors import UserError

    with pytest.raises(UserError, match=r"^agent reference: task aime24 has no reference recipe .*built-in tasks only$"):
        bench.plan_runs(bench.parse_args(["aime24", "--agents", "reference"]))
    _, runs, _ = bench.plan_runs(bench.parse_args(["bio-gc", "--agents", "zero-shot,reference", "--seeds", "0"]))
    assert [r.key.agent for r in runs] == ["zero-shot", "reference"]
