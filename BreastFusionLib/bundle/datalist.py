"""Datalists for the bundle: manifest rows -> MONAI dicts for one split and one modality.

Partitions come from the manifest's ``split`` column (train / val / test) or, for k-fold
cross-validation, from its ``fold`` column: with ``fold=k`` the test part is fold k, validation is
fold (k + 1) mod K and training is every other fold, so threshold and checkpoint selection never
see the test fold. With ``val_fold=k`` instead, fold k validates and every other fold trains, with
no test part: the final model of a cross-validated recipe, to be tested on an external set.
Off-centre training reads the context crops (``us_context`` / ``ct_context``) instead of the crops
(``context=True``).

``manifest`` may be one CSV path or a list of them (datasets combined): each manifest's relative
paths resolve from its own folder, and case ids must be unique across them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from BreastFusionLib.cohort.manifest import load_manifest
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.transforms import LABEL_KEY, modality_keys

PARTS = ("train", "val", "test")
_SOURCE_COLUMN = {"us": "us_image", "ct": "ct_image"}
_CONTEXT_COLUMN = {"us": "us_context", "ct": "ct_context"}


def manifest_paths(manifest: str | list[str] | tuple[str, ...]) -> list[str]:
    """One manifest path or several as a list (the bundle's ``--manifest "['a.csv','b.csv']"``)."""
    paths = [manifest] if isinstance(manifest, (str, Path)) else list(manifest)
    if not paths:
        raise UserInputError("no manifest given")
    return [str(path) for path in paths]


def load_cases(manifest: str | list[str] | tuple[str, ...]) -> list[dict]:
    """The validated cases of one or several manifests; each case also gets ``manifest_file`` (its CSV)."""
    cases, first_seen = [], {}
    for path in manifest_paths(manifest):
        for case in load_manifest(path):
            if case["case_id"] in first_seen:
                raise UserInputError(f"case_id {case['case_id']!r} is in both {first_seen[case['case_id']]} and "
                                     f"{path}: combined manifests need distinct case ids")
            first_seen[case["case_id"]] = path
            cases.append({**case, "manifest_file": path})
    return cases


def _partition(cases: list[dict], fold: int | None, val_fold: int | None, source: str) -> list[str]:
    """The part ("train", "val", "test" or "") of each case."""
    if fold is None and val_fold is None:
        return [str(case.get("split") or "") for case in cases]
    if fold is not None and val_fold is not None:
        raise UserInputError("give --fold (test fold) or --val_fold (validation fold, no test), not both")
    chosen = fold if fold is not None else val_fold
    folds = sorted({c["fold"] for c in cases if c.get("fold") is not None})
    if len(folds) < (3 if fold is not None else 2) or chosen not in folds:
        raise UserInputError(f"{source}: fold {chosen} needs a 'fold' column with at least "
                             f"{3 if fold is not None else 2} folds, found {folds}")
    parts = []
    for case in cases:
        if case.get("fold") is None:
            parts.append("")
        elif case["fold"] == chosen:
            parts.append("test" if fold is not None else "val")
        elif fold is not None and case["fold"] == folds[(folds.index(fold) + 1) % len(folds)]:
            parts.append("val")
        else:
            parts.append("train")
    return parts


def load_datalist(manifest: str | list[str] | tuple[str, ...], modality: str, part: str | None,
                  fold: int | None = None, val_fold: int | None = None, context: bool = False) -> list[dict]:
    """Cases of one ``part`` ("train", "val" or "test"; ``None`` = every case) with the crops ``modality`` needs.

    Each item: ``case_id``, ``label`` (0 benign, 1 malignant) and one path per crop key
    (``us``, ``ct``): the crop, or with ``context`` its context crop. A case lacking a crop the model
    needs is an error, not silently dropped.
    With ``val_fold`` the test part is empty by design (``[]``, not an error).
    """
    if part is not None and part not in PARTS:
        raise UserInputError(f"part must be one of {PARTS}, got {part!r}")
    source = " + ".join(manifest_paths(manifest))
    cases = load_cases(manifest)
    parts = _partition(cases, fold, val_fold, source)
    if part == "test" and val_fold is not None:
        return []
    items = []
    for case, case_part in zip(cases, parts):
        if part is not None and case_part != part:
            continue
        item = {"case_id": case["case_id"], LABEL_KEY: int(case["label"])}
        for key in modality_keys(modality):
            column = (_CONTEXT_COLUMN if context else _SOURCE_COLUMN)[key]
            path = case.get(column)
            if not path:
                hint = " (off-centre training needs context crops: prepare the cohort with --context)" if context else ""
                raise UserInputError(f"{case['manifest_file']}: case {case['case_id']} has no {column} "
                                     f"for the {modality} model{hint}")
            item[key] = path
        items.append(item)
    if not items:
        how = (f"fold {fold}" if fold is not None else f"validation fold {val_fold}" if val_fold is not None
               else "the 'split' column")
        raise UserInputError(f"{source}: no case is in the {part or 'whole'!r} part ({how}); assign splits first")
    return items


def class_weights(datalist: list[dict]) -> torch.Tensor:
    """Cross-entropy weights n / (2 n_c) that balance benign and malignant cases in training."""
    counts = torch.bincount(torch.tensor([item[LABEL_KEY] for item in datalist]), minlength=2).float()
    if (counts == 0).any():
        raise UserInputError(f"training data needs both classes, got {counts.tolist()} (benign, malignant)")
    return counts.sum() / (2.0 * counts)
