"""Time DICOM series loading + nipple detection on a synthetic 512x512x300 chest CT.

Usage: python training/bench_nipples.py [--slices 300]
Writes the phantom from tests/test_localization.py as an int16 DICOM series to a temporary folder,
then times reading it back (SimpleITK ImageSeriesReader + from_sitk) and ``find_nipples``.
Target: under 3 s in total on a 2-core machine. Mass proposal (a 10 mm ball at 10 o'clock, 25 mm) is timed too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_localization import chest_phantom, phantom_nipple  # noqa: E402

from BreastFusionLib.ct.volume import from_sitk, to_sitk  # noqa: E402
from BreastFusionLib.localization.clock import ClockPosition, point_from_clock  # noqa: E402
from BreastFusionLib.localization.mass import propose_mass  # noqa: E402
from BreastFusionLib.localization.nipples import find_nipples  # noqa: E402


def write_dicom_series(image: sitk.Image, folder: Path) -> None:
    """Write an int16 LPS image as one CT DICOM file per axial slice, with the usual geometry tags."""
    image = sitk.Cast(image, sitk.sitkInt16)
    uid_root = "1.2.826.0.1.3680043.8.498."
    series_uid = f"{uid_root}{int(time.time() * 1e6)}"
    direction = image.GetDirection()
    shared = {
        "0008|0060": "CT",
        "0008|0008": "DERIVED\\SECONDARY\\AXIAL",
        "0008|103e": "synthetic supine chest phantom",
        "0010|0010": "PHANTOM",
        "0010|0020": "PHANTOM-001",
        "0018|5100": "HFS",
        "0020|000d": f"{series_uid}.1",
        "0020|000e": series_uid,
        "0020|0037": "\\".join(f"{d:.6f}" for d in (*direction[0:7:3], *direction[1:8:3])),
        "0018|0050": f"{image.GetSpacing()[2]:.4f}",
        "0028|1052": "0",
        "0028|1053": "1",
    }
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for index in range(image.GetDepth()):
        slice_image = image[:, :, index]
        for tag, value in shared.items():
            slice_image.SetMetaData(tag, value)
        slice_image.SetMetaData("0008|0018", f"{series_uid}.{index + 2}")
        slice_image.SetMetaData("0020|0013", str(index + 1))
        slice_image.SetMetaData("0020|0032", "\\".join(f"{p:.4f}" for p in image.TransformIndexToPhysicalPoint((0, 0, index))))
        writer.SetFileName(str(folder / f"slice{index:04d}.dcm"))
        writer.Execute(slice_image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args()
    position = ClockPosition("right", 10.0, 25.0)
    mass = point_from_clock(phantom_nipple("right"), position, depth_y=phantom_nipple("right")[1] - 22.0)
    shape, spacing = (512, 512, args.slices), (0.7, 0.7, 1.0)
    phantom, nipples = chest_phantom(shape_ijk=shape, spacing=spacing, z_start=-args.slices / 2, masses=((mass, 5.0),))
    with tempfile.TemporaryDirectory() as folder:
        write_dicom_series(to_sitk(phantom), Path(folder))
        start = time.perf_counter()
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder))
        volume = from_sitk(reader.Execute())
        read_s = time.perf_counter() - start
    start = time.perf_counter()
    found = find_nipples(volume)
    nipples_s = time.perf_counter() - start
    for side, result in found.items():
        error = np.linalg.norm(result.point_ras - nipples[side]) if result.found else float("nan")
        print(f"{side:>5} nipple: found={result.found} error={error:.2f} mm confidence={result.confidence:.2f}")
    start = time.perf_counter()
    proposal = propose_mass(volume, found["right"].point_ras, position)
    mass_s = time.perf_counter() - start
    print(f"volume {volume.hu.shape[::-1]} (i, j, k), spacing {np.round(volume.spacing, 2).tolist()} mm")
    print(f"read DICOM series + from_sitk: {read_s:.2f} s")
    print(f"find_nipples:                  {nipples_s:.2f} s")
    print(f"total:                         {read_s + nipples_s:.2f} s (target < 3 s)")
    error = np.linalg.norm(proposal.point_ras - mass)
    print(f"propose_mass (information):    {mass_s:.2f} s, score {proposal.score:.2f}, {error:.1f} mm from the 10 mm phantom mass")


if __name__ == "__main__":
    main()
