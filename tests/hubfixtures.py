"""Small folders laid out like the paper's Hugging Face dataset repositories: the real file layout, configs,
split names and column names (as their dataset cards and loaders give them), a handful of rows written here.

``build(root)`` writes ``root/<org>/<name>/`` for every dataset the paper's adapters name, so
``FTDOJO_HUB_MIRROR=root`` serves them through ``datasets`` with ``HF_DATASETS_OFFLINE=1``. ``PLANTED`` is
a BioProBench PQA test question copied into its train split: the materialiser must catch it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLANTED = "Which buffer is used to resuspend the pellet in step 4 of protocol 9?"


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def _card(path: Path, configs: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "README.md").write_text(f"---\nconfigs:\n{configs}---\n# fixture\n")


def _math(root: Path) -> None:
    ds = root / "agentica-org/DeepScaleR-Preview-Dataset"
    ds.mkdir(parents=True)
    rows = [{"problem": f"Compute {a} + {b} times {c}.", "answer": str(a + b * c), "solution": f"First {b}*{c}={b * c}, then add {a}."}
            for a, b, c in ((i, i + 2, i + 3) for i in range(1, 251))]
    (ds / "deepscaler.json").write_text(json.dumps(rows))  # one JSON array, as the repository ships it
    _parquet(root / "HuggingFaceH4/aime_2024/data/train-00000-of-00001.parquet", [
        {"id": 60 + i, "problem": p, "solution": "...", "answer": a, "url": "https://artofproblemsolving.com", "year": "2024"}
        for i, (p, a) in enumerate([("Find the remainder when $2^{10}$ is divided by $1000$.", "24"),
                                    ("How many positive divisors does $72$ have?", "12"),
                                    ("What is $\\frac{3}{4}$ of $100$?", "75")])])
    aime25 = root / "opencompass/AIME2025"
    _card(aime25, "- config_name: AIME2025-I\n  data_files:\n  - split: test\n    path: aime2025-I.jsonl\n"
                  "- config_name: AIME2025-II\n  data_files:\n  - split: test\n    path: aime2025-II.jsonl\n")
    _jsonl(aime25 / "aime2025-I.jsonl", [{"question": "Find the sum of all integer bases $b>9$ for which $17_b$ divides $97_b$.", "answer": "70"},
                                         {"question": "What is $7 \\cdot 11 \\cdot 13$ modulo $1000$?", "answer": "1"}])
    _jsonl(aime25 / "aime2025-II.jsonl", [{"question": "Find the number of ordered pairs $(x,y)$ of integers with $0\\le x,y\\le 3$.", "answer": "16"}])


def _context(i: int) -> dict[str, Any]:
    return {"title": f"Fastening device {i}", "abstract": f"A clip with {i} teeth holds panels together.",
            "claims": [f"1. A clip comprising {i} teeth.", "2. The clip of claim 1, made of steel."]}


def _patents(root: Path) -> None:
    base = root / "LG-AI-Research/PANORAMA"
    for split, n in (("train", 12), ("validation", 4), ("test", 5)):
        par = []
        pi = []
        noc = []
        for i in range(n):
            k = f"{split}{i}"
            options = {L: {"abstract": f"Prior art {L} about {k} hinges.", "claims": [f"A hinge {L}."], "patent_id": f"US{1000 + j}",
                           "title": f"Hinge {L} {k}"} for j, L in enumerate("ABCDEFGH")}
            gold = ["A", "C"] if i % 2 == 0 else ["B"]
            par.append({"application_number": f"16{k}", "claim_number": 1, "context": _context(i), "options": options,
                        "gold_answers": gold, "silver_answers": ["D"], "negative_answers": ["E", "F"]})
            paragraphs = {str(10 + j): f"Paragraph {10 + j} of the prior art on {k} clips." for j in range(5)}
            pi.append({"application_number": f"17{k}", "claim_number": 2, "context": json.dumps(_context(i)),
                       "prior_art_specification": json.dumps({"patent_id": f"US77{i}", "title": f"Clip art {k}", "abstract": "Clips.",
                                                              "specification": "..."}),
                       "options": json.dumps(paragraphs), "gold_answers": ["12"], "silver_answers": ["13"], "negative_answers": ["10"]})
            noc.append({"application_number": f"18{k}", "claim_number": 3, "context": _context(i),
                        "prior_art_specifications": [{"patent_id": f"US88{i}", "paragraphs": [f"A clip for {k}."]}],
                        "answer": ["ALLOW", "102", "103"][i % 3]})
        _parquet(base / "PAR4PC" / f"{split}.parquet", par)
        _parquet(base / "PI4PC" / f"{split}.parquet", pi)
        _parquet(base / "NOC4PC" / f"{split}.parquet", noc)


MOLECULES = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O", "C1CCCCC1N", "c1ccc2ccccc2c1", "CCN(CC)CC", "OC(=O)c1ccncc1",
             "C1CC1C(=O)N", "c1ccc(cc1)C1CCNCC1", "CC1=CC(=O)CCC1"]


def _chem(root: Path) -> None:
    bench = []
    for i, smi in enumerate(MOLECULES * 3):
        for sub, gt in (("fg_count", str(i % 4)), ("ring_count", str(i % 3)), ("Murcko_scaffold", "c1ccccc1"),
                        ("ring_system_scaffold", "Yes" if i % 2 else "No"), ("equivalence", "No" if i % 2 else "Yes")):
            bench.append({"id": f"{sub}_{i}", "query": f"[{sub}] Input Molecule: {smi}, question {i}.", "task": "mol_und",
                          "subtask": sub, "gt": gt, "meta": json.dumps({"source_smiles": smi})})
    edits = [("add", "CCO", {"added_group": "hydroxyl", "reference": "OCCO"}),
             ("delete", "OCCO", {"removed_group": "hydroxyl", "reference": "CCO"}),
             ("sub", "CCO", {"added_group": "amine", "removed_group": "hydroxyl", "reference": "CCN"})]
    for i in range(40):  # ChemCoTBench's editing, optimisation and reaction parts: the source molecule is in the query
        sub, smi, meta = edits[i % 3]
        bench.append({"id": f"edit_{i}", "query": f"[{sub}] Input Molecule: {smi}, edit {i}. Output the edited molecule.",
                      "task": "mol_edit", "subtask": sub, "gt": "", "meta": json.dumps(meta)})
        prop = ["logp", "qed", "solubility", "drd"][i % 4]
        bench.append({"id": f"opt_{i}", "query": f"[{prop}] Source Molecule: {MOLECULES[i % 10]}. Improve its {prop}, case {i}.",
                      "task": "mol_opt", "subtask": prop, "gt": "", "meta": json.dumps({})})
        rxn = ["fs", "retro", "mechsel"][i % 3]
        gt = {"fs": json.dumps({"Major Product": "CC(=O)OCC"}), "retro": "CC(=O)O.OCC", "mechsel": "B"}[rxn]
        bench.append({"id": f"rxn_{i}", "query": f"[{rxn}] Reactants: CC(=O)O.OCC, reaction {i}.", "task": "reaction", "subtask": rxn,
                      "gt": gt, "meta": json.dumps({})})
    _jsonl(root / "OpenMol/ChemCoTBench/chemcotbench.jsonl", bench)
    cot = [{"id": f"cot_{i}", "query": f"[{sub}] Input Molecule: {smi}, training question {i}.", "task": "mol_und", "subtask": sub,
            "struct_cot": "Step 1: parse the SMILES. Step 2: count.", "raw_cot": "Let me think...", "meta": json.dumps({"answer": str(i % 3)})}
           for i, smi in enumerate(MOLECULES) for sub in ("fg_count", "ring_count", "Murcko_scaffold")]
    cot += [{"id": f"cot_{task}_{i}", "query": f"[{task}] Input Molecule: {smi}, training case {i}.", "task": task, "subtask": sub,
             "struct_cot": "Step 1: find the group.", "raw_cot": "Hmm.", "meta": json.dumps({"reference": smi})}
            for i, smi in enumerate(MOLECULES) for task, sub in (("mol_edit", "add"), ("mol_opt", "logp"), ("reaction", "fs"))]
    _jsonl(root / "OpenMol/ChemCoTDataset/train.jsonl", cot)


def _table(i: int) -> str:
    return json.dumps({"columns": ["team", "wins"], "data": [[f"t{i}", i], [f"u{i}", i + 1]]})


def _tables(root: Path) -> None:
    rows = []
    for i in range(90):
        qtype, qsub, ans = [("FactChecking", "MatchBased", "Yes" if i % 2 else "No"), ("NumericalReasoning", "Aggregation", str(2 * i + 1)),
                            ("DataAnalysis", "TrendForecasting", f"The wins rise by one per team {i}.")][i % 3]
        for itype in ("DP", "TCoT"):
            rows.append({"id": f"tb{i}-{itype}", "qtype": qtype, "qsubtype": qsub, "instruction_type": itype, "table": _table(i),
                         "question": f"Question {i} about the wins?", "answer": ans, "chart_type": "",
                         "instruction": f"[{itype}] Table: {_table(i)}\nQuestion {i} about the wins?\nEnd with 'Final Answer: <answer>'."})
    for i in range(30):  # visualisation: plotting code is the answer, scored by the values it draws
        kind = ["bar", "line", "pie"][i % 3]
        rows.append({"id": f"tbv{i}", "qtype": "Visualization", "qsubtype": "ChartGeneration", "instruction_type": "TCoT",
                     "table": _table(i), "question": f"Draw a {kind} chart of the wins {i}.", "chart_type": kind,
                     "answer": f"y_references = [[{i}, {i + 1}]]" if kind != "pie" else f"y_references = [{i + 1}, {i + 2}]",
                     "instruction": f"[TCoT] Table: {_table(i)}\nDraw a {kind} chart of the wins {i}.\nEnd with a ```python block."})
    _jsonl(root / "Multilingual-Multimodal-NLP/TableBench/TableBench.jsonl", rows)
    (root / "Multilingual-Multimodal-NLP/TableBench/README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: test\n    path: TableBench.jsonl\n---\n")
    train = [{"id": f"ti{i}", "qtype": "NumericalReasoning", "qsubtype": "Aggregation", "instruction_type": "DP", "table": _table(100 + i),
              "question": f"Total wins {i}?", "answer": str(i), "chart_type": "",
              "instruction": f"Table: {_table(100 + i)}\nTotal wins {i}?"} for i in range(20)]
    train += [{"id": f"tiv{i}", "qtype": "Visualization", "qsubtype": "ChartGeneration", "instruction_type": "TCoT", "table": _table(200 + i),
               "question": f"Plot wins {i}.", "chart_type": "bar", "instruction": f"Table: {_table(200 + i)}\nPlot wins {i}.",
               "answer": "```python\nimport pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.read_csv('table.csv')\n"
                         "plt.bar(df['team'], df['wins'])\nplt.show()\n```"} for i in range(10)]
    _jsonl(root / "Multilingual-Multimodal-NLP/TableInstruct/TableInstruct_instructions.jsonl", train)


def _bio(root: Path) -> None:
    base = root / "bowenxian/BioProBench"
    _card(base, "".join(f"- config_name: {t}\n  data_files:\n  - split: train\n    path: {t}.json\n  - split: test\n    path: {t}_test.json\n"
                        for t in ("PQA", "ERR", "ORD", "GEN")))

    def pqa(i: int, split: str) -> dict[str, Any]:
        q = PLANTED if (split, i) == ("test", 9) else f"Which reagent does step {i} of the {split} protocol {i * 7} use?"
        choices = [f"Buffer {i}", f"Ethanol {i}", f"Water {i}", f"Trizol {i}"]
        return {"question": q, "choices": choices, "answer": choices[i % 4], "type": ["parameter", "reagent", "operation"][i % 3],
                "id": f"pqa-{split}-{i}"}

    train = [pqa(i, "train") for i in range(240)] + [{**pqa(9, "test"), "id": "pqa-train-planted"}]  # a test question in train
    (base / "PQA.json").write_text(json.dumps(train))
    (base / "PQA_test.json").write_text(json.dumps([pqa(i, "test") for i in range(12)]))

    def ord_(i: int, split: str) -> dict[str, Any]:
        steps = [f"Step {s} of {split} protocol {i}: {verb}" for s, verb in enumerate(["thaw cells", "spin down", "wash twice", "resuspend"])]
        wrong = steps[i % 4:] + steps[: i % 4]
        return {"question": f"Order the steps of {split} protocol {i}.", "wrong_steps": wrong, "correct_steps": steps,
                "type": "top" if i % 2 else "child", "id": f"ord-{split}-{i}"}

    (base / "ORD.json").write_text(json.dumps([ord_(i, "train") for i in range(240)]))
    (base / "ORD_test.json").write_text(json.dumps([ord_(i, "test") for i in range(8)]))

    def gen(i: int, split: str) -> dict[str, Any]:
        return {"system_prompt": "You are a lab assistant.", "instruction": "Write numbered steps.",
                "input": f"Extract RNA from {split} sample {i}.", "output": [f"1. Lyse sample {i}.", "2. Add chloroform.", "3. Spin."],
                "id": f"gen-{split}-{i}", "type": "easy"}

    (base / "GEN.json").write_text(json.dumps([gen(i, "train") for i in range(240)]))
    (base / "GEN_test.json").write_text(json.dumps([gen(i, "test") for i in range(6)]))
    def err(i: int, split: str) -> dict[str, Any]:  # a correct step is in corrected_text; a wrong one in corrupted_text
        ok = i % 2 == 0
        return {"context": {"purpose": f"Isolate RNA from {split} tissue {i}.", "prior_step": f"Homogenise sample {i}.",
                            "next_step": "Add chloroform."}, "corrupted_text": None if ok else f"Incubate sample {i} at 95 C for 2 h.",
                "corrected_text": f"Incubate sample {i} at room temperature for 5 min.", "is_correct": ok,
                "type": "correct" if ok else "parameter", "error_description": "" if ok else "Wrong temperature.", "id": f"err-{split}-{i}"}

    (base / "ERR.json").write_text(json.dumps([err(i, "train") for i in range(240)]))
    (base / "ERR_test.json").write_text(json.dumps([err(i, "test") for i in range(8)]))


FINANCE_SUBJECTS = {"银行从业资格": 12, "注册会计师（CPA）": 7}
"""FinanceIQ subjects of the fixture and their test rows (upstream: 10 subjects, 7,173 questions)."""


def _finance(root: Path) -> None:
    """FinanceIQ as the repository ships it: ``data/{dev,test}/<subject>.csv``, an unnamed index column and
    ``Question, A, B, C, D, Answer`` (OpenCompass's ``FinanceIQDataset`` reads the same files)."""
    import csv

    base = root / "Duxiaoman-DI/FinanceIQ/data"
    for split, counts in (("dev", {k: 5 for k in FINANCE_SUBJECTS}), ("test", FINANCE_SUBJECTS)):
        (base / split).mkdir(parents=True, exist_ok=True)
        for subject, n in counts.items():
            with open(base / split / f"{subject}.csv", "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["", "Question", "A", "B", "C", "D", "Answer"])
                for i in range(n):
                    w.writerow([i, f"{subject}{split}题{i}：下列关于利率{i}的说法，正确的是？", f"选项甲{i}", f"选项乙{i}", f"选项丙{i}",
                                f"选项丁{i}", "ABCD"[i % 4]])


def build(root: Path) -> Path:
    """Write every fixture repository under ``root``; returns ``root``."""
    for make in (_math, _patents, _chem, _tables, _bio, _finance):
        make(root)
    return root
