"""Checkpoint discovery for resuming, and the preflight check run before any training or evaluation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from BreastFusionLib.bundle.datalist import PARTS, load_datalist
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.inference.records import ENSEMBLE_FILE

_EPOCH = re.compile(r"=(\d+)\.pt$")


class BestModelState:
    """The best-validation-AUC bookkeeping, saved with the per-epoch resume checkpoint.

    Without it a resumed training forgets which epoch was best: the best-model saver starts with
    an empty record and the first validation after the resume overwrites ``model.pt`` even when
    an earlier epoch was better. This object gives ignite's checkpointing a ``state_dict`` for the
    saver's record and the evaluator's best metric and epoch.
    """

    def __init__(self, saver, evaluator) -> None:
        self.saver, self.evaluator = saver, evaluator

    def state_dict(self) -> dict:
        record = self.saver._key_metric_checkpoint  # MONAI keeps the best-model record here
        saved = None
        if record is not None:  # plain floats and strings, so that weights_only=True can load them
            saved = {"_saved": [(float(priority), str(name)) for priority, name in record.state_dict()["_saved"]]}
        return {"saved": saved,
                "best_metric": float(self.evaluator.state.best_metric),
                "best_metric_epoch": int(self.evaluator.state.best_metric_epoch)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("saved") is not None:
            self.saver.load_state_dict(state["saved"])
        self.evaluator.state.best_metric = state["best_metric"]
        self.evaluator.state.best_metric_epoch = state["best_metric_epoch"]


def latest_resume_checkpoint(ckpt_dir: str) -> str:
    """Path of the newest ``resume_*.pt`` written by the trainer's per-epoch CheckpointSaver, or ``""``."""
    candidates = [(int(m.group(1)), p) for p in Path(ckpt_dir).glob("resume_*.pt") if (m := _EPOCH.search(p.name))]
    return str(max(candidates)[1]) if candidates else ""


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """End a bundle run with the one-line message of a ``UserInputError`` (``SystemExit``), never a traceback."""
    try:
        yield
    except UserInputError as error:
        raise SystemExit(f"error: {error}") from None


def preflight(manifest: str | list[str], modality: str, fold: int | None = None, parts: tuple[str, ...] = PARTS[:2],
              checkpoint: str | None = None, val_fold: int | None = None) -> None:
    """Validate the manifest's ``parts`` (and that ``checkpoint`` exists) before any work starts.

    Problems end the run with one clear message (``SystemExit``), never with a traceback. With
    ``val_fold`` there is no test part to check.
    """
    with exit_on_user_error():
        for part in parts:
            if part == "test" and val_fold is not None:
                continue
            try:
                load_datalist(manifest, modality, part, fold, val_fold)
            except UserInputError as error:
                if part == "val" and "test" in parts:  # an evaluation without a validation split
                    raise UserInputError(f"{error}. To evaluate a trained model on another data set, use "
                                         f"configs/evaluate_external.json with --eval_name NAME") from None
                raise
        if checkpoint is not None and not Path(checkpoint).is_file():
            ensemble = Path(checkpoint).parent / ENSEMBLE_FILE
            if ensemble.is_file():
                raise UserInputError(f"the {modality} model of this bundle is an ensemble ({ensemble}): "
                                     f"score data with configs/evaluate_external.json or breastfusion predict")
            raise UserInputError(
                f"no trained {modality} model at {checkpoint}: train it first "
                f"(python -m monai.bundle run training ... --modality {modality}) or pass --ckpt_dir"
            )
