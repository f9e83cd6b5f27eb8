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
from BreastFusionLib.localization.parsing import format_clock
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
                                 "--distance", f"{synthetic.distance_mm:.1f}mm", "--out", str(out), "--diameter", "15"], capsys)
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


@pytest.mark.parametrize("extra, expected", [
    (["--side", "left", "--clock", "13 o'clock", "--distance", "30mm"], "clock position \"13 o'clock\" is not valid"),
    (["--side", "left", "--clock", "2", "--distance", "-5mm"], "cannot be negative"),
    (["--side", "left", "--clock", "2", "--distance=-5"], "cannot be negative"),
    (["--side", "middle", "--clock", "2", "--distance", "30"], "breast side 'middle' is not valid"),
    (["--point", "0,0,5000"], "lies outside the CT volume"),
    (["--point", "1,2"], "--point '1,2' is not valid"),
])
def test_bad_values_are_clear_errors(case, capsys, tmp_path, extra, expected):
    code, stdout, stderr = _run(["--ct", str(case[2]), "--out", str(tmp_path / "out"), *extra], capsys)
    assert code == 1 and stderr.startswith("error: ") and expected in stderr
    assert not (tmp_path / "out").exists()


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
