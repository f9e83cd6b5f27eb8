"""Background inference for the BreastFusion Slicer module: a plain script run with ``PythonSlicer``.

The module's GUI process writes the images it holds as arrays into an input folder:

- ``inputs.json``: what to run (schema below), written by ``BreastFusionLogic.writeInferenceInputs``;
- ``us.npy``: the US image, (rows, cols) or (rows, cols, 3|4), as ``slicer.util.arrayFromVolume`` gives it
  (row 0 at the top of the image);
- ``ct.npy``: the CT voxels indexed [k, j, i] plus ``ct.ijk_to_ras`` in ``inputs.json`` (the volume
  node's IJKToRAS matrix).

This script turns them into the files the ``breastfusion predict`` command line reads (``us.png``,
``ct.nii.gz`` in BreastFusionLib's canonical orientation), records the canonical CT geometry in
``ct_geometry.json`` (heat maps and ``ct_slice_index`` refer to it), then calls
``BreastFusionLib.cli.main(["predict", ...])`` in this process. So the module only depends on the
command-line contract, never on BreastFusionLib's Python API for inference.

Progress goes to stdout as ``BREASTFUSION_PROGRESS <percent> <message>`` lines (parsed by
``parse_progress_line``); everything else printed is log text. Exit code 0 on success.

``inputs.json``::

    {"version": 1,
     "us": {"array": "us.npy", "box_xyxy": [x0, y0, x1, y1] or null} or null,
     "ct": {"array": "ct.npy", "ijk_to_ras": 4x4} or null,
     "location": {"point_ras": [x, y, z]} or {"side": "left", "clock": "2:00", "distance_mm": 30.0} or null,
     "lesion_diameter_mm": float or null}

Research use only; not a medical device. No patient identifier is written here: only pixel arrays
and geometry reach the input folder.
"""

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

PROGRESS_PREFIX = "BREASTFUSION_PROGRESS"
INPUTS_FILE = "inputs.json"
CT_GEOMETRY_FILE = "ct_geometry.json"
PREDICT_ARGV_FILE = "predict_argv.json"
US_PNG = "us.png"
CT_NIFTI = "ct.nii.gz"
MODELS = ("us", "ct", "fusion")
_PROGRESS_LINE = re.compile(r"^" + PROGRESS_PREFIX + r" (\d{1,3}) ?(.*)$")


def progress(percent: int, message: str) -> None:
    """Print one progress line for the module (flushed at once: the module reads stdout line by line)."""
    print(f"{PROGRESS_PREFIX} {int(percent)} {message}", flush=True)


def parse_progress_line(line: str) -> Optional[Tuple[int, str]]:
    """(percent, message) of a progress line printed by ``progress``; None for any other line."""
    match = _PROGRESS_LINE.match(line.strip())
    if match is None:
        return None
    return min(int(match.group(1)), 100), match.group(2)


def write_us_png(array: np.ndarray, path: Path) -> None:
    """Write a US frame (rows, cols) or (rows, cols, 3|4) as PNG without losing bit depth.

    8-bit data stays 8-bit; wider integers become 16-bit PNG (shifted when signed); float data
    is scaled to 16 bits over its own range. Colour stays colour so overlay removal can see it.
    """
    from PIL import Image

    pixels = np.asarray(array)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4))):
        raise ValueError(f"a US frame must be (rows, cols) or (rows, cols, 3|4), got shape {pixels.shape}")
    if pixels.dtype == np.uint8:
        Image.fromarray(np.ascontiguousarray(pixels)).save(path)
        return
    values = pixels.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if np.issubdtype(pixels.dtype, np.integer) and low >= 0 and high <= 255:
        Image.fromarray(np.ascontiguousarray(pixels.astype(np.uint8))).save(path)
        return
    if np.issubdtype(pixels.dtype, np.integer):
        scaled = values - min(low, 0.0)
    else:
        scaled = (values - low) / (high - low) * 65535.0 if high > low else np.zeros_like(values)
    wide = np.clip(np.round(scaled), 0, 65535).astype(np.uint16)
    if wide.ndim == 3:  # PIL writes no 16-bit colour PNG: keep colour at 8 bits
        eight = np.round(wide / max(float(wide.max()), 1.0) * 255.0).astype(np.uint8)
        Image.fromarray(np.ascontiguousarray(eight[..., :3])).save(path)
        return
    Image.fromarray(np.ascontiguousarray(wide)).save(path)


def write_ct_nifti(hu: np.ndarray, ijk_to_ras: np.ndarray, path: Path) -> Dict:
    """Write the CT in BreastFusionLib's canonical orientation; return that volume's geometry.

    ``hu`` is indexed [k, j, i] with the volume node's IJKToRAS matrix. The returned geometry
    (``ijk_to_ras`` and ``shape_kji`` of the canonical volume, the one ``load_ct`` gives the
    predict command) is what ``ct_slice_index`` and the CT heat maps of ``result.json`` refer to.
    """
    import SimpleITK as sitk

    from BreastFusionLib.ct.volume import CTVolume, from_sitk, to_sitk

    canonical = from_sitk(to_sitk(CTVolume(hu=np.asarray(hu), ijk_to_ras=np.asarray(ijk_to_ras, dtype=float))))
    sitk.WriteImage(to_sitk(canonical), str(path), useCompression=True)
    return {
        "coordinates": "RAS mm; the CT as BreastFusionLib loads it (ct_slice_index and CT heat maps refer to it)",
        "ijk_to_ras": canonical.ijk_to_ras.tolist(),
        "shape_kji": [int(n) for n in canonical.hu.shape],
    }


def _numbers(values) -> str:
    """'x,y,z' with at most 3 decimals, as the command line takes them."""
    return ",".join(f"{round(float(v), 3):g}" for v in values)


def prepare_inputs(input_dir: Path, out_dir: Path) -> Dict:
    """Convert the module's arrays into predict's input files; return what predict needs to be told."""
    spec = json.loads((input_dir / INPUTS_FILE).read_text())
    if spec.get("version") != 1:
        raise ValueError(f"{input_dir / INPUTS_FILE}: unsupported version {spec.get('version')!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    prepared: Dict = {"us": None, "us_box": None, "ct": None, "location": spec.get("location"),
                      "lesion_diameter_mm": spec.get("lesion_diameter_mm")}
    if spec.get("us"):
        progress(5, "writing the US image")
        us_png = input_dir / US_PNG
        write_us_png(np.load(input_dir / spec["us"]["array"]), us_png)
        prepared["us"] = us_png
        prepared["us_box"] = spec["us"].get("box_xyxy")
    if spec.get("ct"):
        progress(10, "writing the CT volume")
        ct_path = input_dir / CT_NIFTI
        geometry = write_ct_nifti(np.load(input_dir / spec["ct"]["array"]), np.array(spec["ct"]["ijk_to_ras"]), ct_path)
        (out_dir / CT_GEOMETRY_FILE).write_text(json.dumps(geometry, indent=2))
        prepared["ct"] = ct_path
    if prepared["us"] is None and prepared["ct"] is None:
        raise ValueError("nothing to classify: inputs.json names neither a US image nor a CT")
    return prepared


def build_predict_argv(prepared: Dict, bundle: Path, models: List[str], out_dir: Path) -> List[str]:
    """The ``breastfusion predict`` arguments (see the command-line contract in docs/SLICER.md).

    A CT point (the mass markup the user confirmed) wins over side/clock/distance, so predict crops
    exactly where the user looked, whatever nipple it would find by itself.
    """
    argv = ["predict", "--bundle", str(bundle), "--models", ",".join(models), "--out", str(out_dir)]
    if prepared["us"] is not None:
        argv += ["--us", str(prepared["us"])]
        if prepared["us_box"]:
            argv.append(f"--us-box={_numbers(prepared['us_box'])}")
    if prepared["ct"] is not None:
        argv += ["--ct", str(prepared["ct"])]
        location = prepared["location"] or {}
        if location.get("point_ras") is not None:
            argv.append(f"--point={_numbers(location['point_ras'])}")  # '=' form: values may start with '-'
        elif location.get("side"):
            argv += ["--side", str(location["side"]), "--clock", str(location["clock"]),
                     "--distance", f"{float(location['distance_mm']):g}mm"]
    if prepared["lesion_diameter_mm"]:
        argv += ["--lesion-diameter", f"{float(prepared['lesion_diameter_mm']):g}"]
    return argv


def select_device(cpu_only: bool) -> str:
    """'cpu' or 'cuda'; hides the GPUs from torch when the CPU is asked for or CUDA is unusable."""
    if cpu_only:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        return "cpu"
    try:
        import torch

        if torch.backends.cuda.is_built() and torch.cuda.is_available():
            return "cuda"
    except Exception as error:  # a CUDA build of torch without a usable driver can raise here
        print(f"CUDA check failed ({type(error).__name__}: {error}); using the CPU")
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    return "cpu"


def run_predict(argv: List[str]) -> int:
    """Call the ``breastfusion`` command line in this process."""
    from BreastFusionLib.cli import main as cli_main

    return int(cli_main(argv) or 0)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="BreastFusion background inference (run by the Slicer module).")
    parser.add_argument("--input", required=True, type=Path, help="folder with inputs.json, us.npy, ct.npy")
    parser.add_argument("--out", required=True, type=Path, help="output folder (result.json, report.html, maps/)")
    parser.add_argument("--bundle", type=Path, help="trained model folder (the MONAI bundle)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma list among us, ct, fusion")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when CUDA is available")
    parser.add_argument("--python-path", action="append", default=[], help="folder to put on sys.path (holds BreastFusionLib)")
    parser.add_argument("--dry-run", action="store_true", help="prepare the inputs and stop before predict")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown or not models:
        parser.error(f"--models must be a comma list among {', '.join(MODELS)}; got {args.models!r}")
    args.model_list = models
    if not args.dry_run and args.bundle is None:
        parser.error("--bundle is required unless --dry-run")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    for folder in args.python_path:
        if folder not in sys.path:
            sys.path.insert(0, folder)
    started = time.perf_counter()
    progress(1, "starting")
    device = select_device(args.cpu)
    progress(3, f"device: {device}")
    try:
        prepared = prepare_inputs(args.input, args.out)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: cannot prepare the inputs: {error}", file=sys.stderr)
        return 2
    predict_argv = build_predict_argv(prepared, args.bundle or Path("."), args.model_list, args.out)
    (args.out / PREDICT_ARGV_FILE).write_text(json.dumps(predict_argv, indent=2))
    if args.dry_run:
        progress(100, f"inputs ready (dry run, {time.perf_counter() - started:.1f} s)")
        return 0
    progress(20, f"running models: {', '.join(args.model_list)}")
    code = run_predict(predict_argv)
    if code != 0:
        print(f"error: breastfusion predict exited with code {code}", file=sys.stderr)
        return code
    if not (args.out / "result.json").is_file():
        print(f"error: breastfusion predict wrote no result.json in {args.out}", file=sys.stderr)
        return 3
    progress(100, f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
