"""``breastfusion locate`` on a synthetic chest CT (known nipples and mass) and on real CT."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import real_data
import SimpleITK as sitk
from PIL import Image

from BreastFusionLib.cli import main
from BreastFusionLib.localization.clock import ClockPosition
from BreastFusionLib.localization.parsing import format_clock
from BreastFusionLib.localization.points import LesionLocator, locate_lesion
from BreastFusionLib.ct.volume import to_sitk
from BreastFusionLib.synthetic.chest_ct import render_ct
from BreastFusionLib.synthetic.latent import sample_lesions

SEED = 1  # a left-breast case (negative x), 5:30, 13 mm mass


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """(spec, SyntheticCT, NIfTI path) of one synthetic case."""
    spec = sample_lesions(1, seed=SEED)[0]
    synthetic = render_ct(spec, np.random.default_rng(spec.seed))
    path = tmp_path_factory.mktemp("ct") / "case.nii.gz"
    sitk.WriteImage(to_sitk(synthetic.volume), str(path))
    return spec, synthetic, path


def _run(argv, capsys):
    code = main(["locate", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _point(values) -> str:
    return ",".join(f"{v:.3f}" for v in values)


def test_clock_mode_writes_crop_overlay_and_json_and_finds_the_mass(case, capsys, tmp_path):
    spec, synthetic, path = case
    out = tmp_path / "out"
    code, stdout, stderr = _run(["--ct", str(path), "--side", spec.side, "--clock", format_clock(spec.clock_hour),
                                 "--distance", f"{synthetic.distance_mm:.1f}mm", "--out", str(out), "--lesion-diameter", "15"], capsys)
    assert code == 0, stderr
    assert "right nipple: RAS" in stdout and "left nipple: RAS" in stdout and "proposed mass: RAS" in stdout
    crop = Image.open(out / "ct_crop.png")
    assert crop.size == (300, 300) and crop.mode == "L"
    overlay = Image.open(out / "overlay.png")
    assert overlay.format == "PNG" and overlay.size[0] > overlay.size[1]  # two panels side by side
    record = json.loads((out / "localization.json").read_text())
    assert str(tmp_path) not in json.dumps(record) and "case.nii" not in json.dumps(record)  # geometry only
    proposal = np.array(record["proposal"]["point_ras_mm"])
    assert np.linalg.norm(proposal - synthetic.mass_ras) <= 5.0
    for side in ("right", "left"):
        assert np.linalg.norm(np.array(record["nipples"][side]["point_ras_mm"]) - synthetic.nipples_ras[side]) <= 3.0
    recomputed = record["proposal"]["recomputed"]
    assert recomputed["side"] == spec.side and abs(recomputed["distance_mm"] - synthetic.distance_mm) <= 5.0
    assert f"recomputed: {spec.side} breast, {recomputed['clock']}" in stdout
    assert record["crop"]["slice_index_k"] == int(round(synthetic.volume.ras_to_ijk(proposal)[2]))


def test_point_mode_round_trips_the_true_clock_position(case, capsys):
    spec, synthetic, path = case
    assert synthetic.mass_ras[0] < 0  # a negative first value must pass as a value, not as an option
    code, stdout, stderr = _run(["--ct", str(path), "--point", _point(synthetic.mass_ras)], capsys)
    assert code == 0, stderr
    assert f"side: {spec.side}" in stdout
    hours, minutes = map(int, re.search(r"clock: (\d+):(\d\d)", stdout).groups())
    assert abs(((hours % 12 + minutes / 60.0) - spec.clock_hour + 6.0) % 12.0 - 6.0) <= 0.25  # automatic nipple, ~1 mm off
    assert abs(float(re.search(r"distance: ([\d.]+) mm", stdout).group(1)) - synthetic.distance_mm) <= 3.0
    # With the true nipple given by hand the round trip is exact.
    code, stdout, stderr = _run(["--ct", str(path), "--point", _point(synthetic.mass_ras),
                                 "--nipple", _point(synthetic.nipples_ras[spec.side])], capsys)
    assert code == 0, stderr
    assert f"side: {spec.side}" in stdout and f"clock: {format_clock(spec.clock_hour)}" in stdout
    assert f"distance: {synthetic.distance_mm:.1f} mm from the {spec.side} nipple" in stdout


def test_the_command_and_locate_lesion_take_one_route(case, capsys, tmp_path):
    """What ``locate`` prints and writes is what ``locate_lesion`` (``predict_case``, ``cohort.prepare``) returns."""
    spec, synthetic, path = case
    volume = synthetic.volume
    position = ClockPosition(spec.side, spec.clock_hour, round(synthetic.distance_mm, 1))
    code, _, stderr = _run(["--ct", str(path), "--side", spec.side, "--clock", str(spec.clock_hour),
                            "--distance", f"{position.distance_mm}", "--out", str(tmp_path / "clock")], capsys)
    assert code == 0, stderr
    record = json.loads((tmp_path / "clock" / "localization.json").read_text())
    from_clock = locate_lesion(volume, position=position)
    assert record["proposal"]["point_ras_mm"] == pytest.approx(from_clock.point_ras, abs=0.01)
    assert record["proposal"]["recomputed"]["clock_hour"] == pytest.approx(from_clock.clock_hour, abs=1e-3)
    assert record["proposal"]["score"] == from_clock.score and record["proposal"]["message"] == from_clock.message
    code, stdout, stderr = _run(["--ct", str(path), "--point", _point(synthetic.mass_ras)], capsys)
    assert code == 0, stderr
    from_point = locate_lesion(volume, point_ras=np.round(synthetic.mass_ras, 3))
    assert f"side chosen by the {from_point.side_chosen_by}: {from_point.side}" in stdout
    assert f"clock: {format_clock(from_point.clock_hour)}" in stdout
    assert f"distance: {from_point.distance_mm:.1f} mm from the {from_point.side} nipple" in stdout


def test_a_nipple_given_by_hand_names_the_breast_and_replaces_the_automatic_one(case):
    spec, synthetic, _ = case
    nipple = synthetic.nipples_ras[spec.side]
    locator = LesionLocator(synthetic.volume, nipple_ras=nipple)
    assert locator.side == spec.side and locator.nipples[spec.side].message == f"{spec.side} nipple given by hand"
    location = locator.from_point(synthetic.mass_ras)
    assert location.side_chosen_by is None and location.nipple_ras == pytest.approx(nipple)
    assert location.clock_hour == pytest.approx(spec.clock_hour, abs=0.01)


def test_diameter_is_a_deprecated_name_of_lesion_diameter(case, capsys, tmp_path):
    spec, synthetic, path = case
    clock = ["--ct", str(path), "--side", spec.side, "--clock", format_clock(spec.clock_hour), "--distance", "20"]
    code, _, stderr = _run([*clock, "--diameter", "12", "--out", str(tmp_path / "old")], capsys)
    assert code == 0 and "--diameter is deprecated; use --lesion-diameter" in stderr
    code, _, stderr = _run([*clock, "--lesion-diameter", "12mm", "--out", str(tmp_path / "new")], capsys)
    assert code == 0 and "deprecated" not in stderr
    old, new = (json.loads((tmp_path / name / "localization.json").read_text()) for name in ("old", "new"))
    assert old == new and new["crop"]["lesion_diameter_mm"] == 12.0
    assert (tmp_path / "old" / "ct_crop.png").read_bytes() == (tmp_path / "new" / "ct_crop.png").read_bytes()
    with pytest.raises(SystemExit):
        main(["locate", "--help"])
    assert "deprecated name of --lesion-diameter" in capsys.readouterr().out


@pytest.mark.parametrize("extra, expected", [
    (["--side", "left", "--clock", "13 o'clock", "--distance", "30mm"], "clock position \"13 o'clock\" is not valid"),
    (["--side", "left", "--clock", "2", "--distance", "-5mm"], "cannot be negative"),
    (["--side", "left", "--clock", "2", "--distance=-5"], "cannot be negative"),
    (["--side", "middle", "--clock", "2", "--distance", "30"], "breast side 'middle' is not valid"),
    (["--point", "0,0,5000"], "lies outside the CT volume"),
    (["--point", "1,2"], "--point '1,2' is not valid"),
    (["--point", "0,0,0", "--lesion-diameter", "0"], "--lesion-diameter '0' must be a lesion diameter in mm"),
    (["--point", "0,0,0", "--lesion-diameter", "big"], "--lesion-diameter 'big' is not a number of mm"),
])
def test_bad_values_are_clear_errors(case, capsys, tmp_path, extra, expected):
    code, stdout, stderr = _run(["--ct", str(case[2]), "--out", str(tmp_path / "out"), *extra], capsys)
    assert code == 1 and stderr.startswith("error: ") and expected in stderr
    assert not (tmp_path / "out").exists()


def test_a_point_in_the_air_is_a_clear_error(case, capsys):
    _, synthetic, path = case
    corner = synthetic.volume.ijk_to_ras_points(np.array([1.0, 1.0, 1.0]))  # inside the volume, outside the body
    code, _, stderr = _run(["--ct", str(path), "--point", _point(corner)], capsys)
    assert code == 1 and "lies outside the patient's body (in air" in stderr


def test_a_png_or_a_missing_file_as_ct_is_a_clear_error(capsys, tmp_path):
    png = tmp_path / "slice.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    code, _, stderr = _run(["--ct", str(png), "--point", "0,0,0"], capsys)
    assert code == 1 and "not a CT volume; give a DICOM folder or a .nii" in stderr
    code, _, stderr = _run(["--ct", str(tmp_path / "missing.nii.gz"), "--side", "R", "--clock", "2", "--distance", "3cm",
                            "--out", str(tmp_path / "out")], capsys)
    assert code == 1 and f"CT not found: {tmp_path / 'missing.nii.gz'}" in stderr


@pytest.mark.slow
def test_acrin_013_clock_mode_writes_an_overlay(capsys, tmp_path):
    path = real_data("CT-ACRIN-FLT-Breast_013/ct.nii.gz")
    code, stdout, stderr = _run(["--ct", str(path), "--side", "right", "--clock", "12", "--distance", "20mm",
                                 "--out", str(tmp_path)], capsys)
    assert code == 0, stderr
    assert Image.open(tmp_path / "overlay.png").format == "PNG"
    assert "ACRIN" not in (tmp_path / "localization.json").read_text()
    assert "recomputed: right breast" in stdout


@pytest.mark.slow
def test_acrin_001_nipple_below_the_field_of_view_is_a_clear_error(tmp_path):
    path = real_data("CT-ACRIN-FLT-Breast_001/ct_thorax.nii.gz")
    done = subprocess.run([sys.executable, "-m", "BreastFusionLib.cli", "locate", "--ct", str(path), "--side", "right",
                           "--clock", "12", "--distance", "20mm", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: right nipple outside the field of view") and "--nipple x,y,z" in done.stderr
    assert not (tmp_path / "out").exists()
