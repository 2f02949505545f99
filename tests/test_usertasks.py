"""A task from a user's own JSONL and a YAML spec runs with no code change; bad specs fail clearly."""

from __future__ import annotations

import asyncio
import json
import random
import re
from pathlib import Path

import pytest

from ftdojo import datafiles, config, repository, registry
from ftdojo.dojo import DojoEnv
from ftdojo.errors import ConfigError, UserError
from ftdojo.messages import Budget, RunKey

SPEC = """\
id: reverse-words
description: Reverse a short lower-case word.
instruction: "Reply as 'Answer: <reversed word>'."
answer_format: "A line 'Answer: <word>'."
answer_template: "Answer: {answer}"
answer_pattern: "Answer:\\\\s*([a-z]+)"
metric: exact
items: eval.jsonl
dev_size: 20
test_size: 30
sources:
  - name: reversals
    file: train.csv
    readme: Words and their reversals.
    suggested_prompt: "Reverse: {word}"
    suggested_answer: "{reversed}"
"""


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 6)))


@pytest.fixture()
def user_task(tmp_path, monkeypatch) -> Path:
    rng = random.Random(0)
    words = list(dict.fromkeys(_word(rng) for _ in range(400)))
    evals, train = words[:60], words[60:300]
    (tmp_path / "eval.jsonl").write_text(
        "".join(json.dumps({"input": f"Reverse: {w}", "answer": w[::-1], "category": f"len{len(w)}"}) + "\n" for w in evals)
    )
    (tmp_path / "train.csv").write_text("word,reversed\n" + "".join(f"{w},{w[::-1]}\n" for w in train))
    spec = tmp_path / "reverse.yaml"
    spec.write_text(SPEC)
    monkeypatch.setenv("FTDOJO_TASKS", str(tmp_path))
    registry.reload()
    yield spec
    monkeypatch.delenv("FTDOJO_TASKS")
    registry.reload()


def test_user_task_is_listed_split_and_served(user_task) -> None:
    task = registry.get_task("reverse-words")
    assert task.domain == "reverse-words" and set(task.categories) <= {"len3", "len4", "len5", "len6"}
    d = registry.get_domain("reverse-words")
    repository.materialize(d)
    dev = datafiles.read_items(repository.dev_path(task, d))
    test = datafiles.read_items(repository.sealed_path(task, d))
    assert len(dev) == 20 and len(test) == 30 and not {i["input"] for i in dev} & {i["input"] for i in test}
    env = DojoEnv("reverse-words", "tiny-random", Budget())
    card = env.describe()
    assert card.sources[0].name == "reversals" and card.sources[0].rows == 240
    assert env.read_source("reversals").dicts()[0].keys() == {"word", "reversed"}


def test_user_task_runs_through_the_supervisor(user_task, tmp_path) -> None:
    from actors.supervisor import RunSupervisor

    prof = config.load_profile("tiny")
    key = RunKey(task="reverse-words", agent="naive-sft", seed=0, profile="tiny", config_hash="0" * 16)
    rec = asyncio.run(RunSupervisor(key, config.load_agent("naive-sft"), prof, str(tmp_path / "ws")).run())
    assert rec.status == "ok" and rec.test is not None and rec.test.n == 30
    assert rec.experiments[0].curated.per_source == {"reversals": 240}
    assert rec.experiments[0].curated.samples[0].completion.startswith("Answer: ")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: s.replace("metric: exact", "metric: fuzzy"), r"reverse.yaml: metric: .*'exact', 'numeric', 'choice', 'f1', 'math'.*got 'fuzzy'"),
        (lambda s: s.replace("items: eval.jsonl", "items: nope.jsonl"), r"reverse.yaml: items: file .*nope.jsonl not found"),
        (lambda s: s.replace("test_size: 30", "test_size: 300"), r"dev_size: dev_size \+ test_size = 320 but eval.jsonl has 60 items"),
        (lambda s: s.replace('answer_pattern: "Answer:\\\\s*([a-z]+)"', 'answer_pattern: "Answer: [a-z]+"'), r"answer_pattern: .*capturing group"),
        (lambda s: s.replace("id: reverse-words", "id: Reverse Words"), r"id: .*lower-case"),
        (lambda s: s + "colour: red\n", r"colour: unknown field; valid fields: .*answer_pattern"),
        (lambda s: s.replace("file: train.csv", "file: train.txt"), r"sources.0.file: file .*train.txt not found"),
        (lambda s: s.replace("description: Reverse", "description: [Reverse"), r"reverse.yaml: invalid YAML at line \d+, column \d+"),
        (lambda s: s.replace("dev_size: 20", "dev_size: -5"), r"reverse.yaml: dev_size: Input should be greater than or equal to 1 \(got -5\)"),
        (lambda s: s.replace("test_size: 30", "test_size: 0"), r"reverse.yaml: test_size: Input should be greater than or equal to 1 \(got 0\)"),
        (lambda s: s.replace('suggested_prompt: "Reverse: {word}"', 'suggested_prompt: "Reverse: {wrod}"'),
         r"reverse.yaml: sources.0.suggested_prompt: names column 'wrod', which train.csv lacks; columns: reversed, word"),
        (lambda s: s.replace('answer_template: "Answer: {answer}"', 'answer_template: "Answer: {ans}"'), r"answer_template: .*must name \{answer\}"),
        (lambda s: s + "  - name: reversals\n    file: train.csv\n", r"reverse.yaml: .*source name 'reversals' is listed twice"),
    ],
)
def test_malformed_task_yaml_names_file_and_field(user_task, edit, match) -> None:
    user_task.write_text(edit(SPEC))
    registry.reload()
    with pytest.raises(ConfigError, match=match) as e:
        registry.get_task("reverse-words")
    assert "\n" not in str(e.value)


def test_malformed_items_line_is_named(user_task) -> None:
    items = user_task.parent / "eval.jsonl"
    lines = items.read_text().splitlines()
    lines[4] = '{"input": "Reverse: abc"}'
    items.write_text("\n".join(lines) + "\n")
    registry.reload()
    with pytest.raises(ConfigError, match=r"eval.jsonl: line 5: missing \['answer'\]"):
        registry.get_task("reverse-words")


def test_spec_files_naming_one_domain_share_its_sources(tmp_path, monkeypatch) -> None:
    rows = [{"word": w, "rev": w[::-1], "up": w.upper()} for w in ("alpha", "beta", "gamma", "delta", "omega", "sigma")]
    (tmp_path / "words.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "rev.jsonl").write_text("".join(json.dumps({"input": f"Reverse: {r['word']}x", "answer": r["rev"]}) + "\n" for r in rows))
    (tmp_path / "up.jsonl").write_text("".join(json.dumps({"input": f"Upper: {r['word']}y", "answer": r["up"]}) + "\n" for r in rows))
    common = "instruction: x\nanswer_format: x\ndomain: words\ndev_size: 2\ntest_size: 3\n"
    (tmp_path / "a.yaml").write_text(common + "id: rev\ndescription: Reverse.\nitems: rev.jsonl\nsources:\n"
                                     "  - {name: words, file: words.jsonl, suggested_prompt: 'Reverse: {word}', suggested_answer: '{rev}'}\n")
    (tmp_path / "b.yaml").write_text(common + "id: up\ndescription: Upper.\nitems: up.jsonl\nsources:\n"
                                     "  - {name: words, file: words.jsonl, suggested_prompt: 'Upper: {word}', suggested_answer: '{up}'}\n"
                                     "  - {name: more, file: rev.jsonl}\n")
    monkeypatch.setenv("FTDOJO_TASKS", str(tmp_path))
    registry.reload()
    try:
        d = registry.get_domain("words")
        assert [t.id for t in d.tasks] == ["rev", "up"] and [s.name for s in d.sources] == ["words", "more"]
        rev, up = (DojoEnv(t, "tiny-random", Budget()).describe() for t in ("rev", "up"))
        assert [(s.name, s.suggested_answer) for s in rev.sources] == [("words", "{rev}"), ("more", None)]
        assert [(s.name, s.suggested_answer) for s in up.sources] == [("words", "{up}"), ("more", None)]
        (tmp_path / "words2.jsonl").write_text((tmp_path / "words.jsonl").read_text())
        (tmp_path / "b.yaml").write_text((tmp_path / "b.yaml").read_text().replace("file: words.jsonl", "file: words2.jsonl"))
        registry.reload()
        with pytest.raises(ConfigError, match=r"b.yaml: sources: source 'words' of domain 'words' is already .*words.jsonl in .*a.yaml"):
            registry.get_domain("words")
    finally:
        monkeypatch.delenv("FTDOJO_TASKS")
        registry.reload()


@pytest.mark.parametrize("content", ["", "word,reversed\n"], ids=["empty", "header-only"])
def test_a_source_without_rows_is_named(user_task, content) -> None:
    (user_task.parent / "train.csv").write_text(content)
    registry.reload()
    with pytest.raises(ConfigError, match=r"reverse.yaml: sources.0.file: .*train.csv has no data rows") as e:
        registry.get_task("reverse-words")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("answer", [None, "", ["a"]], ids=["null", "empty", "list"])
def test_an_item_without_a_usable_answer_is_named(user_task, answer) -> None:
    items = user_task.parent / "eval.jsonl"
    lines = items.read_text().splitlines()
    lines[2] = json.dumps({"input": "Reverse: abc", "answer": answer})
    items.write_text("\n".join(lines) + "\n")
    registry.reload()
    with pytest.raises(ConfigError, match=rf"eval.jsonl: line 3: answer: must be a non-empty string or number \(got {re.escape(json.dumps(answer))}\)"):
        registry.get_task("reverse-words")


def test_a_user_task_may_not_take_a_built_in_tasks_id(user_task) -> None:
    user_task.write_text(SPEC.replace("id: reverse-words", "id: math-linear"))
    registry.reload()
    with pytest.raises(UserError) as e:
        registry.get_task("math-linear")
    msg = str(e.value)
    assert msg.startswith(f"{user_task}: id 'math-linear' is already a built-in task (domain 'math', tasks.math)") and "\n" not in msg


def test_two_specs_with_one_task_id_in_different_domains_are_refused(user_task) -> None:
    (user_task.parent / "again.yaml").write_text(SPEC.replace("sources:", "domain: other\nsources:"))
    registry.reload()
    with pytest.raises(UserError, match=r"id 'reverse-words' is already a task \(domain '(reverse-words|other)'"):
        registry.all_tasks()
