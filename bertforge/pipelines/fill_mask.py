"""fill-mask: the top_k tokens for each [MASK] with their probabilities, optionally restricted to ``targets``."""

from __future__ import annotations

import numpy as np
import torch

from bertforge.model import BertForMaskedLM
from bertforge.pipelines.base import Option, Pipeline, as_list, check_number, check_texts, comma_list, softmax
from bertforge.tasks.features import collate, length_batches
from bertforge.utils import logger


class FillMaskPipeline(Pipeline):
    task = "fill-mask"
    model_class = BertForMaskedLM
    head = "cls.predictions."
    head_hint = "use a checkpoint saved with its MLM head (bertforge pretrain exports one; BertForMaskedLM)"
    cli_options = (
        Option("--top-k", "predictions per [MASK] (default 5)", int, minimum=1),
        Option("--targets", "candidate tokens, comma-separated", value=comma_list),
    )

    def target_ids(self, targets) -> np.ndarray:
        tok = self.tokenizer
        ids = []
        for target in [targets] if isinstance(targets, str) else targets:
            if target in tok.vocab:
                ids.append(tok.vocab[target])
                continue
            pieces = tok(target, add_special_tokens=False)["input_ids"]
            if not pieces:
                logger.warning("target %r has no token in the vocabulary; it is ignored", target)
                continue
            logger.warning(
                "target %r is not one token; its first piece %r is used", target, tok.convert_ids_to_tokens(pieces[0])
            )
            ids.append(pieces[0])
        ids = sorted(set(ids))
        if not ids:
            raise ValueError("none of the targets is in the vocabulary")
        return np.array(ids)

    @torch.no_grad()
    def _mask_logits(self, feats: list[dict], mask_id: int) -> list[np.ndarray]:
        """(masks, V) logits per feature: the MLM head runs at the [MASK] positions only, not at every token, and a
        window cut from a long input (``"read"``: the index of the one mask it is for) computes that mask alone, so
        memory stays at masks x V however many masks share a window."""
        out: list[np.ndarray | None] = [None] * len(feats)
        for idx in length_batches([len(f["input_ids"]) for f in feats], self.batch_size):
            chosen = [{"input_ids": feats[i]["input_ids"], "token_type_ids": feats[i]["token_type_ids"]} for i in idx]
            batch = collate(chosen, self.tokenizer.pad_token_id, device=self.device)
            width = batch["input_ids"].shape[1]
            flat: list[int] = []
            counts: list[int] = []
            for row, i in enumerate(idx):
                masks = [p for p, t in enumerate(feats[i]["input_ids"]) if t == mask_id]
                if "read" in feats[i]:
                    masks = [masks[feats[i]["read"]]]
                flat.extend(row * width + p for p in masks)
                counts.append(len(masks))
            positions = torch.tensor(flat, dtype=torch.long, device=self.device)
            logits = self.model(**batch, mlm_positions=positions).logits.float().cpu().numpy()
            start = 0
            for i, n in zip(idx, counts):
                out[i] = logits[start : start + n]
                start += n
        return out  # type: ignore[return-value]

    def __call__(self, inputs, *, top_k: int = 5, targets: str | list[str] | None = None):
        """For each input: a list of ``{"score", "token", "token_str", "sequence"}`` (best first) when it has one
        [MASK], or one such list per [MASK] when it has several (each mask predicted on its own)."""
        texts, single = as_list(inputs)
        check_texts(texts)
        check_number("top_k", top_k, 1)
        tok = self.tokenizer
        enc = tok(texts)
        mask_id = tok.mask_token_id
        feats: list[dict] = []
        where: list[list[tuple[int, int]]] = []  # per input, per mask: (feature, index among that feature's masks)
        for i, ids in enumerate(enc["input_ids"]):
            positions = [p for p, t in enumerate(ids) if t == mask_id]
            if not positions:
                raise ValueError(f"input {i} has no {tok.mask_token} token: {texts[i][:80]!r}")
            if len(ids) <= self.max_length:
                feats.append({"input_ids": ids, "token_type_ids": enc["token_type_ids"][i]})
                where.append([(len(feats) - 1, r) for r in range(len(positions))])
                continue
            # too long for one window: each mask is read in a window centred on it
            content, width = ids[1:-1], self.max_length - 2
            spots = []
            for p in positions:
                start = min(max(p - 1 - width // 2, 0), len(content) - width)
                window = [tok.cls_token_id] + content[start : start + width] + [tok.sep_token_id]
                read = sum(1 for q in positions if start + 1 <= q < p)  # this mask's index among the window's
                feats.append({"input_ids": window, "token_type_ids": [0] * len(window), "read": read})
                spots.append((len(feats) - 1, 0))  # the window's logits hold this one mask
            where.append(spots)
        logits = self._mask_logits(feats, mask_id)
        target_ids = self.target_ids(targets) if targets is not None else None
        k = min(top_k, len(target_ids)) if target_ids is not None else top_k
        results = []
        for ids, spots in zip(enc["input_ids"], where):
            ids = np.array(ids)
            positions = np.nonzero(ids == mask_id)[0]
            rows = []
            for (j, r), pos in zip(spots, positions):
                probs = softmax(logits[j][r])
                candidates = probs[target_ids] if target_ids is not None else probs
                best = np.argsort(-candidates, kind="stable")[:k]
                row = []
                for b in best:
                    token = int(target_ids[b]) if target_ids is not None else int(b)
                    filled = ids.copy()
                    filled[pos] = token
                    row.append(
                        {
                            "score": float(candidates[b]),
                            "token": token,
                            "token_str": tok.decode([token]),
                            "sequence": tok.decode(filled.tolist(), skip_special_tokens=len(positions) == 1),
                        }
                    )
                rows.append(row)
            results.append(rows[0] if len(rows) == 1 else rows)
        return results[0] if single else results
