"""Configs: every YAML loads; bad input gives one-line errors naming file, field and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftdojo import agents, config, models
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


def test_malformed_yaml_names_file_and_line(tmp_path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\npolicy: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        config.load_agent(str(p))
    msg = str(e.value)
    assert str(p) in msg and "line" in msg and "\n" not in msg


def test_unknown_field_names_field_and_valid_ones(tmp_path) -> None:
    p = tmp_path / "agent.yaml"
    p.write_text("name: x\npolicy: naive-sft\ntrain:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"agent.yaml: train.learning_rate: unknown field; valid fields: .*\blr\b"):
        config.load_agent(str(p))


def test_bad_value_names_field_and_value(tmp_path) -> None:
    p = tmp_path / "agent.yaml"
    p.write_text("name: x\npolicy: magic\n")
    with pytest.raises(ConfigError, match=r"policy: .*'zero-shot'.*got 'magic'"):
        agents.load(str(p))


def test_unknown_names_list_valid_ones() -> None:
    with pytest.raises(UnknownName, match=r"unknown task 'math-nope'; valid: .*chem-rings.*math-arith, math-linear, table-count"):
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
