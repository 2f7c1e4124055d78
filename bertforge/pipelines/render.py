"""Entities drawn over their text: each entity a coloured mark with its label, in displaCy's layout.

The NER pipeline returns an :class:`Entities` list per text: the entity dicts transformers' pipeline returns (it is a
list, so it compares, serialises and slices as one) that also knows its text, and so can show itself:

- ``to_displacy()``: spaCy's "manual" input, ``{"text", "ents": [{"start", "end", "label"}], "title"}``, which
  ``spacy.displacy.render(doc, style="ent", manual=True)`` draws;
- ``to_html()``: the same drawing without spaCy: a ``div.entities`` of the text with a ``mark.entity`` per entity (its
  background the label's colour, the label in a small bold span after the words) and a legend of the labels.

:func:`render` draws one or more texts into one fragment or a whole page (``bertforge run ner --format html``).
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Iterable

COLORS = {
    "PER": "#aa9cfc",
    "PERSON": "#aa9cfc",
    "ORG": "#7aecec",
    "LOC": "#ff9561",
    "GPE": "#feca74",
    "MISC": "#c887fb",
    "DATE": "#bfe1d9",
    "NORP": "#c887fb",
}
"""The colour of each common label (CoNLL-2003's four and OntoNotes' most frequent); other labels get one of
``PALETTE`` by a hash of their name, the same on every run."""

PALETTE = ("#ffeb80", "#9cc9cc", "#e4e7d2", "#ddd", "#f0d0ff", "#c5e1a5", "#ffccbc", "#b3e5fc")

MARK = "background: {color}; padding: 0.45em 0.6em; margin: 0 0.25em; line-height: 1; border-radius: 0.35em;"
LABEL = (
    "font-size: 0.8em; font-weight: bold; line-height: 1; border-radius: 0.35em; vertical-align: middle; "
    "margin-left: 0.5rem"
)
TEXT = "line-height: 2.5; direction: ltr"


def color(label: str, colors: dict[str, str] | None = None) -> str:
    """The background of ``label``'s marks: ``colors``, then ``COLORS``, then a palette colour fixed by the name."""
    chosen = {**COLORS, **(colors or {})}
    if label in chosen:
        return chosen[label]
    return PALETTE[int(hashlib.sha256(label.encode()).hexdigest(), 16) % len(PALETTE)]


def label_of(entity: dict) -> str:
    """An entity's type: ``entity_group`` (grouped results) or the tag of ``entity`` without its B-/I- prefix."""
    tag = entity.get("entity_group", entity.get("entity", ""))
    return tag[2:] if tag[:2] in ("B-", "I-") else tag


class Entities(list):
    """The entities of one text (see the module notes): a list of the pipeline's dicts, plus ``text``."""

    def __init__(self, entities: Iterable[dict] = (), text: str = ""):
        super().__init__(entities)
        self.text = text

    def to_displacy(self, title: str | None = None) -> dict:
        """spaCy's manual format: ``displacy.render(result.to_displacy(), style="ent", manual=True)``."""
        ents = [{"start": int(e["start"]), "end": int(e["end"]), "label": label_of(e)} for e in self]
        return {"text": self.text, "ents": sorted(ents, key=lambda e: e["start"]), "title": title}

    def to_html(self, colors: dict[str, str] | None = None, page: bool = False) -> str:
        """The text with its entities marked (a fragment; ``page=True``: a whole HTML page)."""
        return render([self.to_displacy()], colors, page)

    def _repr_html_(self) -> str:  # notebooks show the drawing
        return self.to_html()


def _marked(doc: dict, colors: dict[str, str] | None) -> str:
    text, out, at = doc["text"], [], 0
    for ent in doc["ents"]:
        start, end = ent["start"], ent["end"]
        if start < at or end > len(text) or start >= end:
            raise ValueError(f"entity {ent} overlaps another or lies outside the text of {len(text)} characters")
        out.append(html.escape(text[at:start]))
        mark, label = MARK.format(color=color(ent["label"], colors)), html.escape(ent["label"])
        words = html.escape(text[start:end])
        out.append(f'<mark class="entity" style="{mark}">{words}<span style="{LABEL}">{label}</span></mark>')
        at = end
    out.append(html.escape(text[at:]))
    title = f"<h2>{html.escape(doc['title'])}</h2>\n" if doc.get("title") else ""
    return f'{title}<div class="entities" style="{TEXT}">{"".join(out)}</div>'


def _legend(labels: list[str], colors: dict[str, str] | None) -> str:
    marks = "".join(
        f'<mark class="entity" style="{MARK.format(color=color(x, colors))}">'
        f'<span style="{LABEL}">{html.escape(x)}</span></mark>'
        for x in labels
    )
    return f'<div class="legend" style="{TEXT}">{marks}</div>'


def render(docs: list[dict], colors: dict[str, str] | None = None, page: bool = False) -> str:
    """displaCy-style HTML of ``docs`` (each in the manual format of :meth:`Entities.to_displacy`): the legend of the
    labels they use, then each text with its marks; ``page``: a whole page with a title and UTF-8 declared."""
    labels = sorted({e["label"] for d in docs for e in d["ents"]})
    body = "\n".join([_legend(labels, colors)] + [_marked(d, colors) for d in docs])
    if not page:
        return body
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>bertforge: entities</title>\n'
        '</head>\n<body style="font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em">\n'
        f"{body}\n</body>\n</html>\n"
    )
