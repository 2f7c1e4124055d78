"""The training curves: loss and accuracy against step, from metrics.jsonl, as a PNG."""

from __future__ import annotations

import json

from bertforge.utils import atomic_path


def plot_metrics(metrics_path: str, png_path: str) -> None:
    """Plot training loss / MLM accuracy (and evaluation points) from ``metrics_path`` into ``png_path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, evals = [], []
    with open(metrics_path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                r = json.loads(line)
                (evals if "eval_mlm_loss" in r else train).append(r)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        steps = [r["step"] for r in train]
        ax_loss.plot(steps, [r["loss"] for r in train], label="train loss")
        ax_loss.plot(steps, [r["mlm_loss"] for r in train], label="train MLM loss", alpha=0.7)
        ax_acc.plot(steps, [r["mlm_accuracy"] for r in train], label="train MLM accuracy")
        if "binary_accuracy" in train[0]:
            ax_acc.plot(steps, [r.get("binary_accuracy", float("nan")) for r in train], label="train NSP/SOP accuracy")
    if evals:
        steps = [r["step"] for r in evals]
        ax_loss.plot(steps, [r["eval_mlm_loss"] for r in evals], "o-", label="valid MLM loss")
        ax_acc.plot(steps, [r["eval_mlm_accuracy"] for r in evals], "o-", label="valid MLM accuracy")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_acc.set_xlabel("step")
    ax_acc.set_ylabel("accuracy")
    ax_loss.legend()
    ax_acc.legend()
    ax_loss.grid(alpha=0.3)
    ax_acc.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
