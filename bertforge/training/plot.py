"""The training curves: loss and accuracy against step, from metrics.jsonl, as a PNG."""

from __future__ import annotations

import json
from typing import Any

from bertforge.utils import atomic_path


def plot_metrics(metrics_path: str, png_path: str) -> None:
    """Plot the training losses and accuracies, and the evaluation scores, of ``metrics_path`` into ``png_path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train: list[dict] = []
    evals: list[dict] = []
    for r in read_metrics(metrics_path):  # a line torn by a kill is skipped
        (evals if any(k.startswith("eval_") for k in r) else train).append(r)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))

    def curve(ax, records, key, label, style="-"):
        points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        if points:
            ax.plot(*zip(*points), style, label=label)

    # Training records: the loss and the objective's own losses and accuracies (MLM, NSP/SOP).
    curve(ax_loss, train, "loss", "train loss")
    for key in sorted({k for r in train for k in r if k.endswith("_loss")}):
        curve(ax_loss, train, key, f"train {key.replace('_', ' ')}")
    for key in sorted({k for r in train for k in r if k.endswith("_accuracy")}):
        curve(ax_acc, train, key, f"train {key.replace('_', ' ')}")
    # Evaluation records: losses on the left, every other score (accuracy, F1, ...) on the right.
    for key in sorted({k for r in evals for k in r if k.startswith("eval_")}):
        if key.endswith("perplexity"):
            continue
        curve(
            ax_loss if key.endswith("loss") or key.endswith("mse") else ax_acc,
            evals,
            key,
            "valid " + key.removeprefix("eval_").replace("_", " "),
            "o-",
        )
    curve(ax_loss, evals, "train_loss", "train loss (mean since last evaluation)", "s--")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_acc.set_xlabel("step")
    ax_acc.set_ylabel("accuracy / score")
    for ax in (ax_loss, ax_acc):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    ax_loss.grid(alpha=0.3)
    ax_acc.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def read_metrics(path: str) -> list[dict[str, Any]]:
    """The JSON records of a JSON-lines file a run wrote (metrics.jsonl, predictions), skipping a line that a kill cut
    off (or any line that is not a record)."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records
