"""Late fusion, the baseline the fusion network must beat: the mean of the US and CT models' probabilities.

It is evaluated exactly like a trained model: its validation and test predictions are written in
the bundle's format and ``write_model_report`` chooses the threshold on validation data.
"""

from __future__ import annotations

import csv
from pathlib import Path

from BreastFusionLib.bundle.report import read_predictions, write_model_report
from BreastFusionLib.errors import UserInputError


def write_late_fusion_predictions(us_dir: str | Path, ct_dir: str | Path, out_dir: str | Path) -> dict:
    """Average US and CT predictions case by case (validation and test) and report them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for part in ("val", "test"):
        name = f"predictions_{part}.csv"
        us_ids, us_labels, us_probabilities = read_predictions(Path(us_dir) / name)
        ct = dict(zip(*read_predictions(Path(ct_dir) / name)[::2]))
        missing = sorted(set(us_ids) - set(ct))
        if missing or len(ct) != len(us_ids):
            raise UserInputError(f"{name}: the US and CT models saw different cases (e.g. {missing[:3]})")
        with (out / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(("case_id", "label", "prob_malignant"))
            for case_id, label, probability in zip(us_ids, us_labels, us_probabilities):
                writer.writerow((case_id, int(label), (probability + ct[case_id]) / 2.0))
    return write_model_report(str(out), "late_fusion")
