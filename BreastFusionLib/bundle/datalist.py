"""Datalists for the bundle: manifest rows -> MONAI dicts for one split and one modality.

Partitions come from the manifest's ``split`` column (train / val / test) or, for k-fold
cross-validation, from its ``fold`` column: with ``fold=k`` the test part is fold k, validation is
fold (k + 1) mod K and training is every other fold, so threshold and checkpoint selection never
see the test fold.
"""

from __future__ import annotations

from pathlib import Path

import torch

from BreastFusionLib.cohort.manifest import load_manifest
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.transforms import LABEL_KEY, modality_keys

PARTS = ("train", "val", "test")
_SOURCE_COLUMN = {"us": "us_image", "ct": "ct_image"}


def default_bundle_root() -> str:
    """The bundle folder: the current one if it holds ``configs/train.json``, else the repository's."""
    here = Path.cwd()
    for candidate in (here, here / "monai_bundle", Path(__file__).resolve().parents[2] / "monai_bundle"):
        if (candidate / "configs" / "train.json").is_file():
            return str(candidate)
    return str(here)


def _part_of(case: dict, fold: int | None, n_folds: int) -> str:
    if fold is None:
        return str(case.get("split") or "")
    case_fold = case.get("fold")
    if case_fold is None or case_fold == "":
        return ""
    case_fold = int(case_fold)
    if case_fold == fold:
        return "test"
    return "val" if case_fold == (fold + 1) % n_folds else "train"


def load_datalist(manifest: str, modality: str, part: str | None, fold: int | None = None) -> list[dict]:
    """Cases of one ``part`` ("train", "val" or "test"; ``None`` = every case) with the crops ``modality`` needs.

    Each item: ``case_id``, ``label`` (0 benign, 1 malignant) and one path per crop key
    (``us``, ``ct``). A case lacking a crop the model needs is an error, not silently dropped.
    """
    if part is not None and part not in PARTS:
        raise UserInputError(f"part must be one of {PARTS}, got {part!r}")
    cases = load_manifest(manifest)
    folds = sorted({int(c["fold"]) for c in cases if c.get("fold") not in (None, "")})
    if fold is not None and (len(folds) < 3 or fold not in folds):
        raise UserInputError(f"{manifest}: fold {fold} needs a 'fold' column with at least 3 folds, found {folds}")
    items = []
    for case in cases:
        if part is not None and _part_of(case, fold, len(folds)) != part:
            continue
        item = {"case_id": case["case_id"], LABEL_KEY: int(case["label"])}
        for key in modality_keys(modality):
            path = case.get(_SOURCE_COLUMN[key])
            if not path:
                raise UserInputError(f"{manifest}: case {case['case_id']} has no {_SOURCE_COLUMN[key]} for the {modality} model")
            item[key] = path
        items.append(item)
    if not items:
        how = f"fold {fold}" if fold is not None else "the 'split' column"
        raise UserInputError(f"{manifest}: no case is in the {part or 'whole'!r} part ({how}); assign splits first")
    return items


def class_weights(datalist: list[dict]) -> torch.Tensor:
    """Cross-entropy weights n / (2 n_c) that balance benign and malignant cases in training."""
    counts = torch.bincount(torch.tensor([item[LABEL_KEY] for item in datalist]), minlength=2).float()
    if (counts == 0).any():
        raise UserInputError(f"training data needs both classes, got {counts.tolist()} (benign, malignant)")
    return counts.sum() / (2.0 * counts)
