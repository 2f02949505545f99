"""The paper's dataset-backed tasks, through the real ``datasets`` code path, offline, from fixture folders laid
out like each hub repository; and the benchmarks' metrics on hand-computed cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hubfixtures import PLANTED, build

from ftdojo import datafiles, hub, registry, repository, scoring
from ftdojo.errors import ConfigError

PAPER = {t.id for d in registry.domains().values() if not registry.builtin_offline(d) for t in d.tasks}


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    root = build(tmp_path_factory.mktemp("hub"))
    mp = pytest.MonkeyPatch()
    mp.setenv("FTDOJO_HUB_MIRROR", str(root))
    mp.setenv("HF_DATASETS_OFFLINE", "1")
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf")))
    mp.setenv("FTDOJO_HOME", str(tmp_path_factory.mktemp("home")))
    registry.reload()
    yield root
    mp.undo()
    registry.reload()


def _splits(task_id: str) -> tuple[list[dict], list[dict], Path]:
    t = registry.get_task(task_id)
    d = registry.get_domain(t.domain)
    raw = repository.materialize(d)
    return datafiles.read_items(repository.dev_path(t, d)), datafiles.read_items(repository.sealed_path(t, d)), raw


def test_every_paper_category_has_adapters() -> None:
    assert {"aime24", "aime25", "patent-par4pc", "patent-pi4pc", "patent-noc4pc", "chemcot-fg-count", "chemcot-murcko",
            "tablebench-fact", "tablebench-numeric", "tablebench-analysis", "bio-pqa", "bio-ord", "bio-gen"} <= PAPER


@pytest.mark.parametrize("task_id", sorted(PAPER))
def test_each_adapter_loads_through_datasets_offline(mirror, task_id) -> None:
    dev, test, _ = _splits(task_id)
    assert dev and test and not {i["input"] for i in dev} & {i["input"] for i in test}
    assert all(set(i) == {"id", "input", "answer", "category"} and i["input"].strip() and i["answer"] for i in dev + test)
    assert len({i["id"] for i in test}) == len(test)


def test_upstream_test_splits_are_sealed_as_they_are(mirror) -> None:
    dev, test, _ = _splits("aime25")  # both configs of opencompass/AIME2025, split test, every row
    assert [(i["answer"], i["category"]) for i in test] == [("70", "AIME2025-I"), ("1", "AIME2025-I"), ("16", "AIME2025-II")]
    assert len(dev) == 100 and all(i["category"] == "deepscaler" for i in dev)  # dev: a slice of DeepScaleR
    _, test, _ = _splits("aime24")
    assert [i["id"] for i in test] == ["60", "61", "62"] and test[0]["answer"] == "24"
    dev, test, _ = _splits("patent-par4pc")
    assert len(test) == 5 and len(dev) == 4  # the test split whole; dev the validation split
    assert test[0]["answer"] == "A, C | D" and test[1]["answer"] == "B | D"
    assert "\nA: Hinge A test0 (patent US1000)\n   Prior art A about test0 hinges." in test[0]["input"]
    _, test, _ = _splits("patent-pi4pc")
    assert test[0]["answer"] == "12 | 13" and "\n10: Paragraph 10 of the prior art on test0 clips." in test[0]["input"]


def test_options_and_answers_come_out_as_the_benchmark_defines_them(mirror) -> None:
    dev, test, raw = _splits("bio-pqa")
    first = test[0]
    assert first["input"].endswith("\n\nBuffer 0\nEthanol 0\nWater 0\nTrizol 0") and first["answer"] == "Buffer 0"
    assert test[1]["answer"] == "Ethanol 1" and test[1]["category"] == "reagent"  # choices[1 % 4]
    assert len(dev) == 200 and not {i["id"] for i in dev} & {i["id"] for i in test}
    dev, test, raw = _splits("bio-ord")
    assert test[1]["answer"].splitlines()[0] == "Step 0 of test protocol 1: thaw cells"
    assert "Steps, shuffled:\nStep 1 of test protocol 1: spin down" in test[1]["input"]
    rows = datafiles.read_rows(raw / "ord_train.jsonl", "jsonl")
    assert len(rows) == 40 and not {r["question"] for r in rows} & {i["input"].split("\n")[0] for i in dev}  # dev left the source
    _, test, _ = _splits("chemcot-fg-count")
    assert len(test) == 10 and all(i["input"].startswith("[fg_count]") for i in test)  # mol_und / fg_count rows only
    dev, test, _ = _splits("tablebench-numeric")
    assert all(i["input"].startswith("[DP]") and i["category"] == "Aggregation" for i in dev + test) and len(dev + test) == 30


def test_a_source_holding_a_test_question_is_cleaned_and_the_card_says_so(mirror) -> None:
    _, test, raw = _splits("bio-pqa")
    assert any(i["input"].startswith(PLANTED) for i in test)
    rows = datafiles.read_rows(raw / "pqa_train.jsonl", "jsonl")
    assert not any(r["question"] == PLANTED for r in rows)  # it was there upstream (hubfixtures), and is gone
    assert "1 of this source's 41 rows held a test item of this domain and were removed" in (raw / "pqa_train.md").read_text()


def _user_spec(folder: Path, mirror: Path, extra: str = "") -> Path:
    spec = folder / "pqa.yaml"
    spec.write_text(
        "id: my-pqa\ndescription: Protocol questions.\ninstruction: \"Reply as 'Answer: <letter>'.\"\nanswer_format: A letter.\n"
        "answer_template: 'Answer: {answer}'\nanswer_pattern: 'Answer:\\s*([A-D])'\nmetric: choice\n"
        f"items:\n  hub: {mirror}/bowenxian/BioProBench\n  config: PQA\n  split: test\n  input: \"{{question}}\\n{{options}}\"\n"
        "  options: {field: choices, answer: letter}\n"
        "dev: {from_source: train, size: 20}\n"
        f"sources:\n  - name: train\n    hub: {mirror}/bowenxian/BioProBench\n    config: PQA\n    split: train\n{extra}"
    )
    return spec


def test_a_users_hub_folder_task_gives_lettered_options_and_can_refuse_a_leaky_source(mirror, tmp_path, monkeypatch) -> None:
    _user_spec(tmp_path, mirror)
    monkeypatch.setenv("FTDOJO_TASKS", str(tmp_path))
    registry.reload()
    try:
        _, test, _ = _splits("my-pqa")
        assert test[0]["input"].endswith("\nA. Buffer 0\nB. Ethanol 0\nC. Water 0\nD. Trizol 0") and test[0]["answer"] == "A"
        assert [i["answer"] for i in test[:4]] == ["A", "B", "C", "D"]  # the gold text became its option's letter
        _user_spec(tmp_path, mirror, "    on_test_overlap: refuse\n")
        registry.reload()
        with pytest.raises(ConfigError, match=r"pqa.yaml: source train: 1 of its 221 rows hold test items of this domain") as e:
            repository.materialize(registry.get_domain("my-pqa"))
        assert "\n" not in str(e.value)
    finally:
        monkeypatch.delenv("FTDOJO_TASKS")
        registry.reload()


def test_a_dataset_that_is_not_there_offline_is_one_line_naming_the_id_and_the_fetch(mirror) -> None:
    ref = hub.HubRef(hub="nobody/no-such-dataset", config="x", split="test")
    with pytest.raises(hub.DatasetUnavailable) as e:
        hub.rows(ref)
    msg = str(e.value)
    assert msg.startswith("dataset 'nobody/no-such-dataset', config 'x', split 'test' is not available (")
    assert "huggingface-cli download --repo-type dataset nobody/no-such-dataset" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match=r"^dataset bowenxian/BioProBench: config: BuilderConfig 'NOPE' not found. Available: \['PQA', 'ERR', 'ORD', 'GEN'\]"):
        hub.rows(hub.HubRef(hub="bowenxian/BioProBench", config="NOPE"))
    with pytest.raises(ConfigError, match=r"split: Unknown split \"validation\""):
        hub.rows(hub.HubRef(hub="bowenxian/BioProBench", config="PQA", split="validation"))


def test_listing_the_paper_tasks_needs_no_data(monkeypatch, tmp_path, capsys) -> None:
    from ftdojo import cli

    monkeypatch.setenv("FTDOJO_HUB_MIRROR", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    registry.reload()
    assert cli.main(["tasks", "ls"]) == 0
    out = capsys.readouterr().out
    assert "dataset LG-AI-Research/PANORAMA (PAR4PC, test)" in out and "prior_art" in out
    assert cli.main(["tasks", "show", "aime25"]) == 0
    out = capsys.readouterr().out
    assert "origin:        dataset opencompass/AIME2025 (AIME2025-I+AIME2025-II, test)" in out
    assert "max 4096 new tokens, temperature 0.6, top-p 0.95, 4 samples per item (avg@4)" in out


# --- the benchmarks' metrics on hand-computed cases ------------------------------------------


@pytest.mark.parametrize("output, gold, want", [
    ("so the answer is \\boxed{\\frac{1}{2}}", "0.5", 1.0),
    ("\\boxed{0.5}", "\\frac{1}{2}", 1.0),
    ("\\boxed{x(x+2)}", "x^2+2x", 1.0),
    ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\sqrt{2}/2", 1.0),
    ("\\boxed{204}", "204", 1.0),
    ("\\boxed{205}", "204", 0.0),
    ("First 3, then \\boxed{70}.", "070", 1.0),
])
def test_math_equivalence_by_math_verify(output, gold, want) -> None:
    scores, extracted = scoring.score_outputs([output], [gold], "(.+)", "math")
    assert scores == [want] and extracted[0] is not None


def test_rouge_l_gives_partial_credit_by_longest_common_subsequence() -> None:
    # LCS of "the cat sat on the mat" and "the cat is on the mat" is 5 tokens: P = 5/6, R = 5/6
    assert scoring.rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    assert scoring.rouge_l("completely different words", "the cat is on the mat") == 0.0


def test_macro_f1_over_the_split_counts_an_absent_class_as_zero() -> None:
    # gold: ALLOW, 102, 102, 103; predicted: ALLOW, ALLOW, 102, unparseable. F1(ALLOW) = 2/3, F1(102) = 2/3, F1(103) = 0
    assert scoring.macro_f1_corpus(["ALLOW", "ALLOW", "102", None], ["ALLOW", "102", "102", "103"]) == pytest.approx(4 / 9)
    assert scoring.split_score("macro_f1", [1, 0, 1, 0], ["ALLOW", "ALLOW", "102", None], ["ALLOW", "102", "102", "103"]) == pytest.approx(4 / 9)


def test_kendall_tau_of_a_permutation() -> None:
    gold = "thaw\nspin\nwash\nresuspend"
    assert scoring.kendall_tau("thaw\nspin\nwash\nresuspend", gold) == 1.0
    assert scoring.kendall_tau("resuspend\nwash\nspin\nthaw", gold) == -1.0
    # one adjacent swap: 5 of 6 pairs concordant -> (5 - 1) / 6
    assert scoring.kendall_tau("1. spin\n2. thaw\n3. wash\n4. resuspend", gold) == pytest.approx(4 / 6)
    assert scoring.kendall_tau("thaw\nspin\nwash", gold) == -1.0  # not a permutation of the steps


def test_set_scores_and_the_patent_custom_scores() -> None:
    assert scoring.set_f1("A, C", '["A", "B"]') == 0.5
    # PAR4PC: gold {A, C}, silver {D}; predicted {A, D, E}: TP 1, FP 1 (E; D is silver), FN 1 (C) -> (2 - 1 - 1) / 4 = 0
    assert scoring.prior_art("A, D, E", "A, C | D") == 0.0
    assert scoring.prior_art("A, C", "A, C | D") == 1.0 and scoring.prior_art("A", "A, C | D") == pytest.approx(1 / 4)
    assert scoring.gold_silver("12", "12 | 13") == 1.0 and scoring.gold_silver("13", "12 | 13") == 0.5
    assert scoring.gold_silver("12, 13", "12 | 13") == 0.0


def test_smiles_equivalence_validity_and_similarity_through_rdkit() -> None:
    assert scoring.smiles_equiv("OCC", "CCO") == 1.0 and scoring.smiles_equiv("CCC", "CCO") == 0.0
    assert scoring.smiles_equiv("C1CC", "CCO") == 0.0  # an unclosed ring is no molecule
    assert scoring.smiles_valid("c1ccccc1", "") == 1.0 and scoring.smiles_valid("c1cccc", "") == 0.0
    assert scoring.tanimoto("c1ccccc1", "c1ccccc1") == 1.0 and 0.0 < scoring.tanimoto("Cc1ccccc1", "c1ccccc1") < 1.0


def test_counts_score_their_absolute_error_and_an_unparseable_output_predicts_zero() -> None:
    scores, _ = scoring.score_outputs(["Answer: 3", "no idea", "Answer: 7"], ["5", "4", "7"], r"Answer:\s*(-?\d+)", "abs_error")
    assert scores == [2.0, 4.0, 0.0]


def test_pass_at_k_and_avg_at_n_over_samples() -> None:
    assert scoring.pass_at_k(4, 0, 1) == 0.0 and scoring.pass_at_k(4, 4, 2) == 1.0
    assert scoring.pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert scoring.pass_at_k(4, 1, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(4, 2))  # 0.5
    from dataclasses import replace

    from ftdojo import evaluation
    from ftdojo.tasking import TaskSpec

    task = TaskSpec(id="t", domain="d", description="", instruction="", answer_format="", answer_template="{answer}",
                    answer_pattern=r"Answer:\s*(\d+)", metric="numeric", categories=("all",), temperature=0.7, samples=4)
    items = [{"id": "a", "input": "q1", "answer": "1", "category": "all"}, {"id": "b", "input": "q2", "answer": "2", "category": "all"}]
    outs = ["Answer: 1", "Answer: 1", "Answer: 9", "nothing", "Answer: 9", "Answer: 2", "Answer: 9", "Answer: 9"]
    r = evaluation.score(task, items, outs, "dev")
    assert r.item_scores == [0.5, 0.25] and r.score == pytest.approx(0.375)  # avg@4
    assert r.sample_scores == [[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]] and r.parse_failure_rate == 0.0
    r = evaluation.score(replace(task, pass_k=2), items, outs, "dev")
    assert r.item_scores == pytest.approx([1 - 1 / 6, 0.5])  # pass@2 from 4 samples: 2 and 1 correct


def test_sampled_generation_is_seeded_and_greedy_is_unchanged(tiny_model) -> None:
    from ftdojo import evaluation, models, sft
    from ftdojo.messages import PromptSpec

    model, tok = models.load_base(tiny_model, copy=False)
    prompts = [sft.render_prompt(tok, PromptSpec(), "i", f"question {k}") for k in range(3)]
    greedy = evaluation.generate(model, tok, prompts, 8)
    assert evaluation.generate(model, tok, prompts, 8, temperature=0.0, seed=5) == greedy
    a = evaluation.generate(model, tok, prompts, 8, temperature=1.0, top_p=0.9, seed=1)
    assert a == evaluation.generate(model, tok, prompts, 8, temperature=1.0, top_p=0.9, seed=1)
    assert a != evaluation.generate(model, tok, prompts, 8, temperature=1.0, top_p=0.9, seed=2)
    assert json.dumps(a) != json.dumps(greedy)


@pytest.mark.ray
def test_one_adapter_per_category_runs_through_the_bench(ray_cluster, mirror, tmp_path) -> None:
    from ftdojo import bench
    from ftdojo.messages import RunRecord

    tasks = ["aime24", "patent-par4pc", "chemcot-fg-count", "tablebench-fact", "bio-pqa"]
    suite = tmp_path / "fixture-paper.yaml"
    suite.write_text(f"name: fixture-paper\ntasks: [{', '.join(tasks)}]\nagents: [naive-sft]\nseeds: [0]\nprofile: tiny\n")
    out = tmp_path / "bench"
    assert bench.main([str(suite), "--profile", "tiny", "--out", str(out), "train.steps=4"]) == 0
    records = [RunRecord.model_validate_json(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    assert sorted(r.key.task for r in records) == sorted(tasks)
    for r in records:
        assert r.status == "ok", (r.key.task, r.error)
        assert r.test is not None and r.test.n > 0 and len(r.test_sha256) == 64
        if r.key.task == "chemcot-fg-count":  # ChemCoTDataset keeps no answer column: its card suggests no mapping
            assert r.experiments[0].error == "recipe produced no training examples" and r.fallback_to_base
        else:
            assert r.experiments and r.experiments[0].status == "ok", (r.key.task, r.experiments[0].error)
            assert r.experiments[0].train.steps == 4 and not r.fallback_to_base
    aime = next(r for r in records if r.key.task == "aime24")
    assert aime.test.n == 3 and len(aime.test.sample_scores) == 3 and all(len(s) == 2 for s in aime.test.sample_scores)  # tiny caps 4 samples to 2
    fg = next(r for r in records if r.key.task == "chemcot-fg-count")
    assert fg.direction == "min"
    table = (out / "results.md").read_text()
    assert all(f"| {t} |" in table for t in tasks)


def test_the_trainers_max_length_follows_the_tasks_generation_budget() -> None:
    from actors.supervisor import _fit_generation
    from ftdojo.dojo import capped
    from ftdojo.messages import TrainConfig

    aime, linear = registry.get_task("aime24"), registry.get_task("math-linear")
    assert _fit_generation(TrainConfig(max_length=384), aime).max_length == 4096 + 128
    assert _fit_generation(TrainConfig(max_length=384), linear).max_length == 384  # the built-in tasks already fit
    small = capped(aime, (96, 2))
    assert (small.max_new_tokens, small.samples) == (96, 2) and _fit_generation(TrainConfig(max_length=384), small).max_length == 384
    assert capped(linear, (96, 2)) is linear
