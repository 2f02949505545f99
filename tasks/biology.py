"""Biology domain: DNA sequence questions on Biopython's reference data — the
standard genetic code (NCBI table 1) and the REBASE restriction-enzyme
sites that ``Bio.Restriction`` ships.

Tasks: translate a short reading frame (2-3 codons) into protein; say whether a
sequence holds an enzyme's recognition site; count the G and C bases of a
sequence. Sequences are drawn from a seed; answers are computed with
Biopython (``solve``), which is also the domain's verifier.
"""

from __future__ import annotations

import random
import re
from collections.abc import Container
from functools import cache

from ftdojo.tasking import Domain, Row, SourceSpec, Suggestion, TaskSpec
from tasks import _kit
from tasks._kit import Question

BASES = "ACGT"


@cache
def codons() -> dict[str, str]:
    """Sense codon -> one-letter amino acid, standard code."""
    from Bio.Data import CodonTable

    return dict(sorted(CodonTable.unambiguous_dna_by_id[1].forward_table.items()))


@cache
def enzymes() -> list[tuple[str, str]]:
    """(name, site) of REBASE enzymes with a plain palindromic-or-not 6-base site, by name."""
    from Bio import Restriction

    found = {str(e): e.site for e in Restriction.AllEnzymes if len(e.site) == 6 and set(e.site) <= set(BASES)}
    by_site: dict[str, str] = {}
    for name in sorted(found):
        by_site.setdefault(found[name], name)  # one enzyme per site (isoschizomers share one)
    return sorted((n, s) for s, n in by_site.items())


def translate(seq: str) -> str:
    """The protein of a coding sequence, in three-letter codes joined by hyphens ('Met-Ala-Lys')."""
    from Bio.Data.IUPACData import protein_letters_1to3
    from Bio.Seq import Seq

    return "-".join(protein_letters_1to3[a] for a in str(Seq(seq).translate()))


def _seq(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(BASES) for _ in range(n))


def translate_q(rng: random.Random) -> Question:
    n = rng.randint(2, 3)
    cods = [rng.choice(list(codons())) for _ in range(n)]
    protein = translate("".join(cods))
    q = f"Translate the DNA codons {' '.join(cods)} into protein, using three-letter amino-acid codes."
    why = "; ".join(f"{c} codes for {a}" for c, a in zip(cods, protein.split("-"), strict=True)) + f"; so the protein is {protein}."
    return Question(q, protein, f"{n} codons", why)


def site_q(rng: random.Random) -> Question:
    name, site = rng.choice(enzymes())
    present = rng.random() < 0.5
    while True:
        seq = _seq(rng, 24)
        if present:
            at = rng.randrange(24 - 6 + 1)
            seq = seq[:at] + site + seq[at + 6 :]
        if (site in seq) == present:
            break
    answer = "yes" if present else "no"
    q = f"Does the DNA sequence {seq} contain the {name} recognition site {site}? Options: yes, no"
    why = (f"{site} occurs at position {seq.index(site) + 1} of the sequence, so yes." if present
           else f"Scanning all 19 windows of 6 bases, none reads {site}, so no.")
    return Question(q, answer, "present" if present else "absent", why)


def gc_q(rng: random.Random) -> Question:
    n = rng.choice([8, 10, 12])
    seq = _seq(rng, n)
    gc = [b for b in seq if b in "GC"]
    q = f"How many G or C bases are in the DNA sequence {seq}?"
    why = f"The G and C bases of {seq} are {' '.join(gc) if gc else 'none'}: {len(gc)} in all."
    return Question(q, str(len(gc)), f"{n} bases", why)


DRAW = {"bio-translate": translate_q, "bio-site": site_q, "bio-gc": gc_q}


def solve(task_input: str) -> str | None:
    if m := re.fullmatch(r"Translate the DNA codons ((?:[ACGT]{3} )*[ACGT]{3}) into protein, using three-letter amino-acid codes\.", task_input):
        return translate(m.group(1).replace(" ", ""))
    if m := re.fullmatch(r"Does the DNA sequence ([ACGT]+) contain the \S+ recognition site ([ACGT]+)\? Options: yes, no", task_input):
        return "yes" if m.group(2) in m.group(1) else "no"
    if m := re.fullmatch(r"How many G or C bases are in the DNA sequence ([ACGT]+)\?", task_input):
        return str(sum(b in "GC" for b in m.group(1)))
    return None


def verify(task_input: str, answer: str) -> bool | None:
    gold = solve(task_input)
    return None if gold is None else answer.strip().upper() == gold.upper()


# --- raw sources ----------------------------------------------------------------------------------


def _annotations(rng: random.Random, reserved: Container[str]) -> list[Row]:
    """Sequence records with computed annotations (no questions): the clean source."""

    def row(r: random.Random, task: str, q: Question) -> Row:
        seq = re.search(r"(?:sequence|codons) ((?:[ACGT]{3} )*[ACGT]+)", q.input).group(1).replace(" ", "")
        coding = task == "bio-translate"
        m = re.search(r"the (\S+) recognition site ([ACGT]+)", q.input)
        return {"accession": f"SYN{r.randint(100000, 999999)}", "sequence": seq, "length": len(seq),
                "gc_count": sum(b in "GC" for b in seq),
                "codons": " ".join(seq[i : i + 3] for i in range(0, len(seq), 3)) if coding else "",
                "protein": translate(seq) if coding else "",
                "enzyme": m.group(1) if m else "", "site": m.group(2) if m else "",
                "site_present": ("yes" if m.group(2) in seq else "no") if m else ""}

    return _kit.question_rows(rng, reserved, 2400, DRAW, row)


def _lab_notebook(rng: random.Random, reserved: Container[str]) -> list[Row]:
    return _kit.question_rows(rng, reserved, 2400, DRAW,
                              lambda r, task, q: {"question": q.input, "working": q.why, "result": q.answer})


def _wrong(task: str, right: str):
    """A plausible wrong reply to a question of ``task``."""
    if task == "bio-site":
        return lambda r: _kit.wrong_choice(r, right, ["yes", "no"])
    if task == "bio-gc":
        return lambda r: _kit.wrong_integer(r, int(right))

    def mutate(r: random.Random) -> str:  # one amino acid changed
        from Bio.Data.IUPACData import protein_letters_3to1

        residues = right.split("-")
        i = r.randrange(len(residues))
        residues[i] = r.choice([a for a in sorted(protein_letters_3to1) if a != residues[i]])
        return "-".join(residues)

    return mutate


def _forum(rng: random.Random, reserved: Container[str]) -> list[Row]:
    def row(r: random.Random, task: str, q: Question) -> Row:
        reply = _kit.noisy(r, q.answer, _wrong(task, q.answer))
        return {"question": q.input, "reply": reply, "helpful_votes": r.randint(0, 30)}

    return _kit.question_rows(rng, reserved, 2400, DRAW, row)


SOURCES = (
    SourceSpec(
        name="sequence_annotations",
        format="parquet",
        readme="Synthetic DNA fragments with computed annotations: length, G+C count, translation (for coding "
        "fragments) and the presence of one restriction enzyme's site. Fields: accession, sequence, length, "
        "gc_count, codons (the reading frame, for coding fragments), protein (three-letter codes), enzyme, site, "
        "site_present (empty when not annotated).",
        fields={"accession": "id", "sequence": "DNA", "length": "bases", "gc_count": "G+C bases",
                "codons": "reading frame", "protein": "translation",
                "enzyme": "enzyme checked", "site": "its recognition site", "site_present": "yes/no"},
        build=_annotations,
        per_task={
            "bio-gc": Suggestion("How many G or C bases are in the DNA sequence {sequence}?", "{gc_count}"),
            "bio-translate": Suggestion("Translate the DNA codons {codons} into protein, using three-letter "
                                        "amino-acid codes.", "{protein}"),
            "bio-site": Suggestion("Does the DNA sequence {sequence} contain the {enzyme} recognition site {site}? "
                                   "Options: yes, no", "{site_present}"),
        },
        role="clean",
    ),
    SourceSpec(
        name="lab_notebook",
        format="jsonl",
        readme="Exercises from a molecular-biology course notebook, with the student's working and the checked "
        "result. Fields: question, working, result.",
        fields={"question": "exercise", "working": "worked steps", "result": "result"},
        build=_lab_notebook,
        suggested_prompt="{question}",
        suggested_answer="{result}",
        suggested_rationale="{working}",
        role="traces",
    ),
    SourceSpec(
        name="bio_qa_forum",
        format="jsonl",
        readme="Questions from a bioinformatics Q&A board with the accepted reply. Fields: question, reply, helpful_votes.",
        fields={"question": "question", "reply": "accepted reply", "helpful_votes": "votes"},
        build=_forum,
        suggested_prompt="{question}",
        suggested_answer="{reply}",
        role="noisy",
    ),
    _kit.element_facts(),
    _kit.leak_trap("bio_quiz_crawl", "biology", _kit.filler(DRAW)),
)

DOMAIN = Domain(
    name="biology",
    description="DNA sequence questions grounded in Biopython's genetic code and REBASE enzyme sites.",
    sources=SOURCES,
    origin=__name__,
    depends=("tasks._kit",),
    verifier=verify,
    tasks=(
        TaskSpec(
            id="bio-translate",
            domain="biology",
            description="Translate a short DNA reading frame (2-3 codons) into protein (standard genetic code).",
            instruction="Reply with the protein in three-letter codes joined by hyphens, as 'Answer: <protein>'.",
            answer_format="A line 'Answer: <protein>' in three-letter codes joined by hyphens, e.g. 'Answer: Met-Lys-Val'.",
            answer_template=_kit.ANSWER_TEMPLATE,
            answer_pattern=r"Answer:\s*([A-Za-z]{3}(?:-[A-Za-z]{3})*)",
            metric="exact",
            categories=("2 codons", "3 codons"),
            generate=_kit.generator("bio-translate", translate_q),
            dev_size=60, test_size=120, max_new_tokens=48, seed=51,
        ),
        TaskSpec(
            id="bio-site",
            domain="biology",
            description="Say whether a DNA sequence contains a restriction enzyme's recognition site.",
            instruction="Reply 'Answer: yes' or 'Answer: no'.",
            answer_format="A line 'Answer: yes' or 'Answer: no'.",
            answer_template=_kit.ANSWER_TEMPLATE,
            answer_pattern=r"Answer:\s*([A-Za-z]+)",
            metric="choice",
            categories=("present", "absent"),
            generate=_kit.generator("bio-site", site_q),
            dev_size=60, test_size=120, max_new_tokens=48, seed=52,
        ),
        TaskSpec(
            id="bio-gc",
            domain="biology",
            description="Count the G and C bases of a short DNA sequence.",
            instruction="Reply with the count as 'Answer: <integer>'.",
            answer_format=_kit.INT_FORMAT,
            answer_template=_kit.ANSWER_TEMPLATE,
            answer_pattern=_kit.INT_PATTERN,
            metric="numeric",
            categories=("8 bases", "10 bases", "12 bases"),
            generate=_kit.generator("bio-gc", gc_q),
            dev_size=60, test_size=120, max_new_tokens=64, seed=53,
        ),
    ),
)
