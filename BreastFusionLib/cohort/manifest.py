"""The cohort manifest: one CSV row per lesion, validated before any work starts.

Required columns: ``case_id`` (unique), ``patient_id``, ``label`` (benign | malignant) and at least
one of ``us_image`` / ``ct_image`` per row. Paths are relative to the manifest's folder or absolute.
Optional columns are parsed when present: ``us_box`` ("x0,y0,x1,y1" pixels), ``us_mask``,
``ct_point_ras`` ("x,y,z" mm), ``ct_side`` + ``ct_clock`` + ``ct_distance_mm`` (as a radiologist
reports it: "left", "2:30", "30 mm"), ``lesion_diameter_mm``, ``lesion_id``, ``group``, ``split``
(train | val | test), ``fold`` (integer >= 0), ``reader_*`` scores (BI-RADS or probability) and
``prepared`` (set on manifests of prepared crops, which need no lesion location); other columns
are kept as text. Files must exist and be readable images or volumes. Every row needs a lesion
location for each raw image: a US box or mask; a CT point or side + clock + distance. Every
problem is reported at once, each naming the CSV line, the column and the value.
"""

from __future__ import annotations

import csv
from pathlib import Path

from BreastFusionLib.cohort.file_checks import ct_problem, image_problem
from BreastFusionLib.cohort.readers import is_birads_column, parse_reader_score, reader_columns
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.localization.parsing import format_clock, parse_clock, parse_distance_mm, parse_side

REQUIRED = ("case_id", "patient_id", "label")
LABELS = {"benign": 0, "malignant": 1}
SPLITS = ("train", "val", "test")
IMAGE_COLUMNS = ("us_image", "us_mask", "ct_image", "us_context", "ct_context")  # *_context: prepared context crops
MAX_REPORTED = 50


def _numbers(text: str, count: int, column: str) -> tuple[float, ...]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != count:
        raise ValueError(f"{column} needs {count} comma-separated numbers")
    return tuple(float(p) for p in parts)


def _parse_row(raw: dict, folder: Path, problems: list[str], line: int) -> dict:
    case = {key: (value or "").strip() for key, value in raw.items() if key is not None}

    def problem(column: str, message: str) -> None:
        value = case.get(column)
        problems.append(f"line {line}, column {column} = {'' if value is None else value!r}: {message}")

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
            path = path if path.is_absolute() else (folder / path).absolute()
            if not path.exists():
                problem(column, f"file not found: {path}")
            elif (trouble := (ct_problem if column == "ct_image" else image_problem)(path)):
                problem(column, f"{path}: {trouble}")
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
    _parse_clock_location(case, problem)
    if not case.get("prepared"):
        if case.get("us_image") and not (case.get("us_box") or case.get("us_mask")):
            problem("us_box", "a raw US image needs a lesion location: us_box or us_mask")
        if case.get("ct_image") and not (case.get("ct_point_ras") or case.get("ct_clock") is not None):
            problem("ct_point_ras", "a CT needs a lesion location: ct_point_ras or ct_side + ct_clock + ct_distance_mm")
    return case


def _parse_clock_location(case: dict, problem) -> None:
    """Parse ``ct_side``, ``ct_clock`` and ``ct_distance_mm`` (all three or none)."""
    columns = ("ct_side", "ct_clock", "ct_distance_mm")
    given = [column for column in columns if case.get(column)]
    if given and len(given) < 3:
        problem(given[0], f"a clock location needs all of {columns}; missing {[c for c in columns if c not in given]}")
    parsers = {"ct_side": parse_side, "ct_clock": parse_clock, "ct_distance_mm": parse_distance_mm}
    for column in columns:
        if not case.get(column):
            case[column] = None
            continue
        try:
            case[column] = parsers[column](case[column])
        except UserInputError as error:
            problem(column, str(error))
            case[column] = None


def _cross_row_problems(cases: list[dict], columns: list[str]) -> list[str]:
    """Duplicate ids, conflicting labels for one lesion, and reader scores out of range."""
    problems = []
    seen: dict[str, int] = {}
    lesions: dict[tuple, tuple[int, str]] = {}
    for line, case in enumerate(cases, start=2):
        if case["case_id"] in seen:
            problems.append(f"line {line}, column case_id = {case['case_id']!r}: duplicate of line {seen[case['case_id']]}")
        seen.setdefault(case["case_id"], line)
        lesion = case.get("lesion_id") or case.get("us_image") or case.get("ct_image")
        key = (case.get("patient_id"), lesion)
        if case["label"] >= 0 and key in lesions and lesions[key][1] != case["label_name"]:
            problems.append(f"line {line}, column label = {case['label_name']!r}: conflicts with line {lesions[key][0]} "
                            f"({lesions[key][1]}) for the same lesion of patient {case.get('patient_id')!r}")
        lesions.setdefault(key, (line, case["label_name"]))
    for column in reader_columns(columns):
        birads = is_birads_column([case.get(column) or "" for case in cases])
        for line, case in enumerate(cases, start=2):
            if case.get(column):
                try:
                    parse_reader_score(case[column], birads)
                except ValueError as error:
                    problems.append(f"line {line}, column {column} = {case[column]!r}: {error}")
    return problems


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
    problems += _cross_row_problems(cases, columns)
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
            if isinstance(row.get("ct_clock"), float):
                out["ct_clock"] = format_clock(row["ct_clock"])
            if "label_name" in row:
                out["label"] = row["label_name"]
            writer.writerow(out)
    return path
