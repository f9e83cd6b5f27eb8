"""The domain-shift suite: each shift's contract (shape, range, seed, identity) and the benchmark script end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from BreastFusionLib.bundle.report import write_model_report
from BreastFusionLib.crop import lesion_box_from_mask
from BreastFusionLib.evaluation.delong import delong_contrast, delong_test
from BreastFusionLib.evaluation.domain_shift import SHIFTS, apply_shift
from BreastFusionLib.networks import build_classifier

from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "bench_domain_shift.py"
LITE0 = "cbam_efficientnet_lite0"
CASES = [(name, severity) for name, shift in SHIFTS.items() for severity in shift.severities]


def _frame(seed: int = 0, shape=(90, 120)) -> tuple[np.ndarray, np.ndarray]:
    """A speckled grey frame with a dark oval lesion and its mask."""
    rng = np.random.default_rng(seed)
    image = np.clip(rng.rayleigh(0.15, shape) + np.linspace(0.1, 0.3, shape[0])[:, None], 0, 1).astype(np.float32)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    mask = ((rows - shape[0] * 0.55) / 12) ** 2 + ((cols - shape[1] * 0.5) / 20) ** 2 < 1
    image[mask] *= 0.3
    return image, mask


@pytest.mark.parametrize("name, severity", CASES)
def test_each_shift_keeps_a_unit_float_frame_is_seeded_and_changes_it(name, severity):
    image, mask = _frame()
    shifted, lesion = apply_shift(name, severity, image, mask, np.random.default_rng(3))
    again, _ = apply_shift(name, severity, image, mask, np.random.default_rng(3))
    np.testing.assert_array_equal(shifted, again)  # deterministic for a seed
    assert shifted.dtype == np.float32 and shifted.ndim == 2 and 0 <= shifted.min() and shifted.max() <= 1
    assert lesion.dtype == bool and lesion.shape == shifted.shape and lesion.any()
    if name == "resolution":
        scale = SHIFTS[name].severities[severity]
        assert shifted.shape == tuple(round(side * scale) for side in image.shape)
    else:
        assert shifted.shape == image.shape
    if name == "crop_margin":  # the image is kept, the box drawn round the lesion changes
        np.testing.assert_array_equal(shifted, image)
        assert lesion_box_from_mask(lesion) != lesion_box_from_mask(mask)
    else:
        assert shifted.shape != image.shape or np.abs(shifted - image).mean() > 1e-3


@pytest.mark.parametrize("name", [name for name, shift in SHIFTS.items() if shift.identity is not None])
def test_the_identity_level_leaves_the_frame_and_its_lesion_box_unchanged(name):
    image, mask = _frame(1)
    shifted, lesion = SHIFTS[name].apply(image, mask, SHIFTS[name].identity, np.random.default_rng(0))
    np.testing.assert_allclose(shifted, image, atol=1e-6)
    assert lesion_box_from_mask(lesion) == lesion_box_from_mask(mask)


def test_severities_grade_the_shift_and_geometry_follows_the_lesion():
    image, mask = _frame(2)
    rng = np.random.default_rng(0)
    mild, strong = (np.abs(apply_shift("blur", s, image, mask, rng)[0] - image).mean() for s in SHIFTS["blur"].severities)
    assert strong > mild
    _, half = apply_shift("resolution", "x0.5", image, mask, rng)
    assert abs(int(half.sum()) - mask.sum() / 4) < 0.15 * mask.sum() / 4
    mirrored, flipped = apply_shift("flip_left_right", "mirrored", image, mask, rng)
    np.testing.assert_array_equal(mirrored, image[:, ::-1])
    np.testing.assert_array_equal(flipped, mask[:, ::-1])
    row0, col0, row1, col1 = lesion_box_from_mask(mask)
    _, loose = apply_shift("crop_margin", "box x1.5", image, mask, rng)
    loose_box = lesion_box_from_mask(loose)
    assert loose_box[3] - loose_box[1] == pytest.approx(1.5 * (col1 - col0), abs=1)
    faint, _ = apply_shift("marks", "faint (grey 0.6)", image, mask, rng)
    drawn = faint > image
    assert faint[drawn].max() <= 0.6 + 1e-6 and (faint > image + 0.1).sum() > 50  # grey calipers and text, no white
    gained, _ = apply_shift("gain", "+6 dB", image, mask, rng)
    assert np.median(gained - image) == pytest.approx(0.1, abs=1e-6)  # 6 dB of a 60 dB display


def test_delong_contrast_matches_the_paired_test_and_cancels_identical_changes():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    a, b = labels + rng.normal(0, 1.0, 60), labels + rng.normal(0, 1.5, 60)
    paired = delong_test(labels, a, b)
    contrast = delong_contrast(labels, [a, b], [1, -1])
    assert contrast["value"] == pytest.approx(paired["difference"]) and contrast["p_value"] == pytest.approx(paired["p_value"])
    same = delong_contrast(labels, [b, a, b, a], [1, -1, -1, 1])  # two options that lose exactly as much
    assert same["value"] == pytest.approx(0) and same["p_value"] == 1.0


def _busi_like(folder: Path, cases: int = 8) -> Path:
    """A prepared-BUSI-like folder: raw frames with a bright blob (benign) or a dark bar (malignant), masks, 2 folds."""
    rng = np.random.default_rng(0)
    (folder / "raw").mkdir(parents=True)
    raw_rows, rows = [], []
    for index in range(cases):
        label = ("benign", "malignant")[index % 2]
        image = rng.normal(110, 20, (80, 100))
        mask = np.zeros((80, 100), bool)
        mask[30:50, 40:60] = True
        image[mask] = 230 if label == "benign" else 15
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / "raw" / f"c{index}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "raw" / f"c{index}_mask.png")
        fold = (index // 2) % 2
        raw_rows.append(f"c{index},{folder / 'raw' / f'c{index}.png'},{folder / 'raw' / f'c{index}_mask.png'},{fold}")
        rows.append(f"c{index},{label},{fold}")
    (folder / "raw_manifest.csv").write_text("case_id,us_image,us_mask,fold\n" + "\n".join(raw_rows) + "\n")
    (folder / "manifest.csv").write_text("case_id,label,fold\n" + "\n".join(rows) + "\n")
    (folder / "import_report.json").write_text(json.dumps({"lesion_fraction": 0.5}))
    return folder


@pytest.fixture(scope="module")
def lite0_fold(tmp_path_factory) -> Path:
    """A fold bundle as ``bench_busi.py cv --keep-models`` keeps it: an untrained Lite0 US model at 64 px with its records."""
    root = tmp_path_factory.mktemp("fold")
    (root / "models" / "us").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(build_classifier("us", backbone=LITE0).state_dict(), root / "models" / "us" / "model.pt")
    runs = root / "runs" / "us"
    runs.mkdir(parents=True)
    (runs / "predictions_val.csv").write_text("case_id,label,prob_malignant\n" + "".join(
        f"v{i},{i % 2},{0.2 + 0.1 * i}\n" for i in range(6)))
    write_model_report(str(runs), "us", 64, LITE0, tested=False)
    return root


def test_script_scores_shifts_for_two_options_with_delong_against_clean(lite0_fold, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    script = load_script(SCRIPT, "bench_domain_shift")
    dataset = _busi_like(tmp_path / "data", cases=4)
    options = []
    for option in ("centred", "off_centre"):
        for fold in (0, 1):
            shutil.copytree(lite0_fold, tmp_path / option / f"fold_{fold}")
        options.append(tmp_path / option)
    report_path = tmp_path / "shift.json"
    shifts = ["resolution", "crop_margin", "marks"]  # geometry, the lesion box and drawing; every shift is tested above
    assert script.main(["--dataset", str(dataset), "--models", *map(str, options), "--shifts", *shifts,
                        "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    conditions = report["conditions"]
    assert [(c["shift"], c["severity"]) for c in conditions] == [("clean", "")] + [c for c in CASES if c[0] in shifts]
    assert report["options"] == ["centred", "off_centre"] and report["data"].startswith("BUSI, 4 cases (2 malignant)")
    for condition in conditions:
        for option in ("centred", "off_centre"):
            entry = condition["options"][option]
            assert entry["ci95"][0] <= entry["auc"] <= entry["ci95"][1]
            assert ("difference" in entry) == (condition["shift"] != "clean")
        # the two options are the same model: equal AUCs, and their changes cancel
        assert condition["options"]["centred"] == condition["options"]["off_centre"]
        assert condition["shift"] == "clean" or condition["second_minus_first"]["difference"] == 0
    assert len(report["cases"]["probability"]["centred"]["marks white"]) == 4
    table = capsys.readouterr().out
    assert "| shift | severity | centred AUC [95% CI] | change (p) |" in table and "| crop_margin | box x1.5 |" in table


def test_script_names_a_models_folder_without_fold_models(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    script = load_script(SCRIPT, "bench_domain_shift")
    with pytest.raises(SystemExit) as stop:
        script.main(["--dataset", str(_busi_like(tmp_path / "data")), "--models", str(tmp_path)])
    assert stop.value.code == 2 and "no fold_k/models/us/model.pt" in capsys.readouterr().err


def test_variant_probabilities_follow_predict_case_and_the_ensemble(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    script = load_script(SCRIPT, "bench_domain_shift")
    rng = np.random.default_rng(0)
    first, second = rng.normal(0, 2, (3, 5, 2)), rng.normal(0, 2, (3, 5, 2))  # (flips, conditions, classes)
    soft = lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(script.variant_probability([first], [2.0], False), soft(first[0] / 2.0)[:, 1])
    np.testing.assert_allclose(script.variant_probability([first], [2.0], True), soft(first.mean(0) / 2.0)[:, 1])
    pair = (soft(first[0] / 2.0) + soft(second[0] / 0.5)) / 2
    np.testing.assert_allclose(script.variant_probability([first, second], [2.0, 0.5], False), pair[:, 1])
    # twins: the ensemble answers as its member, with and without TTA
    for tta in (False, True):
        np.testing.assert_allclose(script.variant_probability([first, first], [2.0, 2.0], tta),
                                   script.variant_probability([first], [2.0], tta), rtol=1e-6)


def test_pair_disagreement_flags_wrong_decisions(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    script = load_script(SCRIPT, "bench_domain_shift")
    labels = np.array([0, 0, 1, 1, 0, 1, 0, 1, 0, 1])
    confident = np.where(labels == 1, 0.9, 0.1)
    members = np.stack([confident, confident])
    members[:, :2] = [[0.9, 0.8], [0.2, 0.3]]  # two benign cases the members disagree on: the mean calls them malignant
    entry = script.disagreement(labels, members, np.full(10, 0.5))
    assert entry["errors"] == 2 and entry["auc_wrong_vs_right"] == 1.0
    assert entry["error_rate_most_disagreeing_fifth"] == 1.0 and entry["error_rate_least_disagreeing_fifth"] == 0.0


def test_script_variants_and_the_pair_of_folds_that_did_not_train_on_a_case(lite0_fold, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    script = load_script(SCRIPT, "bench_domain_shift")
    dataset = _busi_like(tmp_path / "data", cases=4)
    for fold in (0, 1):
        shutil.copytree(lite0_fold, tmp_path / "option" / f"fold_{fold}")
    report_path = tmp_path / "shift.json"
    assert script.main(["--dataset", str(dataset), "--models", str(tmp_path / "option"), "--shifts", "crop_margin",
                        "--variants", "single", "tta", "pair", "pair_tta", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["options"] == ["option", "option +TTA", "option pair", "option pair+TTA"]
    probabilities = report["cases"]["probability"]
    for condition, values in probabilities["option"].items():  # twin members: the pair answers as the member
        assert probabilities["option pair"][condition] == pytest.approx(values, abs=1e-4)
        assert probabilities["option pair+TTA"][condition] == pytest.approx(probabilities["option +TTA"][condition], abs=1e-4)
    assert report["pair_disagreement"]["option"]["median_disagreement"] == 0.0
    assert all("ece" in entry for condition in report["conditions"] for entry in condition["options"].values())
    assert "| model option | clean AUC [95% CI] | clean ECE |" in capsys.readouterr().out


def test_pointing_game_pair_scores_with_the_two_folds_that_did_not_train_on_a_case(lite0_fold, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    game = load_script(SCRIPT.parent / "pointing_game_busi.py", "pointing_game_busi")
    dataset = _busi_like(tmp_path / "data", cases=4)
    for fold in (0, 1):
        shutil.copytree(lite0_fold, tmp_path / "option" / f"fold_{fold}")
    reports = {}
    ensemble = tmp_path / "ensemble"
    (ensemble / "runs" / "us").mkdir(parents=True)
    for pair in (False, True):
        path = tmp_path / f"pair_{pair}.json"
        assert game.main(["--dataset", str(dataset), "--models", str(tmp_path / "option"), "--json", str(path),
                          *(["--pair", "--save-in", str(ensemble)] if pair else [])]) == 0
        reports[pair] = json.loads(path.read_text())
    assert "ensemble of the two cross-validation fold models" in reports[True]["data"]
    saved = json.loads((ensemble / "runs" / "us" / "pointing_game.json").read_text())
    assert saved["data"] == reports[True]["data"] and set(saved["maps"]["us"]) == {"attention", "gradcam"}
    assert reports[True]["crops"] == reports[False]["crops"]  # twin members: the members' mean map is the member's map
    with pytest.raises(SystemExit):
        game.main(["--dataset", str(dataset), "--models", str(tmp_path / "option"), "--pair", "--save-in-bundle"])
