"""Ignite handlers the bundle adds to MONAI's: a per-epoch loss history and per-case predictions."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from ignite.engine import Engine, Events


class _EpochCollector:
    """Collects rows during an epoch (``_collect`` per iteration) and writes them at its end (``_write``)."""

    def __init__(self) -> None:
        self._rows: list = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self._rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _collect(self, engine: Engine) -> None:
        raise NotImplementedError

    def _write(self, engine: Engine) -> None:
        raise NotImplementedError


class LossHistory(_EpochCollector):
    """Appends one row per epoch (train loss, validation loss and AUC) to ``<output_dir>/loss_history.csv``.

    Attach it after MONAI's ``ValidationHandler`` so that the epoch's validation has run. The file
    is appended to, so a resumed training keeps the epochs before the interruption.
    """

    FIELDS = ("epoch", "train_loss", "val_loss", "val_auc")

    def __init__(self, output_dir: str, validator: Engine | None = None, loss_metric: str = "val_loss",
                 auc_metric: str = "val_auc") -> None:
        super().__init__()
        self.path = Path(output_dir) / "loss_history.csv"
        self.validator = validator
        self.loss_metric, self.auc_metric = loss_metric, auc_metric

    def _collect(self, engine: Engine) -> None:
        output = engine.state.output
        items = output if isinstance(output, list) else [output]
        self._rows.append(float(items[0]["loss"]))

    def _write(self, engine: Engine) -> None:
        metrics = self.validator.state.metrics if self.validator is not None and self.validator.state else {}
        row = {
            "epoch": engine.state.epoch,
            "train_loss": sum(self._rows) / max(len(self._rows), 1),
            "val_loss": metrics.get(self.loss_metric, ""),
            "val_auc": metrics.get(self.auc_metric, ""),
        }
        new_file = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.FIELDS)
            if new_file:
                writer.writeheader()
            writer.writerow(row)


class PredictionWriter(_EpochCollector):
    """Writes ``case_id, label, prob_malignant`` for every case an evaluator sees to ``filename``.

    Case ids come from the (decollated) input batch; ``label_index`` (0/1) and ``pred_prob``
    (softmax probabilities) from the post-processed output. The file is rewritten at each run.
    """

    FIELDS = ("case_id", "label", "prob_malignant")

    def __init__(self, filename: str) -> None:
        super().__init__()
        self.path = Path(filename)

    def _collect(self, engine: Engine) -> None:
        for case, item in zip(engine.state.batch, engine.state.output):
            probabilities = torch.as_tensor(item["pred_prob"]).flatten()
            self._rows.append({
                "case_id": case["case_id"],
                "label": int(torch.as_tensor(item["label_index"]).item()),
                "prob_malignant": float(probabilities[1]),
            })

    def _write(self, _: Engine) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.FIELDS)
            writer.writeheader()
            writer.writerows(self._rows)
