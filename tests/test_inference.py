"""Prediction on raw synthetic cases through ``breastfusion predict`` with a tiny trained bundle.

The bundle fixture trains each model (US, CT, fusion) for one epoch on tiny crops with the bundle's
own transforms, writes validation/test predictions and calls ``write_model_report`` (threshold and
calibration temperature), i.e. the layout ``monai.bundle run training|evaluating`` produces. The
Lite0 bundle holds untrained CBAM-EfficientNet-Lite0 checkpoints with the same reports.
"""

from __future__ import annotations

import copy
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import TINY_SIZE as SIZE
import torch
from monai.visualize import GradCAM
from monai.visualize.class_activation_maps import default_normalizer
from PIL import Image
from pydicom.dataset import Dataset as DicomDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

from BreastFusionLib import precision
from BreastFusionLib.bundle.report import write_model_report
from BreastFusionLib.cli import main
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.inference import load_bundle, predict_case, write_outputs
from BreastFusionLib.inference.calibration import apply_temperature, fit_temperature
from BreastFusionLib.inference.heatmaps import BRANCHES, TARGET_LAYERS, HeatMaps, min_max, record_attention
from BreastFusionLib.inference.outputs import jet
from BreastFusionLib.localization.parsing import parse_clock
from BreastFusionLib.networks import build_classifier
from BreastFusionLib.synthetic.cohort import generate_cohort
from BreastFusionLib.synthetic.dicom import fake_identity

CONFIGS = Path(__file__).resolve().parents[1] / "monai_bundle" / "configs"
POINTING_GAME = Path(__file__).resolve().parents[1] / "training" / "pointing_game.py"
SCHEMA_MODEL_KEYS = {"probability", "threshold", "decision", "missing_modality", "ensemble"}
LITE0 = "cbam_efficientnet_lite0"
LITE0_SIZE = 64  # a 2x2 last stage, so that Grad-CAM maps are not constant


@pytest.fixture(scope="module")
def bundle(tiny_bundle) -> Path:
    return tiny_bundle


@pytest.fixture(scope="module")
def lite0_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """``tiny_bundle``'s layout and predictions with untrained Lite0 checkpoints, reported at LITE0_SIZE."""
    root = tmp_path_factory.mktemp("lite0") / "bundle"
    shutil.copytree(tiny_bundle, root, ignore=shutil.ignore_patterns("model.pt"))
    torch.manual_seed(0)
    for modality in ("us", "ct", "fusion"):
        torch.save(build_classifier(modality, backbone=LITE0).state_dict(), root / "models" / modality / "model.pt")
        write_model_report(str(root / "runs" / modality), modality, LITE0_SIZE, LITE0)
    return root


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    """One synthetic case: US as PNG and as DICOM with a patient name, CT as a DICOM series with one."""
    folder = tmp_path_factory.mktemp("cohort")
    row = next(csv.DictReader(open(generate_cohort(folder, cases=1, seed=3, dicom=True, workers=1))))
    identity = fake_identity(row["case_id"])
    pixels = np.asarray(Image.open(folder / row["us_image"]).convert("L"))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = UltrasoundImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = DicomDataset()
    ds.file_meta = meta
    for keyword, value in identity.items():
        setattr(ds, keyword, value)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = UltrasoundImageStorage, meta.MediaStorageSOPInstanceUID, "US"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(folder / "us.dcm", enforce_file_format=True)
    return {**row, "folder": folder, "us_dicom": folder / "us.dcm", "identity": identity, "us_shape": pixels.shape}


def _predict(case: dict, out: Path, *args: str) -> dict:
    assert main(["predict", "--out", str(out), *args]) == 0
    return json.loads((out / "result.json").read_text())


def _ct_slice_shape(case: dict) -> tuple[int, int]:
    first = pydicom.dcmread(next(iter(sorted((case["folder"] / case["ct_image"]).glob("*.dcm")))))
    return int(first.Rows), int(first.Columns)


def _check_schema(result: dict, out: Path, case: dict, models: set[str], have: set[str]) -> None:
    assert set(result) == {"models", "localization", "crops", "heatmaps", "overlays", "heatmap_info", "model", "timings_s",
                           "disclaimer"}
    assert set(result["models"]) == models
    for entry in result["models"].values():
        assert set(entry) == SCHEMA_MODEL_KEYS
        assert 0 <= entry["probability"] <= 1 and 0 <= entry["threshold"] <= 1
        assert entry["decision"] == ("malignant" if entry["probability"] >= entry["threshold"] else "benign")
    assert result["crops"] == {k: f"{k}_crop.png" for k in have}
    assert result["overlays"] == {k: f"{k}_overlay.png" for k in have}
    shapes = {"us": case["us_shape"], "ct": _ct_slice_shape(case)}
    for model, branches in result["heatmaps"].items():
        assert set(branches) == ({"us", "ct"} & have if model == "fusion" else {model})
        for key, maps in branches.items():
            for kind in ("attention", "gradcam"):
                assert maps[kind] == f"maps/{model}_{key}_{kind}.npy"
                array = np.load(out / maps[kind])
                assert array.dtype == np.float32 and array.shape == shapes[key]  # original image / axial slice
                assert array.min() >= 0 and array.max() <= 1
                assert result["heatmap_info"][model][key][kind]["flat"] == (not array.any())  # a flat map is said to be
            info = result["heatmap_info"][model][key]
            decision = result["models"][model]["decision"]
            assert info["gradcam"]["explains"] == decision and info["attention"]["explains"] is None  # the predicted class
            assert decision in info["gradcam"]["map"] and isinstance(info["gradcam"]["flat"], bool)
            assert info["gradcam"]["hit_rate"] is None  # no pointing game saved in this bundle
    for name, entry in result["model"]["checkpoints"].items():
        assert entry["file"] == f"models/{name}/model.pt" and len(entry["sha256"]) == 64
        assert entry["backbone"] in ("cbam_resnet50", LITE0)
    assert result["model"]["bundle_version"] == json.loads((CONFIGS / "metadata.json").read_text())["version"]
    assert result["disclaimer"] == "Research use only. Not for clinical diagnosis."
    html = (out / "report.html").read_text()
    assert "Research use only" in html and "data:image/png;base64," in html and 'src="http' not in html


def _assert_no_phi(out: Path, case: dict) -> None:
    identifiers = [case["identity"]["PatientName"], case["identity"]["PatientID"], case["identity"]["PatientBirthDate"],
                   case["identity"]["PatientName"].replace("^", " ")]
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for identifier in identifiers:
                assert identifier.encode() not in data, f"{identifier} found in {path.name}"
    assert str(case["folder"]).encode() not in (out / "result.json").read_bytes() + (out / "report.html").read_bytes()


def test_us_and_ct_dicom_with_clock_position_all_models(bundle, case, tmp_path, capsys):
    out = tmp_path / "out"
    ct = case["folder"] / case["ct_image"]
    result = _predict(case, out, "--bundle", str(bundle), "--models", "us,ct,fusion", "--us", str(case["us_dicom"]),
                      "--us-box", case["us_box"], "--ct", str(ct), "--side", case["ct_side"], "--clock",
                      case["ct_clock"], "--distance", f"{case['ct_distance_mm']}mm",
                      "--lesion-diameter", case["lesion_diameter_mm"])
    _check_schema(result, out, case, {"us", "ct", "fusion"}, {"us", "ct"})
    assert all(entry["missing_modality"] is None for entry in result["models"].values())
    location = result["localization"]
    assert set(location) == {"side", "clock", "distance_mm", "point_ras", "nipple_ras", "ct_slice_index"}
    assert location["side"] == case["ct_side"] and len(location["point_ras"]) == 3 and len(location["nipple_ras"]) == 3
    assert 0 <= location["ct_slice_index"] < len(list(ct.glob("*.dcm")))
    for key in ("crop_us", "crop_ct", "forward_us", "forward_ct", "forward_fusion", "heatmaps_fusion"):
        assert result["timings_s"][key] >= 0
    _assert_no_phi(out, case)
    printed = capsys.readouterr()
    assert case["identity"]["PatientName"] not in printed.out + printed.err


def test_point_localization_mask_and_tta(bundle, case, tmp_path):
    out = tmp_path / "out"
    result = _predict(case, out, "--bundle", str(bundle), "--us", str(case["folder"] / case["us_image"]),
                      "--us-mask", str(case["folder"] / case["us_mask"]), "--ct", str(case["folder"] / case["ct_image"]),
                      "--point", case["ct_point_ras"], "--tta")
    _check_schema(result, out, case, {"us", "ct", "fusion"}, {"us", "ct"})
    assert result["localization"]["point_ras"] == pytest.approx([float(v) for v in case["ct_point_ras"].split(",")], abs=0.01)
    _assert_no_phi(out, case)


def test_predict_case_locates_the_ct_lesion_as_breastfusion_locate_does(bundle, case, tmp_path, capsys):
    """One lesion-location route: the same clock position gives the same mass in ``predict_case`` and ``locate``."""
    ct = case["folder"] / case["ct_image"]
    clock = (case["ct_side"], parse_clock(case["ct_clock"]), float(case["ct_distance_mm"]))
    assert main(["locate", "--ct", str(ct), "--side", clock[0], "--clock", case["ct_clock"], "--distance",
                 case["ct_distance_mm"], "--lesion-diameter", case["lesion_diameter_mm"], "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    record = json.loads((tmp_path / "localization.json").read_text())
    result = predict_case(load_bundle(bundle, ["ct"]), ct=ct, clock=clock, models=["ct"], heatmaps=False,
                          lesion_diameter_mm=float(case["lesion_diameter_mm"]))
    location = result.location
    assert record["proposal"]["point_ras_mm"] == pytest.approx(location.point_ras, abs=0.01)
    assert record["proposal"]["recomputed"] == {"side": location.side, "clock_hour": round(location.clock_hour, 3),
                                                "clock": record["proposal"]["recomputed"]["clock"],
                                                "distance_mm": round(location.distance_mm, 1)}
    box = result.crops["ct"].box
    assert record["crop"]["slice_index_k"] == result.crops["ct"].slice_index
    assert record["crop"]["box_rows_cols"] == {"center_row": box.center_row, "center_col": box.center_col,
                                               "side_rows": box.side_rows, "side_cols": box.side_cols}


def test_us_only_fusion_reports_missing_ct(bundle, case, tmp_path):
    out = tmp_path / "out"
    result = _predict(case, out, "--bundle", str(bundle), "--us", str(case["us_dicom"]), "--us-box", case["us_box"])
    _check_schema(result, out, case, {"us", "fusion"}, {"us"})
    assert result["models"]["fusion"]["missing_modality"] == "ct" and result["models"]["us"]["missing_modality"] is None
    assert result["localization"] is None and set(result["heatmaps"]["fusion"]) == {"us"}


def test_calibration_is_monotone_and_stored_with_the_threshold(bundle):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    overconfident = 1 / (1 + np.exp(-(labels * 2 - 1) * 6 * rng.uniform(0, 1, 400) + rng.normal(0, 3, 400)))
    temperature = fit_temperature(labels, overconfident)
    assert temperature > 1  # over-confident scores are softened
    raw = np.linspace(0.001, 0.999, 200)
    calibrated = apply_temperature(raw, temperature)
    assert np.all(np.diff(calibrated) > 0)  # the order (ROC, AUC) and every thresholded decision are kept
    for modality in ("us", "ct", "fusion"):
        metrics = json.loads((bundle / "runs" / modality / "metrics.json").read_text())
        assert metrics["temperature"] > 0 and 0 <= metrics["threshold"] <= 1


def test_gradcam_normaliser_keeps_high_values_high():
    cam = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    assert min_max(cam).flatten().tolist() == [0.0, 0.25, 0.5, 1.0]
    assert torch.as_tensor(default_normalizer(cam)).flatten().argmax() == 0  # MONAI's default flips the map


@pytest.mark.parametrize("extra, message", [
    (["--us-box", "10,10,5000,60"], "lies outside the"),
    (["--ct", "CT", "--point", "500,0,0"], "lies outside the CT volume"),
    (["--ct", "CT", "--point", "0,130,0"], "outside the patient's body"),
    (["--ct", "CT", "--side", "left", "--clock", "13", "--distance", "30"], "clock position '13' is not valid"),
])
def test_bad_inputs_give_clear_messages(bundle, case, tmp_path, capsys, extra, message):
    extra = [str(case["folder"] / case["ct_image"]) if v == "CT" else v for v in extra]
    box = [] if "--us-box" in extra else ["--us-box", case["us_box"]]
    code = main(["predict", "--bundle", str(bundle), "--us", str(case["folder"] / case["us_image"]), *box, *extra,
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err


def test_wrong_bundle_and_foreign_checkpoint(bundle, case, tmp_path, capsys):
    us = ["--us", str(case["folder"] / case["us_image"]), "--us-box", case["us_box"], "--out", str(tmp_path / "o")]
    assert main(["predict", "--bundle", str(tmp_path), *us]) == 1
    assert "no models/ folder" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    shutil.copytree(bundle, foreign, ignore=shutil.ignore_patterns("model.pt"))
    torch.save(build_classifier("ct").state_dict(), foreign / "models" / "fusion" / "model.pt")  # a single-branch model
    assert main(["predict", "--bundle", str(foreign), "--models", "fusion", *us]) == 1
    err = capsys.readouterr().err
    assert "models/fusion/model.pt" in err and "not a checkpoint of the fusion" in err and "Traceback" not in err
    shutil.rmtree(foreign / "models" / "us")
    assert main(["predict", "--bundle", str(foreign), "--models", "us", *us]) == 1
    assert "models/us/model.pt (or model.ts, or ensemble.json) is missing" in capsys.readouterr().err


def test_input_size_comes_from_the_evaluated_model(bundle, tmp_path):
    copied = tmp_path / "bundle"
    shutil.copytree(bundle, copied)
    metrics_path = copied / "runs" / "us" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics_path.write_text(json.dumps({**metrics, "spatial_size": 48}))
    loaded = load_bundle(copied, ["us", "ct"])
    assert loaded.models["us"].spatial_size == 48  # what evaluation recorded wins over the configs
    assert loaded.models["ct"].spatial_size == SIZE
    assert load_bundle(copied, ["us"], spatial_size=40).models["us"].spatial_size == 40


def test_lite0_bundle_loads_and_predicts(lite0_bundle, case, tmp_path):
    loaded = load_bundle(lite0_bundle)
    assert {m.backbone for m in loaded.models.values()} == {LITE0}
    assert {m.spatial_size for m in loaded.models.values()} == {LITE0_SIZE}  # recorded next to the backbone
    box = tuple(float(v) for v in case["us_box"].split(","))
    point = np.array([float(v) for v in case["ct_point_ras"].split(",")])
    result = predict_case(loaded, us_image=case["folder"] / case["us_image"], us_box=box,
                          ct=case["folder"] / case["ct_image"], ct_point=point)
    out = tmp_path / "out"
    write_outputs(result, loaded, out)
    record = json.loads((out / "result.json").read_text())
    _check_schema(record, out, case, {"us", "ct", "fusion"}, {"us", "ct"})
    assert {c["backbone"] for c in record["model"]["checkpoints"].values()} == {LITE0}
    assert "CBAM-EfficientNet-Lite0" in (out / "report.html").read_text()
    assert any(maps["gradcam"].max() == 1 for branches in result.crop_heatmaps.values() for maps in branches.values())


def test_checkpoint_of_another_backbone_than_metrics_json_or_of_neither_is_refused(bundle, tmp_path):
    copy_root = tmp_path / "bundle"
    shutil.copytree(bundle, copy_root)
    metrics_path = copy_root / "runs" / "us" / "metrics.json"
    metrics_path.write_text(json.dumps({**json.loads(metrics_path.read_text()), "backbone": LITE0}))
    checkpoint = copy_root / "models" / "us" / "model.pt"
    with pytest.raises(UserInputError, match="holds CBAM-ResNet-50 weights") as error:
        load_bundle(copy_root, ["us"])
    assert str(checkpoint) in str(error.value) and "runs/us/metrics.json" in str(error.value)
    torch.save(torch.nn.Linear(2, 2).state_dict(), checkpoint)
    with pytest.raises(UserInputError, match="neither") as error:
        load_bundle(copy_root, ["us"])
    assert str(checkpoint) in str(error.value)


@pytest.mark.parametrize("backbone", ["cbam_resnet50", LITE0])
def test_one_pass_fusion_gradcam_equals_monai_per_branch(backbone):
    torch.manual_seed(0)  # an initialisation whose maps are not flat in either branch
    network = build_classifier("fusion", backbone=backbone).eval().requires_grad_(False)
    image = torch.rand(1, 2, 96, 96)
    heatmaps = HeatMaps(network, "fusion", backbone)
    forwards = []
    network.head.register_forward_hook(lambda *_: forwards.append(1))
    maps = heatmaps(image, ["us", "ct"])
    assert len(forwards) == 1  # both branches, and their attention, from one forward (and its one backward)
    layers = [f"{BRANCHES['fusion'][b]}.{TARGET_LAYERS[backbone]}" for b in ("us", "ct")]
    reference = GradCAM(nn_module=copy.deepcopy(network), target_layers=layers, postprocessing=min_max)
    with record_attention(network, "fusion") as attention:
        network(image)
    for index, branch in enumerate(("us", "ct")):
        with torch.enable_grad():
            expected = reference(image.clone().requires_grad_(True), class_idx=1, layer_idx=index)
        gradcam = maps[branch]["gradcam"]
        assert gradcam.shape == (1, 1, 96, 96) and gradcam.max() == 1  # not a degenerate (flat) map
        assert torch.allclose(gradcam, expected, atol=1e-5)
        gate_output = attention[branch][0]  # the norm over channels of the last CBAM block's output
        assert gate_output.shape == (1, 1, 3, 3) and gate_output.std() > 0
        torch.testing.assert_close(maps[branch]["attention"], min_max(gate_output))


def test_lite0_heat_maps_have_the_input_shape_and_unit_range():
    torch.manual_seed(2)
    network = build_classifier("us", backbone=LITE0).eval().requires_grad_(False)
    image = torch.rand(1, 1, LITE0_SIZE, LITE0_SIZE)
    stage = {}
    network.backbone.head_activation.register_forward_hook(lambda _m, _i, output: stage.update(target=output))
    network.backbone.cbam.register_forward_pre_hook(lambda _m, inputs: stage.update(cbam=inputs[0]))
    network(image)
    assert stage["target"] is stage["cbam"]  # the Grad-CAM target is CBAM's input
    maps = HeatMaps(network, "us", LITE0)(image, ["us"], class_index=0)["us"]
    assert maps["attention"].shape == (1, 1, LITE0_SIZE // 32, LITE0_SIZE // 32)
    assert maps["gradcam"].shape == (1, 1, LITE0_SIZE, LITE0_SIZE)
    for heat in maps.values():
        assert heat.min() >= 0 and heat.max() <= 1
    with pytest.raises(UserInputError, match="'layer9' is not a module of the cbam_efficientnet_lite0 branches"):
        HeatMaps(network, "us", LITE0, layer="layer9")


def test_pointing_game_script_reports_hit_rates_centre_baseline_and_displaced_crops(lite0_bundle, tmp_path):
    """training/pointing_game.py end to end on 3 synthetic cases: centred and displaced crops, every map beside the centre."""
    report_path = tmp_path / "pointing.json"
    bundle = tmp_path / "bundle"
    shutil.copytree(lite0_bundle, bundle)
    subprocess.run([sys.executable, str(POINTING_GAME), "--bundle", str(bundle), "--cases", "3", "--json", str(report_path),
                    "--save-in-bundle"], check=True, capture_output=True, text=True)
    report = json.loads(report_path.read_text())
    assert report["cases"] == 3 and report["backbone"] == LITE0 and report["spatial_size"] == LITE0_SIZE
    for crops in ("centred", "displaced"):
        for branch in ("us", "ct"):
            summary = report["crops"][crops][branch]
            assert set(summary["maps"]) == {"centre", "attention", "gradcam", "gradcam_true_class"}
            for name, row in summary["maps"].items():
                low, high = row["ci95"]
                assert row["hit_rate"] in {0.0, 0.333, 0.667, 1.0} and low <= row["hit_rate"] <= high
                assert row["within_tolerance"] >= row["hit_rate"]  # a tolerance only adds hits
                assert (row["mcnemar_p_vs_centre"] is None) == (name == "centre")
            assert 0 < summary["chance"] < 0.5  # the lesion is a small part of each crop
    assert report["crops"]["centred"]["us"]["maps"]["centre"]["hit_rate"] == 1.0  # centred crops: the centre is on the lesion
    saved = json.loads((bundle / "runs" / "fusion" / "pointing_game.json").read_text())
    assert set(saved["maps"]) == {"us", "ct"} and set(saved["maps"]["us"]) == {"attention", "gradcam"}
    assert saved["maps"]["ct"]["gradcam"]["displaced"]["cases"] == 3


def test_attention_is_the_magnitude_of_the_last_cbam_blocks_output():
    torch.manual_seed(0)
    network = build_classifier("us", backbone="cbam_resnet50").eval()
    image = torch.rand(1, 1, 96, 96)
    block = {}
    network.backbone.attention_module().register_forward_hook(lambda _m, _i, output: block.update(out=output))
    with record_attention(network, "us") as attention:
        network(image)
    torch.testing.assert_close(attention["us"][0], block["out"].norm(dim=1, keepdim=True))  # features after both gates


def test_overlay_colour_map_is_matplotlibs_jet_without_matplotlib():
    from matplotlib import colormaps  # the reference only: serving must not import matplotlib

    values = np.linspace(0.0, 1.0, 1001)
    # matplotlib looks values up in a 256-entry table; the exact curve differs by at most a few grey levels
    np.testing.assert_allclose(jet(values), colormaps["jet"](values)[:, :3], atol=5 / 255)
    assert jet(np.array([-1.0, 2.0])).tolist() == [[0.0, 0.0, 0.5], [0.5, 0.0, 0.0]]  # clipped to the ends


@pytest.mark.parametrize("extra, message", [([], "bundle folder not found"), (["--tolerance", "-3"], "--tolerance must be 0 or more")])
def test_pointing_game_bad_arguments_are_named(tmp_path, extra, message):
    result = subprocess.run([sys.executable, str(POINTING_GAME), "--bundle", str(tmp_path / "missing"), *extra],
                            capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_pointing_game_unknown_gradcam_layer_is_named(lite0_bundle):
    result = subprocess.run([sys.executable, str(POINTING_GAME), "--bundle", str(lite0_bundle), "--gradcam-layer", "layer9"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "'layer9' is not a module" in result.stderr and "Traceback" not in result.stderr


def test_heat_maps_only_where_asked_and_same_probabilities(bundle, case):
    loaded = load_bundle(bundle)
    inputs = dict(us_image=case["folder"] / case["us_image"], us_box=tuple(float(v) for v in case["us_box"].split(",")),
                  ct=case["folder"] / case["ct_image"], ct_point=np.array([float(v) for v in case["ct_point_ras"].split(",")]))
    every = predict_case(loaded, **inputs, precision="fp32")
    some = predict_case(loaded, **inputs, heatmaps=["gradcam"], heatmap_models=["fusion"], precision="fp32")
    none = predict_case(loaded, **inputs, heatmaps=False, precision="fp32")
    assert {m: set(b) for m, b in every.heatmaps.items()} == {"us": {"us"}, "ct": {"ct"}, "fusion": {"us", "ct"}}
    assert {m: {b: set(k) for b, k in branches.items()} for m, branches in some.heatmaps.items()} == \
        {"fusion": {"us": {"gradcam"}, "ct": {"gradcam"}}}
    assert none.heatmaps == {} and "heatmaps_us" not in none.timings_s
    for name in ("us", "ct", "fusion"):  # the Grad-CAM forward gives the same logits as the plain one
        assert some.models[name].probability == pytest.approx(every.models[name].probability, abs=1e-6)
        assert none.models[name].probability == pytest.approx(every.models[name].probability, abs=1e-6)
    np.testing.assert_array_equal(some.heatmaps["fusion"]["ct"]["gradcam"], every.heatmaps["fusion"]["ct"]["gradcam"])
    with pytest.raises(UserInputError, match="heat map kinds must be among attention, gradcam, got saliency"):
        predict_case(loaded, **inputs, heatmaps=["saliency"])
    with pytest.raises(UserInputError, match="heat maps were asked for ct, which will not run"):
        predict_case(loaded, us_image=inputs["us_image"], us_box=inputs["us_box"], heatmap_models=["ct"])


def test_bf16_answers_near_the_threshold_are_recomputed_in_fp32(bundle, case, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)  # the bf16 path on any CPU
    monkeypatch.setattr(precision, "BF16_MIN_SIDE", 16)  # and at the tiny bundle's input size
    loaded = load_bundle(bundle, ["us"])
    inputs = dict(us_image=case["folder"] / case["us_image"], us_box=tuple(float(v) for v in case["us_box"].split(",")),
                  heatmaps=False)
    fp32 = predict_case(loaded, **inputs, precision="fp32").models["us"]
    model = loaded.models["us"]
    model.threshold = 0.0  # far from every probability: the bf16 answer stands
    far = predict_case(loaded, **inputs).models["us"]
    assert far.raw_probability != fp32.raw_probability and abs(far.probability - fp32.probability) < 0.01
    model.threshold = fp32.raw_probability + 1e-4  # within FP32_NEAR_THRESHOLD: decided in fp32
    near = predict_case(loaded, **inputs).models["us"]
    assert near.raw_probability == fp32.raw_probability and near.decision == "benign"
