"""Chemistry domain: real compounds from the ``chemicals`` package's PubChem
table (names, formulas, SMILES), with answers computed by RDKit.

Tasks: count the carbon atoms in a molecular formula; count the rings of a
molecule given as SMILES; pick the functional group a molecule contains
(four options). Every answer is computed from the input alone (``solve``),
which is also the domain's oracle (the suite's own tests; agents never get
it).
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Container
from functools import cache

from ftdojo.tasking import Domain, Row, SourceSpec, Suggestion, TaskSpec
from tasks import _kit
from tasks._kit import Question

# Functional groups as SMARTS; a molecule is asked about only a group it has, among three it lacks.
GROUPS = {
    "alcohol": "[CX4][OX2H]",
    "carboxylic acid": "[CX3](=O)[OX2H1]",
    "primary amine": "[NX3;H2][CX4]",
    "ketone": "[#6][CX3](=O)[#6]",
    "aldehyde": "[CX3H1](=O)[#6]",
    "ester": "[#6][CX3](=O)[OX2H0][#6]",
    "nitrile": "[NX1]#[CX2]",
    "amide": "[NX3][CX3](=[OX1])",
    "thiol": "[#6][SX2H]",
    "alkyl halide": "[CX4][Cl,Br,I]",
}
MOTIFS = {
    "alcohol": "an O-H on a saturated carbon",
    "carboxylic acid": "C(=O)O-H",
    "primary amine": "an NH2 on a saturated carbon",
    "ketone": "C=O between two carbons",
    "aldehyde": "a terminal CH=O",
    "ester": "C(=O)O with carbon on both sides",
    "nitrile": "C#N",
    "amide": "N bonded to C=O",
    "thiol": "an S-H",
    "alkyl halide": "Cl, Br or I on a saturated carbon",
}
LETTERS = "ABCD"
_NAME = re.compile(r"^[a-z][a-z0-9,\-() ]{3,32}$")
_CODE = re.compile(r"^[a-z]{2,6}[- ]?\d")


@cache
def compounds() -> list[tuple[str, str, str]]:
    """(name, formula, SMILES) of small organic compounds with a plain common name, by PubChem CID."""
    import chemicals.identifiers as ids

    out = []
    with open(os.path.join(ids.folder, "chemical identifiers pubchem large.tsv")) as f:
        for line in f:
            col = line.rstrip("\n").split("\t")
            if len(col) < 9:
                continue
            formula, smiles, name = col[2], col[4], col[8]
            if not re.fullmatch(r"C\d*H\d*(?:[NOSFClBrI]\d*)*", formula) or "." in smiles or "+" in smiles or "-]" in smiles:
                continue
            if len(smiles) > 36 or "@" in smiles or "/" in smiles or "\\" in smiles:
                continue
            if not _NAME.match(name) or _CODE.match(name) or re.search(r"\d{3}", name) or sum(ch.isalpha() for ch in name) < 5:
                continue
            if carbons(formula) > 24:
                continue
            out.append((int(col[0]), name, formula, smiles))
    out.sort()
    return [(n, f, s) for _, n, f, s in out]


def carbons(formula: str) -> int:
    m = re.match(r"C(\d*)(?![laurd])", formula)
    return (int(m.group(1)) if m.group(1) else 1) if m else 0


@cache
def _mol(smiles: str):
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    return Chem.MolFromSmiles(smiles)


@cache
def _patterns() -> dict:
    from rdkit import Chem

    return {g: Chem.MolFromSmarts(s) for g, s in GROUPS.items()}


def rings(smiles: str) -> int | None:
    from rdkit.Chem import rdMolDescriptors

    mol = _mol(smiles)
    return None if mol is None else rdMolDescriptors.CalcNumRings(mol)


def groups(smiles: str) -> set[str]:
    mol = _mol(smiles)
    return set() if mol is None else {g for g, p in _patterns().items() if mol.HasSubstructMatch(p)}


def ring_labels(smiles: str) -> list[str]:
    """Ring-bond labels in SMILES order, outside bracket atoms."""
    return re.findall(r"%\d\d|\d", re.sub(r"\[[^\]]*\]", "", smiles))


# --- items -----------------------------------------------------------------------------------------


def _size(n: int) -> str:
    return "C1-5" if n <= 5 else "C6-10" if n <= 10 else "C11+"


def carbon_q(rng: random.Random) -> Question:
    name, formula, _ = rng.choice(compounds())
    n = carbons(formula)
    q = f"How many carbon atoms are in one molecule of {name}, molecular formula {formula}?"
    why = f"In {formula} the symbol C is followed by {n if n > 1 else 'no number'}, so one molecule has {n} carbon atom{'s' * (n != 1)}."
    return Question(q, str(n), _size(n), why)


def rings_q(rng: random.Random) -> Question:
    while True:
        _, _, smiles = rng.choice(compounds())
        n = rings(smiles)
        labels = ring_labels(smiles)
        if n is not None and len(labels) == 2 * n and rng.random() < (1.0 if n else 0.35):  # fewer acyclic items
            break
    q = f"How many rings does the molecule with SMILES {smiles} contain?"
    why = (f"Ring-bond labels in {smiles}: {' '.join(labels)}; each pair closes one ring, so {n} ring{'s' * (n != 1)}."
           if n else f"{smiles} has no ring-bond digits, so it has 0 rings.")
    return Question(q, str(n), "acyclic" if n == 0 else "one ring" if n == 1 else "polycyclic", why)


@cache
def _by_group() -> dict[str, list[str]]:
    """Group -> SMILES of the compounds that have that group and no other listed one."""
    index: dict[str, list[str]] = {g: [] for g in GROUPS}
    for _, _, smiles in compounds():
        has = groups(smiles)
        if len(has) == 1:
            index[next(iter(has))].append(smiles)
    return index


def group_q(rng: random.Random) -> Question:
    group = rng.choice(list(GROUPS))
    smiles = rng.choice(_by_group()[group])
    options = rng.sample([g for g in GROUPS if g != group], 3) + [group]
    rng.shuffle(options)
    letter = LETTERS[options.index(group)]
    q = (f"Which functional group does the molecule with SMILES {smiles} contain? "
         + " ".join(f"{LETTERS[i]}) {o}" for i, o in enumerate(options)))
    why = f"{smiles} has {MOTIFS[group]}, which makes it {'an' if group[0] in 'aeiou' else 'a'} {group}; none of the other options appear, so {letter}."
    return Question(q, letter, group, why)


DRAW = {"chem-carbons": carbon_q, "chem-rings": rings_q, "chem-group": group_q}


def solve(task_input: str) -> str | None:
    """The answer to any chemistry item, computed from its text (None: not a known form)."""
    if m := re.search(r"molecular formula (\S+)\?$", task_input):
        return str(carbons(m.group(1)))
    if m := re.search(r"SMILES (\S+) contain\?$", task_input):
        n = rings(m.group(1))
        return None if n is None else str(n)
    if m := re.search(r"SMILES (\S+) contain\? (A\) .*)$", task_input):
        options = re.findall(r"([ABCD])\) ([a-z ]+?)(?= [ABCD]\)|$)", m.group(2))
        has = groups(m.group(1))
        right = [letter for letter, g in options if g in has]
        return right[0] if len(right) == 1 else None
    return None


def verify(task_input: str, answer: str) -> bool | None:
    gold = solve(task_input.strip())
    return None if gold is None else answer.strip().upper() == gold.upper()


# --- raw sources ------------------------------------------------------------------------------------


def _held_out(reserved) -> set[str]:
    """Names and SMILES of the compounds that dev or test items ask about: no source mentions them."""
    out: set[str] = set()
    for text in getattr(reserved, "inputs", []):
        if m := re.search(r"molecule of (.+), molecular formula", text):
            out.add(m.group(1))
        if m := re.search(r"SMILES (\S+) contain\?", text):
            out.add(m.group(1))
    return out


def _registry(rng: random.Random, reserved: Container[str]) -> list[Row]:
    """The compound table, without the compounds that dev or test items ask about."""
    rows = []
    held = _held_out(reserved)
    for name, formula, smiles in compounds():
        n_rings = rings(smiles)
        if n_rings is None or name in held or smiles in held:
            continue
        keys = (f"How many carbon atoms are in one molecule of {name}, molecular formula {formula}?",
                f"How many rings does the molecule with SMILES {smiles} contain?")
        if any(k in reserved for k in keys):  # the repository would drop the row later; skip it here to keep 4000
            continue
        rows.append({"name": name, "formula": formula, "smiles": smiles, "carbon_atoms": carbons(formula),
                     "ring_count": n_rings, "groups": "; ".join(sorted(groups(smiles)))})
        if len(rows) >= 4000:
            break
    return rows


class _Unseen:
    """Reserved inputs plus every input about a held-out compound."""

    def __init__(self, reserved) -> None:
        self.reserved, self.held = reserved, _held_out(reserved)

    def __contains__(self, q: object) -> bool:
        if not isinstance(q, str):
            return False
        m = re.search(r"molecule of (.+), molecular formula|SMILES (\S+) contain\?", q)
        return q in self.reserved or bool(m and (m.group(1) or m.group(2)) in self.held)


def _tutor(rng: random.Random, reserved: Container[str]) -> list[Row]:
    return _kit.question_rows(rng, _Unseen(reserved), 2400, DRAW, lambda r, task, q: {
        "question": q.input, "worked_answer": q.why, "answer": q.answer, "topic": q.category})


def _forum(rng: random.Random, reserved: Container[str]) -> list[Row]:
    def row(r: random.Random, task: str, q: Question) -> Row:
        if task == "chem-group":
            reply = _kit.noisy(r, q.answer, lambda r: _kit.wrong_choice(r, q.answer, list(LETTERS)))
        else:
            reply = _kit.noisy(r, q.answer, lambda r: _kit.wrong_integer(r, int(q.answer)))
        return {"thread": f"Homework check: {q.input}", "question": q.input, "best_reply": reply, "upvotes": r.randint(0, 60)}

    return _kit.question_rows(rng, _Unseen(reserved), 2400, DRAW, row)


_TUTOR_HINT = Suggestion("{question}", "{answer}", "{worked_answer}")
SOURCES = (
    SourceSpec(
        name="compound_registry",
        format="csv",
        readme="Small organic compounds from PubChem with identifiers and computed descriptors. Columns: name, "
        "formula (Hill order), smiles (canonical), carbon_atoms, ring_count (SSSR), groups (functional groups "
        "found by substructure search, ';'-separated).",
        fields={"name": "common name", "formula": "molecular formula", "smiles": "SMILES", "carbon_atoms": "carbon count",
                "ring_count": "number of rings", "groups": "functional groups"},
        build=_registry,
        per_task={
            "chem-carbons": Suggestion("How many carbon atoms are in one molecule of {name}, molecular formula {formula}?", "{carbon_atoms}"),
            "chem-rings": Suggestion("How many rings does the molecule with SMILES {smiles} contain?", "{ring_count}"),
        },
        role="clean",
    ),
    SourceSpec(
        name="chem_tutor_solutions",
        format="parquet",
        readme="Worked answers to chemistry structure questions (formulas, rings, functional groups), written "
        "by tutors. Fields: question, worked_answer (explanation ending in the answer), answer, topic.",
        fields={"question": "question", "worked_answer": "explanation", "answer": "final answer", "topic": "topic"},
        build=_tutor,
        per_task={t: _TUTOR_HINT for t in DRAW},
        role="traces",
    ),
    SourceSpec(
        name="chem_homework_forum",
        format="jsonl",
        readme="Threads from a chemistry homework forum with the reply voted best. Fields: thread (raw post), "
        "question (extracted), best_reply, upvotes.",
        fields={"thread": "raw post", "question": "question", "best_reply": "best-voted answer", "upvotes": "upvotes"},
        build=_forum,
        per_task={t: Suggestion("{question}", "{best_reply}") for t in DRAW},
        role="noisy",
    ),
    _kit.airport_facts(),
    _kit.leak_trap("chem_quiz_crawl", "chemistry", _kit.filler(DRAW)),
)

DOMAIN = Domain(
    name="chemistry",
    description="Structure questions about real compounds (PubChem via `chemicals`), answers computed with RDKit.",
    sources=SOURCES,
    origin=__name__,
    depends=("tasks._kit",),
    oracle=verify,
    tasks=(
        TaskSpec(
            id="chem-carbons",
            domain="chemistry",
            description="Count the carbon atoms in a compound's molecular formula.",
            instruction="Reply with the count as 'Answer: <integer>'.",
            answer_format=_kit.INT_FORMAT,
            answer_template=_kit.ANSWER_TEMPLATE,
            answer_pattern=_kit.INT_PATTERN,
            metric="numeric",
            categories=("C1-5", "C6-10", "C11+"),
            generate=_kit.generator("chem-carbons", carbon_q),
            dev_size=60, test_size=120, max_new_tokens=48, seed=21,
        ),
        TaskSpec(
            id="chem-rings",
            domain="chemistry",
            description="Count the rings (smallest set of smallest rings) of a molecule given as SMILES.",
            instruction="Reply with the number of rings as 'Answer: <integer>'.",
            answer_format=_kit.INT_FORMAT,
            answer_template=_kit.ANSWER_TEMPLATE,
            answer_pattern=_kit.INT_PATTERN,
            metric="numeric",
            categories=("acyclic", "one ring", "polycyclic"),
            generate=_kit.generator("chem-rings", rings_q),
            dev_size=60, test_size=120, max_new_tokens=64, seed=22,
        ),
        TaskSpec(
            id="chem-group",
            domain="chemistry",
            description="Pick the functional group a molecule (SMILES) contains, out of four options.",
            instruction="Reply with the letter of the right option as 'Answer: <letter>'.",
            answer_format="A line 'Answer: A', 'Answer: B', 'Answer: C' or 'Answer: D'.",
            answer_template=_kit.ANSWER_TEMPLATE,
            answer_pattern=r"Answer:\s*\(?([A-Da-d])\b",
            metric="choice",
            categories=tuple(GROUPS),
            generate=_kit.generator("chem-group", group_q),
            dev_size=60, test_size=120, max_new_tokens=64, seed=23,
        ),
    ),
)
