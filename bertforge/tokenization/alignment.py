"""Mapping between word / character positions and sub-word tokens: what NER and QA fine-tuning need.

Both helpers take what a tokenizer call returns (``word_ids``, ``offset_mapping``, ``sequence_ids``) so they work on
any window of an overflowing encoding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bertforge.constants import IGNORE_INDEX


def align_word_labels(
    word_ids: Sequence[int | None],
    word_labels: Sequence[int],
    *,
    label_all_tokens: bool = False,
    continuation_label: Callable[[int], int] | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> list[int]:
    """Token labels from word labels.

    The first piece of each word gets the word's label; special tokens and padding (word id None) get
    ``ignore_index``. Later pieces of a word get ``ignore_index`` too, or with ``label_all_tokens`` the word's label
    (passed through ``continuation_label`` when given, e.g. to turn B-PER into I-PER for the later pieces).
    """
    labels: list[int] = []
    previous: int | None = None
    for word in word_ids:
        if word is None:
            labels.append(ignore_index)
        elif word >= len(word_labels):
            raise ValueError(f"token refers to word {word} but only {len(word_labels)} word labels were given")
        elif word != previous:
            labels.append(word_labels[word])
        elif label_all_tokens:
            label = word_labels[word]
            labels.append(continuation_label(label) if continuation_label else label)
        else:
            labels.append(ignore_index)
        previous = word
    return labels


def char_span_to_token_span(
    offsets: Sequence[tuple[int, int]],
    sequence_ids: Sequence[int | None],
    start_char: int,
    end_char: int,
    context_sequence: int = 1,
) -> tuple[int, int] | None:
    """Token indices (start, end), both inclusive, of the characters [start_char, end_char) of the context.

    ``offsets`` and ``sequence_ids`` are those of one (possibly overflowing) window; the context is sequence
    ``context_sequence`` (1 when the question comes first). Returns None when the span is not wholly inside this
    window, so the caller can label the window as "no answer" (BERT points such windows at [CLS]).
    """
    if end_char <= start_char:
        raise ValueError(f"empty answer span: start_char {start_char}, end_char {end_char}")
    context = [i for i, s in enumerate(sequence_ids) if s == context_sequence]
    if not context:
        return None
    first, last = context[0], context[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return None
    start = first
    while start <= last and offsets[start][1] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][0] >= end_char:
        end -= 1
    if start > end:
        return None
    return start, end
