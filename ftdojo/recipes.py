"""Recipes from the catalog: the one place a card's suggested mapping becomes a ``SourceMapping``.

The naive baseline, the heuristic planner and random search all start from
what the dataset cards suggest; they differ only in which sources they pick,
whether the worked reasoning comes along, and which filters they switch on.
"""

from __future__ import annotations

from ftdojo.errors import UserError
from ftdojo.messages import DataRecipe, SourceInfo, SourceMapping, TaskCard


def mappable(card: TaskCard) -> list[SourceInfo]:
    """Sources whose card suggests a mapping into this task (an input and an answer template)."""
    return [s for s in card.sources if s.suggested_prompt and s.suggested_answer]


def suggested(source: SourceInfo, rationale: bool = True) -> SourceMapping:
    """The mapping the source's card suggests; ``rationale=False`` leaves its worked reasoning out."""
    assert source.suggested_prompt and source.suggested_answer, source.name
    return SourceMapping(source=source.name, prompt=source.suggested_prompt, answer=source.suggested_answer,
                         rationale=source.suggested_rationale if rationale else None)


def naive(card: TaskCard) -> DataRecipe:
    """Every raw source, mapped the way its card suggests; no curation."""
    return DataRecipe(sources=[suggested(s) for s in mappable(card)], dedupe=False, decontaminate=False)


def reasoning_first(card: TaskCard, exclude: frozenset[str] = frozenset()) -> DataRecipe:
    """Sources with worked reasoning, mapped with it (all mappable sources if none has any); only
    targets that parse, no duplicates, no dev overlap, and the domain's verifier where it has one."""
    usable = [s for s in mappable(card) if s.name not in exclude]
    chosen = [s for s in usable if s.suggested_rationale] or usable
    return DataRecipe(sources=[suggested(s) for s in chosen], require_parseable=True, verify=card.verifier,
                      dedupe=True, decontaminate=True)


CLEAN_WEIGHT = 0.5
"""The sampling weight of an answer-only source beside a source with worked reasoning (the reference's and the
searching FT-Agent's mixtures)."""


def mixture(card: TaskCard, traces: list[SourceInfo], answers: list[SourceInfo], weight: float = CLEAN_WEIGHT) -> DataRecipe:
    """Sources with worked reasoning, mapped with it, beside answer-only sources at ``weight`` (at full weight
    without traces); only parseable targets, no duplicates, no dev overlap, and the task's verifier where it has one."""
    sources = [suggested(s) for s in traces] + [suggested(s, rationale=False).model_copy(update={"weight": weight if traces else 1.0})
                                               for s in answers]
    return DataRecipe(sources=sources, require_parseable=True, verify=card.verifier, dedupe=True, decontaminate=True)


ANSWER_ONLY_HELPS = frozenset({"chem-carbons", "chem-rings"})
"""Built-in tasks whose answer the input shows (count the C's of a formula, the ring labels of a SMILES):
there answer-only training alone matched or beat the worked reasoning in the calibration (naive SFT 98.1 and
99.2 against FT-Agent's 98.3 and 93.3), and chem-rings' reference with its clean source reached 100.0 on seed
0. On a task that needs a computation, answer-only examples teach the model to skip the steps: bio-gc's
reference with its clean source at half weight scored 25.0 on seed 0, FT-Agent's traces alone 81.7
(``bench/RESULTS.md``)."""


REFERENCE_ROLES = frozenset({"clean", "traces"})
"""Source roles a reference recipe draws on: a domain that marks none has no reference."""


def no_reference(task_id: str) -> UserError:
    return UserError(f"agent reference: task {task_id} has no reference recipe (its domain marks no source as clean "
                     "or as traces); run the reference on built-in tasks only")


def reference(card: TaskCard, roles: dict[str, str]) -> DataRecipe:
    """The suite authors' recipe for a built-in task: what they know of the domain's sources (``roles``,
    the ``SourceSpec.role`` an agent never sees) and of the task put to its best known use. Every source with
    worked reasoning for the task, mapped with it; the clean sources mapped into the task's format too where
    answer-only data helps (``ANSWER_ONLY_HELPS``, at ``CLEAN_WEIGHT``), and alone where the task has no
    traces; the noisy source left out (its fit loss gives it away: ``suspected_noise``), as are the irrelevant
    and crawled ones; only parseable targets, no duplicates, no dev overlap. No oracle."""
    usable = mappable(card)
    traces = [suggested(s) for s in usable if roles.get(s.name) == "traces" and s.suggested_rationale]
    clean = [suggested(s).model_copy(update={"weight": CLEAN_WEIGHT if traces else 1.0})
             for s in usable if roles.get(s.name) == "clean" and (not traces or card.task_id in ANSWER_ONLY_HELPS)]
    if not traces + clean:
        raise no_reference(card.task_id)
    return DataRecipe(sources=traces + clean, require_parseable=True, dedupe=True, decontaminate=True)
