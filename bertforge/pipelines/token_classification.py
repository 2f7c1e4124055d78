"""token-classification / ner: per-token or grouped entities with character offsets into the original text.

Aggregation strategies (transformers' names and meaning):
- ``none``: one result per sub-word token (``entity``, ``score``, ``index``, ``word``, ``start``, ``end``).
- ``simple``: adjacent tokens with the same type are grouped (a B- tag starts a new group).
- ``first`` / ``average`` / ``max``: the pieces of a word first agree on one label -- the first piece's, the
  average of the pieces' probabilities, or the most confident piece's -- then words are grouped as in ``simple``.
Groups carry ``entity_group``, the mean ``score`` of their members, ``word`` (the pieces joined) and ``start``/``end``.
Text longer than a window is split into windows overlapping by ``stride`` tokens; entities found in two windows are
stitched: of overlapping entities the longer one is kept (the higher score on a tie). Each text's result is an
``Entities`` list (``render.py``): ``result.to_html()`` draws it with each entity type in its own colour,
``result.to_displacy()`` hands it to spaCy's displaCy.
"""

from __future__ import annotations

import numpy as np

from bertforge.model import BertForTokenClassification
from bertforge.pipelines.base import STRIDE, Option, Pipeline, as_list, check_texts, softmax
from bertforge.pipelines.render import Entities
from bertforge.utils import logger

AGGREGATIONS = ("none", "simple", "first", "average", "max")


def join_pieces(tokens: list[str]) -> str:
    """WordPiece tokens back to text: "##" pieces glued to the piece before, other tokens space-separated."""
    return " ".join(tokens).replace(" ##", "").strip()


def split_tag(label: str) -> tuple[str, str]:
    """("B" | "I", type) of an IOB label; a label without a prefix counts as a continuation of its own type."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def group(entities: list[dict]) -> list[dict]:
    """Runs of adjacent entities of the same type (not starting with B-) merged into one group each."""
    groups: list[list[dict]] = []
    for e in entities:
        bi, kind = split_tag(e["entity"])
        if groups and bi != "B" and split_tag(groups[-1][-1]["entity"])[1] == kind:
            groups[-1].append(e)
        else:
            groups.append([e])
    return [
        {
            "entity_group": split_tag(g[0]["entity"])[1],
            "score": float(np.mean([e["score"] for e in g])),
            "word": join_pieces([e["word"] for e in g]),
            "start": g[0]["start"],
            "end": g[-1]["end"],
        }
        for g in groups
    ]


def stitch(entities: list[dict]) -> list[dict]:
    """Entities from overlapping windows: of those that overlap, keep the longer (then the higher score)."""
    if not entities:
        return entities
    ordered = sorted(entities, key=lambda e: e["start"])
    kept, current = [], ordered[0]
    for e in ordered[1:]:
        if current["start"] <= e["start"] < current["end"]:
            longer = e["end"] - e["start"] > current["end"] - current["start"]
            same = e["end"] - e["start"] == current["end"] - current["start"]
            if longer or (same and e["score"] > current["score"]):
                current = e
        else:
            kept.append(current)
            current = e
    kept.append(current)
    return kept


class TokenClassificationPipeline(Pipeline):
    task = "token-classification"
    model_class = BertForTokenClassification
    head = "classifier."
    head_hint = "use a checkpoint fine-tuned for NER (bertforge finetune ner writes one)"
    cli_options = (
        Option("--aggregation-strategy", "how tokens group into entities", choices=AGGREGATIONS, default="simple"),
        STRIDE,
    )

    def __call__(
        self,
        inputs,
        *,
        aggregation_strategy: str = "none",
        ignore_labels=("O",),
        stride: int | None = None,
        grouped_entities: bool | None = None,
    ):
        """Entities of a text or of each text of a list (see the module doc for the strategies).
        ``grouped_entities=True`` is transformers' old spelling of ``aggregation_strategy="simple"`` (deprecated)."""
        if grouped_entities is not None:
            logger.warning('grouped_entities is deprecated (as in transformers): use aggregation_strategy="simple"')
            if grouped_entities and aggregation_strategy == "none":
                aggregation_strategy = "simple"
        strategy = aggregation_strategy.lower() if isinstance(aggregation_strategy, str) else aggregation_strategy
        if strategy not in AGGREGATIONS:
            raise ValueError(f"aggregation_strategy={aggregation_strategy!r} is not one of {AGGREGATIONS}")
        texts, single = as_list(inputs)
        check_texts(texts)
        enc, owner = self._windows(texts, stride=stride, offsets=True, specials=True)
        logits = self._predict(self._features(enc), lambda out: [out.logits], per_token=True)
        id2label = self.config.id2label
        ignore = set(ignore_labels or ())
        per_input: list[list[dict]] = [[] for _ in texts]
        windows = np.bincount(owner, minlength=len(texts))
        for j, i in enumerate(owner):
            text = texts[i]
            scores = softmax(logits[j][0])
            ids = enc["input_ids"][j]
            word_ids = enc.word_ids(j)
            tokens = []
            for t, (token_id, special) in enumerate(zip(ids, enc["special_tokens_mask"][j])):
                if special:
                    continue
                start, end = enc["offset_mapping"][j][t]
                piece = self.tokenizer.convert_ids_to_tokens(token_id)
                unknown = token_id == self.tokenizer.unk_token_id
                tokens.append(
                    {
                        "word": text[start:end] if unknown else piece,
                        "scores": scores[t],
                        "start": start,
                        "end": end,
                        "index": t,
                        "subword": not unknown and t > 0 and word_ids[t] == word_ids[t - 1],
                    }
                )
            entities = self._aggregate(tokens, strategy, id2label)
            per_input[i].extend(e for e in entities if e.get("entity", e.get("entity_group")) not in ignore)
        results = [Entities(stitch(e) if n > 1 else e, t) for e, n, t in zip(per_input, windows, texts)]
        return results[0] if single else results

    @staticmethod
    def _aggregate(tokens: list[dict], strategy: str, id2label: dict) -> list[dict]:
        if strategy in ("none", "simple"):
            entities = []
            for t in tokens:
                k = int(t["scores"].argmax())
                entities.append(
                    {
                        "entity": id2label[k],
                        "score": float(t["scores"][k]),
                        "index": t["index"],
                        "word": t["word"],
                        "start": t["start"],
                        "end": t["end"],
                    }
                )
            return entities if strategy == "none" else group(entities)
        words: list[list[dict]] = []
        for t in tokens:
            if words and t["subword"]:
                words[-1].append(t)
            else:
                words.append([t])
        entities = []
        for pieces in words:
            if strategy == "first":
                scores = pieces[0]["scores"]
            elif strategy == "max":
                scores = max(pieces, key=lambda p: p["scores"].max())["scores"]
            else:
                scores = np.nanmean(np.stack([p["scores"] for p in pieces]), axis=0)
            k = int(scores.argmax())
            entities.append(
                {
                    "entity": id2label[k],
                    "score": float(scores[k]),
                    "word": join_pieces([p["word"] for p in pieces]),
                    "start": pieces[0]["start"],
                    "end": pieces[-1]["end"],
                }
            )
        return group(entities)
