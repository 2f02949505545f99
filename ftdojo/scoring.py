"""Answer extraction and scoring: small, pure, registry-backed.

A task names its extractor pattern and metric; the evaluator and the
validator (parseable-target check) use the same functions, so "what counts as
parseable" is one definition.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from ftdojo import tasking
from ftdojo.errors import UnknownName


def extract(output: str, pattern: str) -> str | None:
    """Last match of ``pattern``'s first group in ``output`` (None: unparseable)."""
    matches = re.findall(pattern, output)
    if not matches:
        return None
    last = matches[-1]
    value = last[0] if isinstance(last, tuple) else last
    return normalize(value)


def normalize(value: str) -> str:
    return value.strip().rstrip(".").strip().replace(",", "") if value else value


def _as_number(value: str) -> float | None:
    try:
        return float(Fraction(value))
    except (ValueError, ZeroDivisionError):
        try:
            return float(value)
        except ValueError:
            return None


def exact(pred: str, gold: str, tolerance: float = 0.0) -> float:
    return float(normalize(pred).lower() == normalize(gold).lower())


def numeric(pred: str, gold: str, tolerance: float = 1e-6) -> float:
    p, g = _as_number(normalize(pred)), _as_number(normalize(gold))
    if p is None or g is None or math.isnan(p):
        return 0.0
    return float(abs(p - g) <= tolerance * max(1.0, abs(g)))


def choice(pred: str, gold: str, tolerance: float = 0.0) -> float:
    """Choice accuracy: the chosen option (letter or label), case-insensitive, ignoring brackets."""
    def key(v: str) -> str:
        return normalize(v).strip("()[] ").lower()

    return float(key(pred) == key(gold))


def f1(pred: str, gold: str, tolerance: float = 0.0) -> float:
    """Token F1 between the extracted answer and the gold answer (partial credit for names)."""
    p, g = normalize(pred).lower().split(), normalize(gold).lower().split()
    common = sum(min(p.count(w), g.count(w)) for w in set(p))
    if not p or not g or not common:
        return float(p == g)
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def _math_parse(text: str) -> list[Any]:
    import logging

    from math_verify import parse

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return parse(text, parsing_timeout=None)  # type: ignore[arg-type]  # signal-based timeouts need the main thread


def math_answer(output: str) -> str | None:
    """The final answer math-verify finds in a whole output (``\\boxed{}`` first), as written."""
    parsed = _math_parse(output)
    return str(parsed[-1]) if parsed else None


def math_equiv(pred: str, gold: str, tolerance: float = 0.0) -> float:
    """Mathematical equivalence by math-verify (Hugging Face, the Open R1 / lighteval scorer):
    ``\\frac{1}{2}`` = ``0.5``, ``x(x+2)`` = ``x^2+2x``. ``pred`` is the whole output."""
    from math_verify import verify

    gold_parsed = _math_parse(gold if "$" in gold or "\\boxed" in gold else f"${gold}$")
    return float(bool(gold_parsed) and verify(gold_parsed, _math_parse(pred), timeout_seconds=None))  # type: ignore[arg-type]


def rouge_l(pred: str, gold: str, tolerance: float = 0.0) -> float:
    """ROUGE-L F-measure (longest common subsequence; Lin 2004), by Google's ``rouge-score``."""
    from rouge_score import rouge_scorer

    return float(rouge_scorer.RougeScorer(["rougeL"]).score(gold, pred)["rougeL"].fmeasure)


_LABEL_SPLIT = re.compile(r"[,;\s]+")


def labels(value: str) -> set[str]:
    """A label set from ``A, C`` / ``A;C`` / ``["A", "C"]``, case-insensitive."""
    return {x.strip("[]()'\"").lower() for x in _LABEL_SPLIT.split(value) if x.strip("[]()'\"")}


def set_f1(pred: str, gold: str, tolerance: float = 0.0) -> float:
    """F1 between the predicted and the gold label sets (multi-label answers: PANORAMA PAR4PC)."""
    p, g = labels(pred), labels(gold)
    if not p or not g:
        return float(p == g)
    tp = len(p & g)
    return 0.0 if tp == 0 else 2 * tp / (len(p) + len(g))


def _gold_silver(gold: str) -> tuple[set[str], set[str]]:
    """``A, C | B``: gold labels before the bar, partly-right (silver) ones after it."""
    g, _, silver = gold.partition("|")
    return labels(g), labels(silver)


def prior_art(pred: str, gold: str, tolerance: float = 0.0) -> float:
    """PANORAMA PAR4PC's custom score over the cited set: (2·TP − FP − FN) / (2·|gold|), floored at 0,
    where a silver label predicted is no false positive. Gold is written ``A, C | B``."""
    g, silver = _gold_silver(gold)
    p = labels(pred)
    if not g:
        return float(not p)
    tp, fp, fn = len(p & g), len(p - g - silver), len(g - p)
    return max(0.0, (2 * tp - fp - fn) / (2 * len(g)))


def gold_silver(pred: str, gold: str, tolerance: float = 0.0) -> float:
    """PANORAMA PI4PC's custom score for one chosen key, scaled to [0, 1]: a gold key 1, a silver key
    0.5 (the benchmark's 2 and 1), anything else 0. Gold is written ``17 | 12, 30``."""
    g, silver = _gold_silver(gold)
    p = labels(pred)
    if len(p) != 1:
        return 0.0
    return 1.0 if p <= g else 0.5 if p <= silver else 0.0


def macro_f1_corpus(preds: list[str | None], golds: list[str]) -> float:
    """Macro-F1 over the gold classes (scikit-learn's ``f1_score(average='macro')`` over the labels
    that occur in gold): a class no prediction names scores 0, an unparseable output is wrong."""
    classes = sorted({normalize(g).lower() for g in golds})
    norm = [None if p is None else normalize(p).lower() for p in preds]
    gold = [normalize(g).lower() for g in golds]
    f1s = []
    for c in classes:
        tp = sum(p == c and g == c for p, g in zip(norm, gold))
        fp = sum(p == c and g != c for p, g in zip(norm, gold))
        fn = sum(p != c and g == c for p, g in zip(norm, gold))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s) if f1s else 0.0


def _sequence(value: str) -> list[str]:
    lines = [ln.strip() for ln in value.strip().splitlines() if ln.strip()]
    if len(lines) <= 1:  # "3, 1, 2" or "[3, 1, 2]"
        lines = [x for x in re.split(r"[,\s\[\]]+", value) if x]
    return [normalize(re.sub(r"^\s*(\d+[.)]|[-*])\s+", "", ln)).lower() for ln in lines]


def kendall_tau(pred: str, gold: str, tolerance: float = 0.0) -> float:
    """Kendall's tau-a between the predicted and the gold order of the same elements (step ordering:
    BioProBench ORD): 1 in order, -1 reversed. A prediction that is not a permutation of the gold
    elements scores -1."""
    p, g = _sequence(pred), _sequence(gold)
    if sorted(p) != sorted(g) or len(set(g)) != len(g):
        return -1.0
    if len(g) < 2:
        return 1.0
    pos = {x: i for i, x in enumerate(p)}
    ranks = [pos[x] for x in g]
    n = len(ranks)
    concordant = sum(ranks[i] < ranks[j] for i in range(n) for j in range(i + 1, n))
    return (2 * concordant - n * (n - 1) / 2) / (n * (n - 1) / 2)


def _mol(smiles: str) -> Any:
    """An RDKit molecule, or None for text that is no SMILES (RDKit's parse warnings silenced)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    return Chem.MolFromSmiles(smiles.strip()) if smiles and smiles.strip() else None


def _canonical(smiles: str) -> str | None:
    from rdkit import Chem

    mol = _mol(smiles)
    return Chem.MolToSmiles(mol) if mol is not None else None


def smiles_equiv(pred: str, gold: str, tolerance: float = 0.0) -> float:
    """Same molecule: equal RDKit canonical SMILES (``OCC`` = ``CCO``); an invalid SMILES scores 0."""
    p, g = _canonical(pred), _canonical(gold)
    return float(p is not None and p == g)


def tanimoto(pred: str, gold: str, tolerance: float = 0.0) -> float:
    """Tanimoto similarity of Morgan fingerprints (radius 2, 1024 bits) of two SMILES: ChemCoTBench's
    Murcko-scaffold score; an invalid SMILES scores 0."""
    from rdkit import DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    a, b = _mol(pred), _mol(gold)
    if a is None or b is None:
        return 0.0
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    return float(DataStructs.TanimotoSimilarity(gen.GetFingerprint(a), gen.GetFingerprint(b)))


def abs_error(pred: str, gold: str, tolerance: float = 0.0) -> float:
    """Absolute error of a count (ChemCoTBench's functional-group and ring counts report its mean, MAE;
    lower is better). ``score_outputs`` scores an unparseable output as a prediction of 0, as the benchmark does."""
    p, g = _as_number(normalize(pred)), _as_number(normalize(gold))
    if g is None:
        return float("nan")
    return abs((p if p is not None and not math.isnan(p) else 0.0) - g)


def smiles_valid(pred: str, gold: str, tolerance: float = 0.0) -> float:
    """Whether the prediction is a SMILES RDKit can parse (validity rate)."""
    return float(_canonical(pred) is not None)


def chart_pass(output: str, gold: str, tolerance: float = 0.0) -> float:
    """TableBench visualisation Pass@1: the output's plotting code, run in the sandbox on the item's
    table, draws the reference values (``ftdojo.charts``)."""
    from ftdojo import charts

    return charts.chart_pass(output, gold, tolerance)


def chart_code(output: str) -> str | None:
    """The plotting code a visualisation output ends with (None: unparseable)."""
    from ftdojo import charts

    return charts.code_block(output)


GROUP_SMARTS = {
    "benzene": "[cR1]1[cR1][cR1][cR1][cR1][cR1]1", "benzene_ring": "[cR1]1[cR1][cR1][cR1][cR1][cR1]1",
    "hydroxyl": "[OX2H]", "aldehyde": "[CX3H1](=O)[#6]", "ketone": "[#6][CX3](=O)[#6]", "carboxyl": "[CX3](=O)[OX2H1]",
    "ester": "[#6][CX3](=O)[OX2H0][#6]", "anhydride": "[CX3](=[OX1])[OX2][CX3](=[OX1])", "amine": "[NX3;H2,H1;!$(NC=O)]",
    "amide": "[NX3][CX3](=[OX1])[#6]", "nitro": "[$([NX3](=O)=O),$([NX3+](=O)[O-])][!#8]", "halo": "[F,Cl,Br,I]",
    "thiol": "[#16X2H]", "thioether": "[SX2][CX4]", "disulfide": "[#16X2H0][#16X2H0]",
    "sulfoxide": "[$([#16X3]=[OX1]),$([#16X3+][OX1-])]", "sulfone": "[$([#16X4](=[OX1])=[OX1]),$([#16X4+2]([OX1-])[OX1-])]",
    "sulfide": "[#16X2H0]", "nitrile": "[NX1]#[CX2]", "borane": "[BX3]",
}
"""ChemCoTBench's functional groups (``baseline_and_eval/eval/eval_moledit.py``), as SMARTS."""


def group_count(mol: Any, group: str) -> int:
    """Matches of a ChemCoTBench functional group in a molecule (a sulfide counts no disulfide's sulfur pair)."""
    from rdkit import Chem

    n = len(mol.GetSubstructMatches(Chem.MolFromSmarts(GROUP_SMARTS[group])))
    if group == "sulfide":
        n -= len(mol.GetSubstructMatches(Chem.MolFromSmarts(GROUP_SMARTS["disulfide"])))
    return n


def _gold_json(gold: str) -> dict[str, Any]:
    import json

    try:
        obj = json.loads(gold)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def mol_edit(pred: str, gold: str, tolerance: float = 0.0) -> float:
    """ChemCoTBench molecule editing: 1 when the predicted molecule is valid and has one more of the
    group to add (``add``), one fewer of the group to remove (``delete``), or both (``sub``) than the
    source. Gold is ``{"op": "add"|"delete"|"sub", "source": SMILES, "add": group, "remove": group}``;
    an unknown group scores 0, as in the benchmark's ``eval_moledit.py``."""
    g = _gold_json(gold)
    src, tgt = _mol(str(g.get("source") or "")), _mol(pred)
    op, add, remove = g.get("op"), g.get("add") or "", g.get("remove") or ""
    if src is None or tgt is None:
        return 0.0
    checks = {"add": [(add, 1)], "delete": [(remove, -1)], "sub": [(remove, -1), (add, 1)]}.get(str(op), [])
    if not checks or any(grp not in GROUP_SMARTS for grp, _ in checks):
        return 0.0
    return float(all(group_count(tgt, grp) == group_count(src, grp) + d for grp, d in checks))


def esol(mol: Any) -> float:
    """Delaney's ESOL solubility estimate (log mol/L) with ChemCoTBench's fitted coefficients
    (``baseline_and_eval/eval/eval_metric.py``)."""
    from rdkit import Chem
    from rdkit.Chem import Crippen, Descriptors, Lipinski

    aromatic = len(mol.GetSubstructMatches(Chem.MolFromSmarts("a"))) / max(1, mol.GetNumAtoms())
    return (0.26121066137801696 - 0.7416739523408995 * Crippen.MolLogP(mol) - 0.0066138847738667125 * Descriptors.MolWt(mol)
            + 0.003451545565957996 * Lipinski.NumRotatableBonds(mol) - 0.42624840441316975 * aromatic)


PROPERTIES: dict[str, Callable[[Any], float]] = {}
"""ChemCoTBench's physicochemical oracles, by subtask: Crippen logP, QED, ESOL solubility (the target
oracles ``drd``/``jnk``/``gsk`` are trained models from TDC, not computable offline)."""


def _properties() -> dict[str, Callable[[Any], float]]:
    if not PROPERTIES:
        from rdkit.Chem import QED, Crippen

        PROPERTIES.update({"logp": Crippen.MolLogP, "qed": QED.qed, "solubility": esol})
    return PROPERTIES


def mol_opt(pred: str, gold: str, tolerance: float = 0.0) -> float:
    """ChemCoTBench molecule optimisation's success: 1 when the predicted molecule is valid and improves
    the property over the source (improvement > 0, the benchmark's success rate). Gold is
    ``{"source": SMILES, "property": "logp"|"qed"|"solubility"}``."""
    g = _gold_json(gold)
    oracle = _properties().get(str(g.get("property")))
    src, tgt = _mol(str(g.get("source") or "")), _mol(pred)
    if oracle is None or src is None or tgt is None:
        return 0.0
    return float(oracle(tgt) - oracle(src) > 0)


METRICS: dict[str, Callable[[str, str, float], float]] = {
    "exact": exact, "numeric": numeric, "choice": choice, "f1": f1, "math": math_equiv, "rouge_l": rouge_l,
    "set_f1": set_f1, "prior_art": prior_art, "gold_silver": gold_silver, "macro_f1": exact, "kendall_tau": kendall_tau, "smiles": smiles_equiv, "smiles_valid": smiles_valid, "tanimoto": tanimoto,
    "abs_error": abs_error, "mol_edit": mol_edit, "mol_opt": mol_opt, "chart": chart_pass,
}
"""Per-item metrics. ``macro_f1``'s per-item score is its exact match (for paired tests); its split
score is ``CORPUS['macro_f1']``."""

CORPUS: dict[str, Callable[[list[str | None], list[str]], float]] = {"macro_f1": macro_f1_corpus}
"""Metrics whose split score is computed over the whole split, not averaged over items."""

WHOLE_OUTPUT = {"math": math_answer, "chart": chart_code}
"""Metrics that read the whole output with their own extractor instead of the task's pattern."""

LOWER_IS_BETTER = tasking.LOWER_IS_BETTER


def metric(name: str) -> Callable[[str, str, float], float]:
    try:
        return METRICS[name]
    except KeyError:
        raise UnknownName("metric", name, list(METRICS)) from None


def score_outputs(
    outputs: list[str], golds: list[str], pattern: str, metric_name: str, tolerance: float = 1e-6
) -> tuple[list[float], list[str | None]]:
    """Per-item scores and extractions; an unparseable output scores 0 (``kendall_tau``: -1)."""
    fn = metric(metric_name)
    floor = -1.0 if metric_name == "kendall_tau" else 0.0
    if metric_name == "abs_error":  # lower is better: an unparseable output predicts 0
        extracted = [extract(o, pattern) for o in outputs]
        return [fn(e if e is not None else "0", g, tolerance) for e, g in zip(extracted, golds, strict=True)], extracted
    if metric_name in WHOLE_OUTPUT:
        extracted = [WHOLE_OUTPUT[metric_name](o) for o in outputs]
        scores = [floor if e is None else fn(o, g, tolerance) for o, e, g in zip(outputs, extracted, golds, strict=True)]
        return scores, extracted
    extracted = [extract(o, pattern) for o in outputs]
    scores = [floor if e is None else fn(e, g, tolerance) for e, g in zip(extracted, golds, strict=True)]
    return scores, extracted


def split_score(metric_name: str, item_scores: list[float], extracted: list[str | None], golds: list[str]) -> float:
    """The split's score: the corpus metric where the task has one, else the mean item score."""
    if metric_name in CORPUS:
        return CORPUS[metric_name](extracted, golds)
    return sum(item_scores) / len(item_scores) if item_scores else 0.0


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021, Codex): 1 - C(n-c,k)/C(n,k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))
