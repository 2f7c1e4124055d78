"""Masked-LM masking as in BERT: choose ``mask_prob`` of the tokens, replace 80% of those by [MASK], 10% by a random
token, keep 10%; predict the chosen ones (labels -100 elsewhere).

- Special tokens and padding are never chosen; random replacements are drawn from the vocabulary without special tokens
  (and without BERT's ``[unusedN]`` placeholders).
- The number chosen per sequence is ``max(1, round(mask_prob x candidate tokens))``, as in Google's
  create_pretraining_data.py.
- Whole-word masking groups a word's ``##`` pieces so a word is masked entirely or not at all.
- N-gram masking (``max_ngram`` > 1) picks spans of n words with probability proportional to 1/n, as Megatron-LM does.
- Dynamic masking: the caller passes a generator seeded by (seed, epoch, sample index), so each epoch sees a new mask
  and every run reproduces it exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from bertforge.constants import IGNORE_INDEX


@dataclass
class Masker:
    """Applies MLM masking to one token sequence; build with ``Masker.from_tokenizer``."""

    vocab_size: int
    mask_id: int
    special_ids: np.ndarray
    """Ids never chosen for prediction nor used as random replacements."""
    replacement_ids: np.ndarray
    """Ids random replacements are drawn from."""
    is_continuation: np.ndarray | None = None
    """Per vocabulary id: True for ``##`` pieces (needed for whole-word masking)."""
    mask_prob: float = 0.15
    mask_token_prob: float = 0.8
    random_token_prob: float = 0.1
    whole_word_mask: bool = False
    max_ngram: int = 1
    max_predictions: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.mask_token_prob < 0 or self.random_token_prob < 0 or self.mask_token_prob + self.random_token_prob > 1:
            raise ValueError(
                f"mask_token_prob ({self.mask_token_prob}) + random_token_prob ({self.random_token_prob}) "
                "must lie in [0, 1]; the rest keeps the original token"
            )
        if self.max_ngram < 1:
            raise ValueError(f"max_ngram must be >= 1, got {self.max_ngram}")
        if self.whole_word_mask and self.is_continuation is None:
            raise ValueError("whole-word masking needs is_continuation (build the Masker with from_tokenizer)")
        self._special = np.zeros(self.vocab_size, dtype=bool)
        self._special[self.special_ids] = True
        weights = 1.0 / np.arange(1, self.max_ngram + 1)
        self._ngram_p = weights / weights.sum()

    @classmethod
    def from_tokenizer(cls, tok, **options) -> Masker:
        """A Masker for a ``BertTokenizer``'s vocabulary."""
        vocab = tok.vocab
        special = sorted({tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id})
        unused = re.compile(r"\[unused\d+\]")
        excluded = set(special) | {i for t, i in vocab.items() if unused.fullmatch(t)}
        size = max(vocab.values()) + 1
        replacement = np.array([i for i in range(size) if i not in excluded], dtype=np.int64)
        continuation = np.zeros(size, dtype=bool)
        start = getattr(tok, "word_start", None)  # byte-level BPE's Ġ, SentencePiece's ▁: a word starts with its space
        for token, i in vocab.items():
            continuation[i] = not token.startswith(start) if start else token.startswith("##")
        return cls(
            vocab_size=size,
            mask_id=tok.mask_token_id,
            special_ids=np.array(special, dtype=np.int64),
            replacement_ids=replacement,
            is_continuation=continuation,
            **options,
        )

    def __call__(self, tokens: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Return (masked input ids, labels) for ``tokens`` (1-D int array, specials included)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        candidates = np.flatnonzero(~self._special[tokens])
        labels = np.full(tokens.shape, IGNORE_INDEX, dtype=np.int64)
        if candidates.size == 0:
            return tokens.copy(), labels
        n_predict = max(1, int(round(candidates.size * self.mask_prob)))
        if self.max_predictions is not None:
            n_predict = min(n_predict, self.max_predictions)
        if not self.whole_word_mask and self.max_ngram == 1:
            chosen = np.sort(rng.choice(candidates, size=n_predict, replace=False))
        else:
            chosen = self._choose_spans(tokens, candidates, n_predict, rng)
        labels[chosen] = tokens[chosen]
        out = tokens.copy()
        r = rng.random(chosen.size)
        to_mask = chosen[r < self.mask_token_prob]
        to_random = chosen[(r >= self.mask_token_prob) & (r < self.mask_token_prob + self.random_token_prob)]
        out[to_mask] = self.mask_id
        out[to_random] = self.replacement_ids[rng.integers(0, self.replacement_ids.size, size=to_random.size)]
        return out, labels

    def _choose_spans(
        self, tokens: np.ndarray, candidates: np.ndarray, n_predict: int, rng: np.random.Generator
    ) -> np.ndarray:
        # Group candidate positions into words: a ## piece joins the word before it (whole-word masking only).
        words: list[list[int]] = []
        for pos in candidates.tolist():
            if self.whole_word_mask and words and words[-1][-1] == pos - 1 and self.is_continuation[tokens[pos]]:  # type: ignore[index]  # set with whole_word_mask
                words[-1].append(pos)
            else:
                words.append([pos])
        chosen: list[int] = []
        covered = np.zeros(len(words), dtype=bool)
        for start in rng.permutation(len(words)).tolist():
            if len(chosen) >= n_predict:
                break
            if covered[start]:
                continue
            n = int(rng.choice(self.max_ngram, p=self._ngram_p)) + 1 if self.max_ngram > 1 else 1
            # Shrink the span until it fits the budget and covers only unchosen words.
            while n > 0:
                span = range(start, min(start + n, len(words)))
                size = sum(len(words[w]) for w in span)
                if len(chosen) + size <= n_predict and not covered[span.start : span.stop].any():
                    break
                n -= 1
            if n == 0:
                continue
            for w in span:
                covered[w] = True
                chosen.extend(words[w])
        return np.sort(np.asarray(chosen, dtype=np.int64))
