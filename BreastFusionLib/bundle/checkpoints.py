"""Checkpoint discovery for resuming, and the preflight check run before any training or evaluation."""

from __future__ import annotations

import re
from pathlib import Path

from BreastFusionLib.bundle.datalist import PARTS, load_datalist
from BreastFusionLib.errors import UserInputError

_EPOCH = re.compile(r"=(\d+)\.pt$")


def latest_resume_checkpoint(ckpt_dir: str) -> str:
    """Path of the newest ``resume_*.pt`` written by the trainer's per-epoch CheckpointSaver, or ``""``."""
    candidates = [(int(m.group(1)), p) for p in Path(ckpt_dir).glob("resume_*.pt") if (m := _EPOCH.search(p.name))]
    return str(max(candidates)[1]) if candidates else ""


def preflight(manifest: str, modality: str, fold: int | None = None, parts: tuple[str, ...] = PARTS[:2],
              checkpoint: str | None = None) -> None:
    """Validate the manifest's ``parts`` (and that ``checkpoint`` exists) before any work starts.

    Problems end the run with one clear message (``SystemExit``), never with a traceback.
    """
    try:
        for part in parts:
            load_datalist(manifest, modality, part, fold)
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise UserInputError(
                f"no trained {modality} model at {checkpoint}: train it first "
                f"(python -m monai.bundle run training ... --modality {modality}) or pass --ckpt_dir"
            )
    except UserInputError as error:
        raise SystemExit(f"error: {error}") from None
