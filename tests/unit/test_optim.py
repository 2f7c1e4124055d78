"""The public learning-rate schedule helpers (transformers' names over the trainer's own schedule)."""

import pytest
import torch


def test_public_schedule_helpers_keep_transformers_names_and_arguments():
    import bertforge

    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([w], lr=0.1)
    sched = bertforge.get_linear_schedule_with_warmup(opt, num_warmup_steps=4, num_training_steps=12)
    rates = []
    for _ in range(12):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])  # (s + 1) / warmup, Megatron's warm-up
    assert rates[4] == pytest.approx(0.1) and rates[8] == pytest.approx(0.05) and rates[-1] == pytest.approx(0.0125)
    cos = bertforge.get_cosine_schedule_with_warmup(torch.optim.SGD([w], lr=1.0), 0, 10)
    cos_rates = []
    for _ in range(10):
        cos_rates.append(cos.get_last_lr()[0])
        cos.optimizer.step()
        cos.step()
    assert cos_rates[0] == pytest.approx(1.0) and cos_rates[5] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="num_warmup_steps <= num_training_steps"):
        bertforge.get_linear_schedule_with_warmup(opt, 20, 10)
