"""Templates over a row's columns (``{question}``, ``{context[title]}``, ``{choices}``): one renderer for
task specs, dataset cards and recipes.

``str.format`` with two rules for the nested values Hugging Face datasets hold: a list renders one
element per line (or joined by its format spec: ``{labels:, }`` gives ``A, C``), a mapping as compact JSON. Indexing works as in ``str.format``
(``{context[title]}``, ``{choices[0]}``), and the conversion ``!j`` renders a value as a JSON literal
(``{{"source": {smiles!j}}}``: a gold answer that is itself a small JSON object). Imports nothing of ftdojo.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from typing import Any


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, (list, tuple)):  # {steps} one per line; {labels:, } joined by ", "
            sep, format_spec = (format_spec or "\n"), ""
            value = sep.join(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str) for v in value)
        elif isinstance(value, Mapping):
            value = json.dumps(value, ensure_ascii=False, default=str)
        return super().format_field(value, format_spec)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion == "j":
            return json.dumps(value, ensure_ascii=False, default=str)
        return super().convert_field(value, conversion)


_FORMATTER = _Formatter()


def render(template: str, row: Mapping[str, Any]) -> str:
    """``template`` over ``row``; a missing column raises ``KeyError`` naming it."""
    return _FORMATTER.vformat(template, (), row)


def fields(template: str) -> set[str]:
    """The top-level columns a template names (``{context[title]}`` names ``context``)."""
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise ValueError(f"not a format template ({e})") from None
    return {n.split("[", 1)[0].split(".", 1)[0] for n in names}
