"""Report figures (matplotlib, Agg): ROC curves, loss curves (paper Fig. 3), confusion matrix."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray, dict]], path: Path, title: str,
             readers: dict[str, tuple[float, float]] | None = None) -> Path:
    """ROC of each model (labels, probabilities, metrics) with its AUC [CI] and operating point."""
    figure, axis = plt.subplots(figsize=(5.5, 5.5), dpi=150)
    for name, (labels, probabilities, metrics) in curves.items():
        fpr, tpr, _ = roc_curve(labels, probabilities)
        auc = metrics["auc"]
        line, = axis.plot(fpr, tpr, lw=2, label=f"{name}: AUC {auc['value']:.3f} [{auc['ci'][0]:.3f}-{auc['ci'][1]:.3f}]")
        axis.plot(1 - metrics["specificity"]["value"], metrics["sensitivity"]["value"], "o", color=line.get_color())
    for name, (sensitivity, specificity) in (readers or {}).items():
        axis.plot(1 - specificity, sensitivity, "s", markersize=8, label=f"{name} (reader)")
    axis.plot([0, 1], [0, 1], ":", color="grey")
    axis.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    axis.legend(loc="lower right", fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_loss_curves(history: list[dict], path: Path, title: str) -> Path:
    """Training and validation loss per epoch (and validation AUC on a second axis when present)."""
    epochs = [int(row["epoch"]) for row in history]
    figure, axis = plt.subplots(figsize=(6, 4), dpi=150)
    axis.plot(epochs, [float(row["train_loss"]) for row in history], "-o", ms=3, label="training loss")
    validation = [(e, float(r["val_loss"])) for e, r in zip(epochs, history) if r.get("val_loss") not in (None, "")]
    if validation:
        axis.plot(*zip(*validation), "-o", ms=3, label="validation loss")
    axis.set(xlabel="epoch", ylabel="cross-entropy loss", title=title)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axis.get_legend_handles_labels()
    auc = [(e, float(r["val_auc"])) for e, r in zip(epochs, history) if r.get("val_auc") not in (None, "")]
    if auc:
        second = axis.twinx()
        line, = second.plot(*zip(*auc), "--", color="grey", label="validation AUC")
        second.set(ylabel="validation AUC", ylim=(0, 1.02))
        handles, labels = handles + [line], labels + ["validation AUC"]
    axis.legend(handles, labels, loc="upper right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_confusion_matrix(counts: dict, path: Path, title: str) -> Path:
    """2x2 confusion matrix (rows: pathology, columns: model decision)."""
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
    figure, axis = plt.subplots(figsize=(3.8, 3.4), dpi=150)
    axis.imshow(matrix, cmap="Blues")
    for (row, column), value in np.ndenumerate(matrix):
        axis.text(column, row, str(value), ha="center", va="center", fontsize=14,
                  color="white" if value > matrix.max() / 2 else "black")
    axis.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["benign", "malignant"], yticklabels=["benign", "malignant"],
             xlabel="model decision", ylabel="pathology", title=title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
