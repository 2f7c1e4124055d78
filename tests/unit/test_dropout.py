"""The fast CPU dropout: drop rate, scale, expectation, gradient, seeding, and where it hands over to F.dropout."""

from __future__ import annotations

import pytest
import torch

from bertforge.model.attention import attention
from bertforge.model.dropout import Dropout, dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mask_drops_at_rate_p_and_keeps_the_expectation(p):
    torch.manual_seed(0)
    n = 400_000
    mask = keep_mask((n,), p, torch.float32)
    kept = mask != 0
    scale = 65536 / (65536 - round(p * 65536))
    assert torch.all(mask[kept] == scale)
    rate = 1 - kept.double().mean().item()
    assert abs(rate - p) < 4 * (p * (1 - p) / n) ** 0.5  # within 4 standard deviations
    assert abs(mask.double().mean().item() - 1.0) < 4 * ((1 - p) * scale**2 / n) ** 0.5 + 1e-3


def test_mask_is_not_correlated_across_neighbours():
    torch.manual_seed(0)
    kept = keep_mask((200_000,), 0.5, torch.float32) != 0
    both = (kept[:-1] & kept[1:]).double().mean().item()  # independent: 0.25
    assert abs(both - 0.25) < 0.01
    every_fourth = kept.view(-1, 4).double().mean(0)  # the four 16-bit lanes of each 64-bit word behave alike
    assert torch.all((every_fourth - 0.5).abs() < 0.01)


def test_seeded_by_torch_and_different_each_call():
    torch.manual_seed(3)
    a, b = keep_mask((1000,), 0.1, torch.float32), keep_mask((1000,), 0.1, torch.float32)
    torch.manual_seed(3)
    assert torch.equal(a, keep_mask((1000,), 0.1, torch.float32)) and not torch.equal(a, b)


def test_gradient_is_the_mask_and_dtype_is_kept():
    torch.manual_seed(0)
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.3)
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach() / x.detach())  # y = x * mask
    values = x.grad.unique().tolist()
    assert values[0] == 0.0 and values[1] == pytest.approx(65536 / (65536 - round(0.3 * 65536))) and len(values) == 2
    assert dropout(torch.randn(8, 8, dtype=torch.bfloat16), 0.1).dtype == torch.bfloat16


def test_identity_in_eval_or_at_zero_and_zero_at_one():
    x = torch.randn(5, 7)
    layer = Dropout(0.1).eval()
    assert layer(x) is x and dropout(x, 0.0) is x and dropout(x, 0.5, training=False) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))


def test_attention_with_dropout_matches_sdpa_without_it():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 4) for _ in range(3))
    mask = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    mask[1, ..., 4:] = False
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(attention(q, k, v, mask, 0.0), expected)
    torch.testing.assert_close(attention(q, k, v, mask, 1e-9), expected)  # p rounds to 0 of 65536: no drop
    dropped = attention(q, k, v, mask, 0.5)
    assert dropped.shape == expected.shape and not torch.allclose(dropped, expected)
