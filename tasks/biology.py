"""Biology domain: DNA sequence questions on Biopython — transcription
(``Bio.Seq``) and the REBASE restriction-enzyme sites that
``Bio.Restriction`` ships.

Tasks: transcribe a DNA coding strand into mRNA; say whether a
sequence holds an enzyme's recognition site; count the G and C bases of a
sequence. Sequences are drawn from a seed; answers are computed with
Biopython (``solve``), which is also the domain's oracle (the suite's own
tests; agents never get it).
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
def enzymes() -> list[tuple[str, str]]:
    """(name, site) of REBASE enzymes with a plain palindromic-or-not 6-base site, by name."""
    from Bio import Restriction

    found = {str(e): e.site for e in Restriction.AllEnzymes if len(e.site) == 6 and set(e.site) <= set(BASES)}
    by_site: dict[str, str] = {}
    for name in sorted(found):
        by_site.setdefault(found[name], name)  # one enzyme per site (isoschizomers share one)
    return sorted((n, s) for s, n in by_site.items())


def transcribe(seq: str) -> str:
    """The mRNA of a DNA coding strand (the same bases, U for T)."""
    from Bio.Seq import transcribe as bio_transcribe

    return bio_transcribe(seq)


def spaced(seq: str) -> str:
    """One base per word, as bio-transcribe writes sequences: 'A U G C'."""
    return " ".join(seq)


def _seq(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(BASES) for _ in range(n))


def transcribe_q(rng: random.Random) -> Question:
    n = rng.randint(6, 9)
    seq = _seq(rng, n)
    mrna = spaced(transcribe(seq))
    q = f"Transcribe the DNA coding strand {spaced(seq)} into mRNA."
    why = f"The mRNA repeats the coding strand with U in place of T: {spaced(seq)} -> {mrna}."
    return Question(q, mrna, f"{n} bases", why)


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


DRAW = {"bio-transcribe": transcribe_q, "bio-site": site_q, "bio-gc": gc_q}


def solve(task_input: str) -> str | None:
    if m := re.fullmatch(r"Transcribe the DNA coding strand ((?:[ACGT] )*[ACGT]) into mRNA\.", task_input):
        return spaced(transcribe(m.group(1).replace(" ", "")))
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
        seq = re.search(r"(?:sequence|strand) ((?:[ACGT] )*[ACGT]+)", q.input).group(1).replace(" ", "")
        m = re.search(r"the (\S+) recognition site ([ACGT]+)", q.input)
        return {"accession": f"SYN{r.randint(100000, 999999)}", "sequence": seq, "length": len(seq),
                "gc_count": sum(b in "GC" for b in seq),
                "mrna": transcribe(seq),
                "enzyme": m.group(1) if m else "", "site": m.group(2) if m else "",
                "site_present": ("yes" if m.group(2) in seq else "no") if m else ""}

    # a fragment drawn for one task may be a dev/test sequence of another; the repository drops the rows
    # that a card mapping turns into a held-out question
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

    def mutate(r: random.Random) -> str:  # one base miscopied
        bases = right.split()
        i = r.randrange(len(bases))
        bases[i] = r.choice([b for b in "ACGU" if b != bases[i]])
        return " ".join(bases)

    return mutate


def _forum(rng: random.Random, reserved: Container[str]) -> list[Row]:
    def row(r: random.Random, task: str, q: Question) -> Row:
        reply = _kit.noisy(r, q.answer, _wrong(task, q.answer))
        return {"question": q.input, "reply": reply, "helpful_votes": r.randint(0, 30)}

    return _kit.question_rows(rng, reserved, 2400, DRAW, row)


_ANNOTATION_HINTS = {
    "bio-gc": Suggestion("How many G or C bases are in the DNA sequence {sequence}?", "{gc_count}"),
    "bio-site": Suggestion("Does the DNA sequence {sequence} contain the {enzyme} recognition site {site}? Options: yes, no",
                           "{site_present}"),
}
SOURCES = (
    SourceSpec(
        name="sequence_annotations",
        format="parquet",
        readme="Synthetic DNA fragments with computed annotations: length, G+C count, the mRNA transcribed "
        "from the fragment as a coding strand, and the presence of one restriction enzyme's site. Fields: accession, sequence, length, "
        "gc_count, mrna, enzyme, site, site_present (empty when not annotated).",
        fields={"accession": "id", "sequence": "DNA", "length": "bases", "gc_count": "G+C bases",
                "mrna": "transcript",
                "enzyme": "enzyme checked", "site": "its recognition site", "site_present": "yes/no"},
        build=_annotations,
        per_task=_ANNOTATION_HINTS,
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
    description="DNA sequence questions grounded in Biopython's transcription and REBASE enzyme sites.",
    sources=SOURCES,
    origin=__name__,
    depends=("tasks._kit",),
    oracle=verify,
    tasks=(
        TaskSpec(
            id="bio-transcribe",
            domain="biology",
            description="Transcribe a short DNA coding strand (6-9 bases) into its mRNA.",
            instruction="Reply with the mRNA as 'Answer: <bases>', one base per position separated by spaces.",
            answer_format="A line 'Answer: <bases>' with the bases separated by spaces, e.g. 'Answer: A U G G C U'.",
            answer_template=_kit.ANSWER_TEMPLATE,
            answer_pattern=r"Answer:\s*([ACGU](?: [ACGU])*)",
            metric="exact",
            categories=("6 bases", "7 bases", "8 bases", "9 bases"),
            generate=_kit.generator("bio-transcribe", transcribe_q),
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
