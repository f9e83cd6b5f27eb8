"""Patient-level splits: stratified by label, grouped by patient and by any ``group`` column, seeded.

Cases that share a patient, or a ``group`` value (e.g. near-duplicate images of one lesion), are
joined into one unit that always lands in the same part, so no patient and no group crosses a
split. Units are dealt into folds by scikit-learn's ``StratifiedGroupKFold``, which keeps the
benign:malignant ratio of every fold close to the cohort's.

- ``assign_folds``: k-fold cross-validation, writes ``fold`` (0..k-1);
- ``assign_splits``: train / val / test by fractions (the paper's 80/20 is ``(0.8, 0.0, 0.2)``),
  writes ``split``; fractions are rounded to multiples of 1/20 (1/n for a cohort of n < 20 units).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from BreastFusionLib.cohort.manifest import SPLITS
from BreastFusionLib.errors import UserInputError

FRACTION_RESOLUTION = 20


def split_units(cases: list[dict]) -> np.ndarray:
    """One integer per case: cases linked by ``patient_id`` or ``group`` share a unit (union-find)."""
    parent = list(range(len(cases)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    first_seen: dict[tuple[str, str], int] = {}
    for index, case in enumerate(cases):
        for column in ("patient_id", "group"):
            value = str(case.get(column) or "")
            if not value:
                continue
            other = first_seen.setdefault((column, value), index)
            parent[root(index)] = root(other)
    return np.array([root(index) for index in range(len(cases))])


def _folds(cases: list[dict], n_folds: int, seed: int) -> np.ndarray:
    labels = np.array([int(case["label"]) for case in cases])
    units = split_units(cases)
    n_units = len(set(units.tolist()))
    if n_units < n_folds:
        raise UserInputError(f"{n_folds} folds need at least {n_folds} independent patients/groups, found {n_units}")
    for name, label in (("benign", 0), ("malignant", 1)):
        if len(set(units[labels == label].tolist())) < 2:
            raise UserInputError(f"splitting needs at least 2 {name} patients, found {len(set(units[labels == label].tolist()))}")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.empty(len(cases), dtype=int)
    with warnings.catch_warnings():  # small classes in many folds are fine: assign_splits merges folds
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for fold, (_, test_index) in enumerate(splitter.split(np.zeros(len(cases)), labels, units)):
            folds[test_index] = fold
    return folds


def assign_folds(cases: list[dict], n_folds: int = 5, seed: int = 0) -> list[dict]:
    """Copies of ``cases`` with a ``fold`` column for k-fold cross-validation."""
    if n_folds < 3:
        raise UserInputError(f"cross-validation needs at least 3 folds (test, validation, training), got {n_folds}")
    folds = _folds(cases, n_folds, seed)
    return [{**case, "fold": int(fold)} for case, fold in zip(cases, folds)]


def assign_splits(cases: list[dict], fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
                  seed: int = 0) -> list[dict]:
    """Copies of ``cases`` with a ``split`` column (train / val / test) in the given fractions."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise UserInputError(f"split fractions (train, val, test) must be 3 non-negative numbers summing to 1, got {fractions}")
    resolution = min(FRACTION_RESOLUTION, len(set(split_units(cases).tolist())))
    counts = [int(round(f * resolution)) for f in fractions]
    counts[0] = resolution - counts[1] - counts[2]
    if counts[0] <= 0 or counts[2] <= 0:
        raise UserInputError(f"split fractions {fractions} leave no training or no test data for {resolution} patients/groups")
    folds = _folds(cases, resolution, seed)
    part_of_fold = np.repeat(np.arange(3), counts)
    return [{**case, "split": SPLITS[part_of_fold[fold]]} for case, fold in zip(cases, folds)]
