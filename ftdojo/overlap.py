"""N-gram overlap between training texts and evaluation items (leak checks).

Texts become lower-cased word n-grams. A training text *contains* a
reference item when it holds at least ``threshold`` of that item's n-grams;
measuring from the item's side catches a test question pasted inside a
longer post (or a rationale, or an answer) as well as a verbatim copy, while
two different equations that share a prefix stay apart. An item shorter than
n words is one k-gram of its k words, looked for among the text's k-grams.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable

_WORD = re.compile(r"\w+|[^\w\s]")
DEFAULT_N = 8
DEFAULT_THRESHOLD = 0.9


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class OverlapIndex:
    """Inverted index from n-gram to reference items."""

    def __init__(self, refs: Iterable[str], n: int = DEFAULT_N) -> None:
        self.n = n
        self.sizes: list[int] = []
        self.postings: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self.short: set[int] = set()
        """Word counts of items shorter than n (each is one gram of that length)."""
        for i, r in enumerate(refs):
            grams = ngrams(r, n)
            self.sizes.append(len(grams))
            self.short |= {len(g) for g in grams if 0 < len(g) < n}
            for g in grams:
                self.postings[g].append(i)

    def coverage(self, text: str) -> float:
        """Largest share of any one reference item's n-grams found in ``text``."""
        hits: Counter[int] = Counter()
        grams = ngrams(text, self.n)
        for k in self.short:
            grams |= ngrams(text, k)
        for g in grams:
            hits.update(self.postings.get(g, ()))
        return max((c / self.sizes[i] for i, c in hits.items()), default=0.0)

    def contaminated(self, text: str, threshold: float = DEFAULT_THRESHOLD) -> bool:
        return self.coverage(text) >= threshold


def contamination_rate(texts: list[str], index: OverlapIndex, threshold: float = DEFAULT_THRESHOLD) -> float:
    if not texts:
        return 0.0
    return sum(index.contaminated(t, threshold) for t in texts) / len(texts)
