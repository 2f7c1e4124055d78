"""Entities drawn in colour: the NER pipeline's result is still transformers' list of dicts, knows its text, and
draws itself in displaCy's layout (or hands spaCy's manual format over); `bertforge run ner --format html` writes the
page; overlapping or out-of-range entities are refused in one line."""

from __future__ import annotations

import re

import pytest

from bertforge.cli.main import main
from bertforge.pipelines.render import COLORS, Entities, color, render
from tests.unit.test_pipelines import make

TEXT = "Peter Blackburn met <EU> officials in Brussels."
FOUND = [
    {"entity_group": "PER", "score": 0.8, "word": "peter blackburn", "start": 0, "end": 15},
    {"entity_group": "ORG", "score": 0.4, "word": "eu", "start": 21, "end": 23},
    {"entity": "B-LOC", "score": 0.9, "index": 9, "word": "brussels", "start": 38, "end": 46},
]


def test_the_result_is_the_list_it_was_and_hands_spacy_its_manual_format():
    result = Entities(FOUND, TEXT)
    assert result == FOUND and result[1:] == FOUND[1:] and result.text == TEXT
    assert result.to_displacy("t") == {
        "text": TEXT,
        "ents": [
            {"start": 0, "end": 15, "label": "PER"},
            {"start": 21, "end": 23, "label": "ORG"},
            {"start": 38, "end": 46, "label": "LOC"},
        ],
        "title": "t",
    }


def test_each_entity_is_a_mark_in_its_types_colour_with_its_label_and_the_text_is_escaped():
    html = Entities(FOUND, TEXT).to_html()
    marks = re.findall(
        r'<mark class="entity" style="background: (#[0-9a-f]+);[^"]*">([^<]*)<span[^>]*>(\w+)</span>', html
    )
    legend, body = marks[:3], marks[3:]
    assert [(c, label) for c, _, label in legend] == [(COLORS[x], x) for x in ("LOC", "ORG", "PER")]
    assert body == [
        (COLORS["PER"], "Peter Blackburn", "PER"),
        (COLORS["ORG"], "EU", "ORG"),
        (COLORS["LOC"], "Brussels", "LOC"),
    ]
    assert "&lt;" in html and "<EU>" not in html  # the text's own markup is shown, not run
    assert 'class="entities" style="line-height: 2.5; direction: ltr"' in html
    page = Entities(FOUND, TEXT).to_html(page=True)
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page


def test_other_labels_get_a_colour_of_their_own_that_does_not_change():
    assert color("WORK_OF_ART") == color("WORK_OF_ART") and color("X", {"X": "#123456"}) == "#123456"


def test_overlapping_entities_are_refused_in_one_line():
    with pytest.raises(ValueError, match="overlaps another or lies outside the text"):
        render([{"text": "abc", "ents": [{"start": 0, "end": 2, "label": "A"}, {"start": 1, "end": 3, "label": "B"}]}])


def test_the_pipeline_returns_entities_and_the_cli_writes_the_page(tmp_path, minilm, capsys):
    import bertforge

    labels = {0: "O", 1: "B-PER", 2: "I-PER"}
    ner_dir = make(tmp_path / "ner", "BertForTokenClassification", minilm, num_labels=3, id2label=labels)
    texts = ["Peter Blackburn met officials in Brussels.", "Nothing here"]
    results = bertforge.pipeline("ner", model=ner_dir)(texts, ignore_labels=())
    assert all(isinstance(r, Entities) for r in results) and [r.text for r in results] == texts
    out = tmp_path / "ner.html"
    assert main(["run", "ner", "--model", ner_dir, "--format", "html", "--output", str(out), *texts]) == 0
    page = out.read_text()
    drawn = [part.count("<mark") for part in page.split('<div class="entities"')[1:]]
    simple = bertforge.pipeline("ner", model=ner_dir)(texts, aggregation_strategy="simple")  # the CLI's default
    assert drawn == [len(r) for r in simple]
    assert main(["run", "fill-mask", "--model", ner_dir, "--format", "html", "a [MASK]"]) == 1
    assert "--format html draws entities: it is for ner" in capsys.readouterr().err
