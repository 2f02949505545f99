"""Recipes from the catalog: the one place a card's suggested mapping becomes a ``SourceMapping``.

The naive baseline, the heuristic planner and random search all start from
what the dataset cards suggest; they differ only in which sources they pick,
whether the worked reasoning comes along, and which filters they switch on.
"""

from __future__ import annotations

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
