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


def test_every_paper_task_has_an_adapter_and_the_suite_runs_them_all() -> None:
    # RD-Agent's 18 benchmarks: aime24/25, PANORAMA x3, ChemCoTBench mol_und (5 subtasks here) / mol_edit / mol_opt /
    # reaction, TableBench x4, FinanceIQ, BioProBench x4
    assert {"aime24", "aime25", "patent-par4pc", "patent-pi4pc", "patent-noc4pc", "chemcot-fg-count", "chemcot-ring-count",
            "chemcot-murcko", "chemcot-ring-system", "chemcot-equivalence", "chemcot-edit", "chemcot-opt", "chemcot-reaction",
            "tablebench-fact", "tablebench-numeric", "tablebench-analysis", "tablebench-viz", "financeiq",
            "bio-pqa", "bio-ord", "bio-gen", "bio-err"} == PAPER
    from ftdojo.config import load_suite

    assert set(load_suite("paper").tasks) == PAPER


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


def test_financeiq_seals_each_subjects_tail_and_trains_on_the_rest(mirror) -> None:
    from hubfixtures import FINANCE_SUBJECTS

    dev, test, raw = _splits("financeiq")
    by = {s: [i for i in test if i["category"] == s] for s in FINANCE_SUBJECTS}
    # RD-Agent's split: the last min(ceil(n/2), 100) rows of each subject's test file (12 -> 6, 7 -> 4)
    assert {s: len(v) for s, v in by.items()} == {"银行从业资格": 6, "注册会计师（CPA）": 4}
    assert [i["input"].split("题目：")[1].split("：")[0] for i in by["银行从业资格"]] == [f"银行从业资格test题{k}" for k in range(6, 12)]
    first = by["注册会计师（CPA）"][0]
    assert first["input"].startswith("以下是关于注册会计师（CPA）的单项选择题。\n题目：")
    assert first["input"].endswith("\nA. 选项甲3\nB. 选项乙3\nC. 选项丙3\nD. 选项丁3") and first["answer"] == "D"  # "ABCD"[3]
    assert len(dev) == 10 and all("dev题" in i["input"] for i in dev)  # the upstream dev folder
    assert not {i["id"] for i in dev} & {i["id"] for i in test}
    rows = datafiles.read_rows(raw / "financeiq_train.jsonl", "jsonl")
    assert sorted(r["Question"].split("：")[0] for r in rows) == sorted(
        [f"银行从业资格test题{k}" for k in range(6)] + [f"注册会计师（CPA）test题{k}" for k in range(3)])
    assert "10 of this source's 19 rows held a test item" in (raw / "financeiq_train.md").read_text()
    assert scoring.score_outputs(["答案是: D", "答案是：(a)", "我不知道"], ["D", "A", "B"], registry.get_task("financeiq").answer_pattern,
                                 "choice")[0] == [1.0, 1.0, 0.0]


def test_bioprobench_err_judges_the_corrupted_step_where_there_is_one(mirror) -> None:
    _, test, _ = _splits("bio-err")
    assert [i["answer"] for i in test[:2]] == ["True", "False"]
    assert "Step to check: Incubate sample 0 at room temperature for 5 min." in test[0]["input"]  # a correct row: corrected_text
    assert "Step to check: Incubate sample 1 at 95 C for 2 h." in test[1]["input"]  # an error row: corrupted_text
    assert test[1]["category"] == "parameter"


def test_chemcotbench_editing_optimisation_and_reactions(mirror) -> None:
    dev, test, _ = _splits("chemcot-edit")
    gold = {i["id"]: json.loads(i["answer"]) for i in dev + test}
    assert gold["edit_2"] == {"op": "sub", "source": "CCO", "add": "amine", "remove": "hydroxyl"}
    assert gold["edit_1"] == {"op": "delete", "source": "OCCO", "add": "", "remove": "hydroxyl"}
    reference = {"add": "OCCO", "delete": "CCO", "sub": "CCN"}  # the benchmark's reference edits pass its own check
    assert all(scoring.mol_edit(reference[g["op"]], json.dumps(g)) == 1.0 for g in gold.values())
    assert not any(scoring.mol_edit("CCO", json.dumps(g)) for g in gold.values() if g["op"] != "delete")
    dev, test, _ = _splits("chemcot-opt")
    assert {i["category"] for i in dev + test} == {"logp", "qed", "solubility"}  # drd needs TDC's oracle: left out
    assert json.loads(test[0]["answer"]) == {"source": "c1ccccc1O", "property": "qed"}
    dev, test, _ = _splits("chemcot-reaction")
    answers = {i["category"]: i["answer"] for i in dev + test}
    assert answers == {"fs": "CC(=O)OCC", "retro": "CC(=O)O.OCC"}  # fs: its JSON's "Major Product"; mechsel left out
    assert scoring.smiles_equiv("OCC.OC(C)=O", answers["retro"]) == 1.0


def test_tablebench_visualisation_items_carry_the_table_and_the_references(mirror) -> None:
    from ftdojo import charts

    dev, test, _ = _splits("tablebench-viz")
    assert len(dev) == 10 and len(test) == 20 and {i["category"] for i in test} == {"bar", "line", "pie"}
    g = json.loads(test[0]["answer"])
    assert g["chart_type"] == "line" and json.loads(g["table"])["data"] == [["t1", 1], ["u1", 2]]
    assert charts.references(g["answer"]) == [[1, 2]]


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


def test_molecule_edits_count_the_groups_smarts_as_chemcotbench_does() -> None:
    add = json.dumps({"op": "add", "source": "CCO", "add": "hydroxyl", "remove": ""})
    assert scoring.mol_edit("OCCO", add) == 1.0 and scoring.mol_edit("OCC(O)CO", add) == 0.0  # two more is no single add
    assert scoring.mol_edit("CCCO", add) == 0.0 and scoring.mol_edit("C1CC", add) == 0.0  # unchanged; not a molecule
    sub = json.dumps({"op": "sub", "source": "CCO", "add": "amine", "remove": "hydroxyl"})
    assert scoring.mol_edit("CCN", sub) == 1.0 and scoring.mol_edit("NCCO", sub) == 0.0  # the hydroxyl must go too
    delete = json.dumps({"op": "delete", "source": "CC(=O)O", "add": "", "remove": "carboxyl"})
    assert scoring.mol_edit("CC", delete) == 1.0
    assert scoring.mol_edit("OCCO", json.dumps({"op": "add", "source": "CCO", "add": "unicorn", "remove": ""})) == 0.0
    # a sulfide counts no disulfide: CSSC has two [#16X2H0] and one S-S pair -> 1
    from rdkit import Chem

    assert scoring.group_count(Chem.MolFromSmiles("CSSC"), "sulfide") == 1


def test_molecule_optimisation_succeeds_when_the_property_improves() -> None:
    from rdkit import Chem
    from rdkit.Chem import Crippen

    logp = json.dumps({"source": "CCO", "property": "logp"})
    assert Crippen.MolLogP(Chem.MolFromSmiles("CCCCO")) > Crippen.MolLogP(Chem.MolFromSmiles("CCO"))
    assert scoring.mol_opt("CCCCO", logp) == 1.0 and scoring.mol_opt("OCCO", logp) == 0.0 and scoring.mol_opt("CCO", logp) == 0.0
    # ESOL for hexane: 0.26121 - 0.74167 logP - 0.0066139 MW + 0.0034515 rotors - 0.42625 aromatic share
    hexane = Chem.MolFromSmiles("CCCCCC")
    want = 0.26121066137801696 - 0.7416739523408995 * Crippen.MolLogP(hexane) - 0.0066138847738667125 * 86.178 + 0.003451545565957996 * 3
    assert scoring.esol(hexane) == pytest.approx(want, abs=1e-3)
    sol = json.dumps({"source": "CCCCCC", "property": "solubility"})
    assert scoring.mol_opt("OCCCCCO", sol) == 1.0 and scoring.mol_opt("CCCCCCCCCC", sol) == 0.0
    assert scoring.mol_opt("CCCCO", json.dumps({"source": "CCO", "property": "drd"})) == 0.0  # no oracle offline


TABLE = json.dumps({"columns": ["team", "wins"], "data": [["a", 3], ["b", 5], ["c", 2]]})
PLOT = "Plan: a bar per team.\n```python\nimport pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.read_csv('table.csv')\n{draw}\nplt.show()\n```"


@pytest.mark.parametrize("kind, draw, refs, want", [
    ("bar", "plt.bar(df['team'], df['wins'])", "[[3, 5, 2]]", 1.0),
    ("bar", "plt.bar(df['team'], df['wins'] * 2)", "[[3, 5, 2]]", 0.0),
    ("hbar", "plt.barh(df['team'], df['wins'])", "[[2, 3, 5]]", 1.0),  # compared sorted
    ("line", "plt.plot(df['team'], df['wins'])", "[[3, 5, 2]]", 1.0),
    ("pie", "plt.pie(df['wins'])", "[3, 5, 2]", 1.0),  # references become fractions: 0.3, 0.5, 0.2
    ("scatter", "plt.scatter(df['team'], df['wins'])", "[[3, 5, 2]]", 1.0),
    ("line", "raise SystemExit(0)", "[[3, 5, 2]]", 0.0),
])
def test_a_chart_passes_when_the_model_code_draws_the_reference_values(kind, draw, refs, want) -> None:
    gold = json.dumps({"chart_type": kind, "table": TABLE, "answer": f"y_references = {refs}"})
    assert scoring.chart_pass(PLOT.format(draw=draw), gold) == want


def test_chart_code_runs_sandboxed_without_the_data_and_within_its_time() -> None:
    from ftdojo import paths, sandbox

    if not sandbox.capabilities()["files_hidden"]:
        pytest.skip("this machine gives the sandbox no mount namespace")
    sealed = paths.sealed_dir()
    sealed.mkdir(parents=True, exist_ok=True)
    probe = f"import os\nplt.bar(['x'], [1 if os.path.exists({str(sealed)!r}) else 0])"
    gold = json.dumps({"chart_type": "bar", "table": TABLE, "answer": "y_references = [[0]]"})
    assert scoring.chart_pass(PLOT.format(draw=probe), gold) == 1.0  # the sealed splits' folder is not there
    hang = json.dumps({"chart_type": "bar", "table": TABLE, "answer": "y_references = [[1]]"})
    assert scoring.chart_pass("```python\nwhile True:\n    pass\n```", hang) == 0.0  # 15 s alarm, then the next item
    assert scoring.score_outputs(["no code here"], [gold], "(.+)", "chart")[1] == [None]  # unparseable without a code block


def test_templates_render_json_literals_and_derive_values() -> None:
    from ftdojo import templating
    from ftdojo.usertasks import Derive

    assert templating.render('{{"s": {a!j}, "n": {b!j}}}', {"a": "C/C=C\\C", "b": None}) == '{"s": "C/C=C\\\\C", "n": null}'
    row = {"query": "Input Molecule: c1ccccc1O, add one.", "gt": '{"Major Product": "CCO"}', "plain": "CCN", "bad": None, "alt": "x"}
    assert Derive(column="query", pattern=r"Input Molecule:\s*([^\s,]+)").value(row) == "c1ccccc1O"
    assert Derive(column="gt", key=["Major Product"]).value(row) == "CCO" and Derive(column="plain", key="Major Product").value(row) == "CCN"
    assert Derive(column="bad", fallback="alt").value(row) == "x" and Derive(column="query", pattern=r"Nope (\w+)").value(row) == ""
    with pytest.raises(ValueError, match="needs one capturing group"):
        Derive(column="query", pattern=r"Input")


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

    model, tok = models.shared_base(tiny_model)
    prompts = [sft.render_prompt(tok, PromptSpec(), "i", f"question {k}") for k in range(3)]
    greedy = evaluation.generate(model, tok, prompts, 8)
    assert evaluation.generate(model, tok, prompts, 8, temperature=0.0, seed=5) == greedy
    a = evaluation.generate(model, tok, prompts, 8, temperature=1.0, top_p=0.9, seed=1)
    assert a == evaluation.generate(model, tok, prompts, 8, temperature=1.0, top_p=0.9, seed=1)
    assert a != evaluation.generate(model, tok, prompts, 8, temperature=1.0, top_p=0.9, seed=2)
    assert json.dumps(a) != json.dumps(greedy)


@pytest.mark.ray
def test_one_adapter_per_category_and_a_users_hub_folder_task_run_through_the_bench(ray_cluster, mirror, tmp_path, monkeypatch) -> None:
    from ftdojo import bench
    from ftdojo.messages import RunRecord

    user = tmp_path / "my-tasks"  # the user's own task: a YAML spec over a hub-style folder, no code
    user.mkdir()
    _user_spec(user, mirror, '    suggested_prompt: "{question}\\n{choices}"\n    suggested_answer: "{answer}"\n')
    monkeypatch.setenv("FTDOJO_TASKS", str(user))
    registry.reload()
    tasks = ["aime24", "patent-par4pc", "chemcot-fg-count", "tablebench-viz", "financeiq", "bio-pqa", "my-pqa"]
    suite = tmp_path / "fixture-paper.yaml"
    suite.write_text(f"name: fixture-paper\ntasks: [{', '.join(tasks)}]\nagents: [naive-sft]\nseeds: [0]\nprofile: tiny\n")
    out = tmp_path / "bench"
    try:
        assert bench.main([str(suite), "--profile", "tiny", "--out", str(out), "train.steps=4"]) == 0
    finally:
        monkeypatch.delenv("FTDOJO_TASKS")
        registry.reload()
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
    n = {r.key.task: r.test.n for r in records}
    assert n["financeiq"] == 10 and n["my-pqa"] == 12 and n["tablebench-viz"] == 20
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


def test_a_spec_can_name_every_registered_metric_and_no_other() -> None:
    from typing import get_args

    from ftdojo.usertasks import TaskFile

    assert set(get_args(TaskFile.model_fields["metric"].annotation)) == set(scoring.METRICS)
