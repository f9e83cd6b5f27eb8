"""The cohort manifest: one CSV row per lesion, validated before any work starts.

Required columns: ``case_id`` (unique), ``patient_id``, ``label`` (benign | malignant) and at least
one of ``us_image`` / ``ct_image`` per row. Paths are relative to the manifest's folder or absolute.
Optional columns are parsed when present: ``us_box`` ("x0,y0,x1,y1" pixels), ``ct_point_ras``
("x,y,z" mm), ``lesion_diameter_mm``, ``split`` (train | val | test), ``fold`` (integer >= 0);
other columns are kept as text. Every problem is reported at once, each naming the CSV line,
the column and the value.
"""

from __future__ import annotations

import csv
from pathlib import Path

from BreastFusionLib.errors import UserInputError

REQUIRED = ("case_id", "patient_id", "label")
LABELS = {"benign": 0, "malignant": 1}
SPLITS = ("train", "val", "test")
IMAGE_COLUMNS = ("us_image", "us_mask", "ct_image")
MAX_REPORTED = 50


def _numbers(text: str, count: int, column: str) -> tuple[float, ...]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != count:
        raise ValueError(f"{column} needs {count} comma-separated numbers")
    return tuple(float(p) for p in parts)


def _parse_row(raw: dict, folder: Path, problems: list[str], line: int) -> dict:
    case = {key: (value or "").strip() for key, value in raw.items() if key is not None}

    def problem(column: str, message: str) -> None:
        problems.append(f"line {line}, column {column} = {case.get(column, '')!r}: {message}")

    for column in REQUIRED:
        if not case.get(column):
            problem(column, "is empty")
    label = case.get("label", "").lower()
    if label and label not in LABELS:
        problem("label", f"unknown label; use one of {sorted(LABELS)}")
    case["label_name"], case["label"] = label, LABELS.get(label, -1)
    if not case.get("us_image") and not case.get("ct_image"):
        problem("us_image", "the row has neither us_image nor ct_image")
    for column in IMAGE_COLUMNS:
        if case.get(column):
            path = Path(case[column])
            path = path if path.is_absolute() else folder / path
            if not path.exists():
                problem(column, f"file not found: {path}")
            case[column] = str(path)
    parsers = {"us_box": lambda v: tuple(int(x) for x in _numbers(v, 4, "us_box")),
               "ct_point_ras": lambda v: _numbers(v, 3, "ct_point_ras"),
               "lesion_diameter_mm": float, "fold": int}
    for column, parse in parsers.items():
        if case.get(column):
            try:
                case[column] = parse(case[column])
            except ValueError as error:
                problem(column, f"not a valid value ({error})")
                continue
            if column == "us_box" and not (case[column][0] < case[column][2] and case[column][1] < case[column][3]):
                problem(column, "needs x0 < x1 and y0 < y1")
            if column in ("lesion_diameter_mm",) and case[column] <= 0:
                problem(column, "must be > 0")
            if column == "fold" and case[column] < 0:
                problem(column, "must be >= 0")
        else:
            case[column] = None
    if case.get("split") and case["split"] not in SPLITS:
        problem("split", f"unknown split; use one of {SPLITS}")
    return case


def load_manifest(path: str | Path) -> list[dict]:
    """Validate a manifest and return one dict per case (absolute paths, parsed values, label 0/1).

    Raises ``UserInputError`` listing every problem found.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"manifest not found: {path}")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise UserInputError(f"{path}: missing required column(s) {missing}; found {columns}")
        problems: list[str] = []
        cases = [_parse_row(row, path.parent, problems, line) for line, row in enumerate(reader, start=2)]
    seen: dict[str, int] = {}
    for line, case in enumerate(cases, start=2):
        if case["case_id"] in seen:
            problems.append(f"line {line}, column case_id = {case['case_id']!r}: duplicate of line {seen[case['case_id']]}")
        seen.setdefault(case["case_id"], line)
    if not cases:
        problems.append("the manifest has no rows")
    if problems:
        shown = problems[:MAX_REPORTED] + ([f"... and {len(problems) - MAX_REPORTED} more"] if len(problems) > MAX_REPORTED else [])
        raise UserInputError(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(shown))
    return cases


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (tuple, list)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def write_manifest(rows: list[dict], path: str | Path) -> Path:
    """Write case dicts as a manifest CSV (stable column order: required, images, then the rest)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns and key != "label_name"]
    first = [c for c in (*REQUIRED, "us_image", "ct_image") if c in columns]
    columns = first + [c for c in columns if c not in first]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            out = {key: _text(row.get(key)) for key in columns}
            if "label_name" in row:
                out["label"] = row["label_name"]
            writer.writerow(out)
    return path
