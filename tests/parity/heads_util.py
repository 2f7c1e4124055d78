"""What the parity tests of the families share: for those whose heads include multiple choice and a pretraining head
of their own (ELECTRA, ALBERT) a batch with two segments, padded or not, and each head's labels; for every family the
comparisons of outputs (at the real positions), losses and gradients."""

from __future__ import annotations

import torch


def batch(pad: bool, choices: int | None = None, low: int = 3, vocab: int = 99):
    """3 x 9 ids in [low, vocab), token types 1 from position 5, right padding of different lengths per row; with
    ``choices``, 2 examples of that many choices (B, C, S)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(low, vocab, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    if pad:
        mask[1, 6:] = 0
        mask[2, 3:] = 0
    ids = ids.masked_fill(mask == 0, 0)
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    out = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types * mask}
    if choices:
        out = {k: v[:choices].unsqueeze(0).repeat(2, 1, 1).roll(1, dims=1) for k, v in out.items()}
    return out


def labels(head: str, inputs, vocab: int = 99):
    """The labels of a fine-tuning head or of masked LM (ForPreTraining's are each family's own)."""
    g = torch.Generator().manual_seed(1)
    mask = inputs["attention_mask"]
    if head == "ForMaskedLM":
        y = torch.randint(0, vocab, mask.shape, generator=g)
        y[torch.rand(mask.shape, generator=g) > 0.4] = -100
        y[0, 0] = 5
        return {"labels": y.masked_fill(mask == 0, -100)}
    if head == "ForSequenceClassification":
        return {"labels": torch.tensor([0, 1, 1])}
    if head == "ForTokenClassification":
        return {"labels": torch.randint(0, 2, mask.shape, generator=g).masked_fill(mask == 0, -100)}
    if head == "ForQuestionAnswering":
        return {"start_positions": torch.tensor([1, 2, 2]), "end_positions": torch.tensor([3, 2, 2])}
    if head == "ForMultipleChoice":
        return {"labels": torch.tensor([1, 0])}
    return {}


def assert_outputs_close(ours: list[torch.Tensor], theirs: list[torch.Tensor], mask: torch.Tensor, tol: float) -> None:
    """Each pair equal within ``tol`` at the real positions (padded positions are not defined to be equal)."""
    assert len(ours) == len(theirs)
    for a, b in zip(theirs, ours, strict=True):
        assert a.shape == b.shape
        if a.dim() >= 2 and a.shape[:2] == mask.shape:
            a, b = a[mask], b[mask]
        torch.testing.assert_close(b, a, atol=tol, rtol=tol)


def assert_loss_and_gradients_match(hf, ours, hf_out, our_out, to_hf) -> dict[str, torch.Tensor]:
    """The two losses equal, then, after one backward pass each, every gradient of ours (renamed to transformers'
    keys by ``to_hf``) equal to theirs; returns the renamed gradients."""
    torch.testing.assert_close(our_out.loss, hf_out.loss, atol=1e-5, rtol=1e-5)
    hf_out.loss.backward()
    our_out.loss.backward()
    our_grads = to_hf({k: p.grad for k, p in ours.named_parameters() if p.grad is not None})
    hf_params = dict(hf.named_parameters())
    for key, grad in our_grads.items():
        torch.testing.assert_close(grad, hf_params[key].grad, atol=1e-5, rtol=1e-4, msg=key)
    return our_grads
