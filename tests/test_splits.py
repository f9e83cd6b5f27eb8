"""Patient-level splits: no patient or group crosses a split, labels stay stratified, seeds reproduce."""

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from BreastFusionLib.cli import main
from BreastFusionLib.cohort.manifest import load_manifest
from BreastFusionLib.cohort.splits import assign_folds, assign_splits, split_units
from BreastFusionLib.errors import UserInputError


def cohort(patients: int, seed: int = 0, groups: int = 0) -> list[dict]:
    """Patients with 1-3 lesions each, ~35% malignant; optional near-duplicate groups across patients."""
    rng = np.random.default_rng(seed)
    cases = []
    for patient in range(patients):
        label = int(rng.uniform() < 0.35)
        for lesion in range(int(rng.integers(1, 4))):
            cases.append({"case_id": f"p{patient}l{lesion}", "patient_id": f"p{patient}", "label": label,
                          "label_name": ("benign", "malignant")[label], "group": ""})
    for group in range(groups):
        for case in rng.choice(cases, size=2, replace=False):
            case["group"] = f"g{group}"
    return cases


def crossing(cases: list[dict], column: str) -> list[str]:
    """Patients or groups found in more than one part."""
    parts: dict[tuple[str, str], set] = {}
    for case in cases:
        for key in ("patient_id", "group"):
            if case.get(key):
                parts.setdefault((key, case[key]), set()).add(case[column])
    return [name for (key, name), seen in parts.items() if len(seen) > 1]


@settings(max_examples=25, deadline=None)
@given(patients=st.integers(40, 120), seed=st.integers(0, 10_000), groups=st.integers(0, 8))
def test_no_patient_or_group_crosses_a_split_or_fold(patients, seed, groups):
    cases = cohort(patients, seed, groups)
    assert crossing(assign_splits(cases, (0.7, 0.1, 0.2), seed), "split") == []
    assert crossing(assign_folds(cases, 5, seed), "fold") == []


def test_fractions_and_label_ratio_are_kept_and_seeds_reproduce():
    cases = cohort(300, seed=1)
    split = assign_splits(cases, (0.8, 0.0, 0.2), seed=3)
    counts = Counter(case["split"] for case in split)
    assert set(counts) == {"train", "test"}
    assert abs(counts["test"] / len(cases) - 0.2) < 0.04
    overall = np.mean([c["label"] for c in cases])
    for part in ("train", "test"):
        assert abs(np.mean([c["label"] for c in split if c["split"] == part]) - overall) < 0.05
    assert split == assign_splits(cases, (0.8, 0.0, 0.2), seed=3)
    assert split != assign_splits(cases, (0.8, 0.0, 0.2), seed=4)
    folds = Counter(case["fold"] for case in assign_folds(cases, 5, seed=0))
    assert sorted(folds) == [0, 1, 2, 3, 4] and max(folds.values()) - min(folds.values()) < len(cases) * 0.06


def test_units_join_patients_through_groups():
    cases = [{"patient_id": "a", "group": "g"}, {"patient_id": "b", "group": "g"}, {"patient_id": "b", "group": ""},
             {"patient_id": "c", "group": ""}]
    units = split_units(cases)
    assert units[0] == units[1] == units[2] != units[3]


def test_bad_requests_are_clear():
    with pytest.raises(UserInputError, match="at least 3 folds"):
        assign_folds(cohort(50), 2)
    with pytest.raises(UserInputError, match="summing to 1"):
        assign_splits(cohort(50), (0.5, 0.1, 0.1))
    with pytest.raises(UserInputError, match="at least 2 malignant patients"):
        assign_folds([{**c, "label": 0} for c in cohort(50)][:-2] + cohort(1)[:1], 3)


def test_split_command_writes_back(tmp_path, capsys):
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "us.png")
    rows = "".join(f"c{i},p{i // 2},L{i},{'malignant' if i % 3 == 0 else 'benign'},us.png,\"0,0,4,4\"\n" for i in range(60))
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,patient_id,lesion_id,label,us_image,us_box\n" + rows)
    assert main(["split", str(manifest), "--folds", "5", "--seed", "2"]) == 0
    assert "fold 0:" in capsys.readouterr().out
    cases = load_manifest(manifest)
    assert {c["fold"] for c in cases} == {0, 1, 2, 3, 4} and crossing(cases, "fold") == []
    assert main(["split", str(manifest), "--fractions", "0.8,0,0.2", "--out", str(tmp_path / "s.csv")]) == 0
    assert {c["split"] for c in load_manifest(tmp_path / "s.csv")} == {"train", "test"}
