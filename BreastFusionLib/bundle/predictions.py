"""Per-image prediction tables: the model's raw and calibrated probability beside the manifest's own columns.

``PredictionWriter`` (``bundle.handlers``) writes ``case_id, label, prob_malignant`` while the
evaluator runs; once the operating threshold and temperature are known, ``write_prediction_table``
rewrites the file with ``prob_malignant_calibrated`` (temperature scaling, ``inference.calibration``)
and ``decision`` (at the threshold), followed by every other column of the case's manifest row as
the user wrote it (patient, device, reader scores, ...). Manifests combined from several files add
a ``manifest`` column naming the file each row came from.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from BreastFusionLib.bundle.datalist import manifest_paths
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.inference.calibration import apply_temperature

FIELDS = ("case_id", "label", "prob_malignant", "prob_malignant_calibrated", "decision")
LINE, SOURCE = "_line", "_manifest"  # where a row came from (not written out)


def read_manifest_rows(manifest: str | list[str] | tuple[str, ...]) -> dict[str, dict[str, str]]:
    """The manifest rows as written (text), by case id, with their CSV line and manifest file."""
    rows: dict[str, dict[str, str]] = {}
    for path in manifest_paths(manifest):
        with open(path, newline="") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                row = {key: (value or "").strip() for key, value in row.items() if key is not None}
                rows[row.get("case_id", "")] = {**row, LINE: str(line), SOURCE: path}
    return rows


def patient_of(row: dict[str, str] | None, case_id: str) -> str:
    """The patient a case belongs to (its manifest file and ``patient_id``; the case itself when unknown)."""
    if not row or not row.get("patient_id"):
        return f"case:{case_id}"
    return f"{row[SOURCE]}:{row['patient_id']}"


def write_prediction_table(path: str | Path, case_ids: list[str], labels, probabilities, threshold: float,
                           temperature: float | None, rows: dict[str, dict[str, str]] | None = None) -> Path:
    """Write the predictions with the calibrated probability, the decision and the manifest's other columns."""
    path = Path(path)
    rows = rows or {}
    missing = [case for case in case_ids if rows and case not in rows]
    if missing:
        raise UserInputError(f"{path}: {len(missing)} predicted case(s) are not in the manifest (e.g. {missing[:3]})")
    sources = {row[SOURCE] for row in rows.values()}
    extra: list[str] = ["manifest"] if len(sources) > 1 else []
    for case in case_ids:
        extra += [c for c in rows.get(case, {}) if c not in extra and c not in (*FIELDS, LINE, SOURCE)]
    calibrated = apply_temperature(np.asarray(probabilities, float), temperature or 1.0)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow((*FIELDS, *extra))
        for case, label, raw, calibrated_p in zip(case_ids, labels, probabilities, calibrated):
            row = {**rows.get(case, {}), "manifest": rows.get(case, {}).get(SOURCE, "")}
            writer.writerow((case, int(label), float(raw), float(calibrated_p),
                             "malignant" if raw >= threshold else "benign", *(row.get(c, "") for c in extra)))
    return path
