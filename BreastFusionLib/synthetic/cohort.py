"""Writing the synthetic paired cohort: per case a US image + mask and a chest CT, plus a manifest.

Layout under ``out``: ``us/<case>.png`` and ``us/<case>_mask.png``; ``ct/<case>.nii.gz`` (or a
DICOM series folder ``ct/<case>/`` with ``dicom=True``); ``manifest.csv`` with the lesion as a
US box and mask, as a CT point (RAS mm) and as side + clock + distance from the nipple, the
simulated readers' scores, and the ground truth used by tests (``truth_*`` columns).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image

from BreastFusionLib.cohort.manifest import write_manifest
from BreastFusionLib.crop import lesion_box_from_mask
from BreastFusionLib.ct.io import load_ct
from BreastFusionLib.ct.volume import to_sitk
from BreastFusionLib.localization.parsing import format_clock
from BreastFusionLib.synthetic.chest_ct import render_ct
from BreastFusionLib.synthetic.dicom import write_ct_series
from BreastFusionLib.synthetic.latent import LesionSpec, sample_lesions
from BreastFusionLib.synthetic.ultrasound import render_us
from BreastFusionLib.us.io import load_lesion_mask, load_us_image


def _point_text(point: np.ndarray) -> str:
    return ",".join(f"{v:.2f}" for v in point)


def write_case(spec: LesionSpec, out: Path, dicom: bool = False) -> dict:
    """Render and write one case; return its manifest row (paths relative to ``out``)."""
    image, mask, _ = render_us(spec, np.random.default_rng(spec.seed))
    (out / "us").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out / "us" / f"{spec.case_id}.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(out / "us" / f"{spec.case_id}_mask.png")
    row0, col0, row1, col1 = lesion_box_from_mask(mask)
    ct = render_ct(spec, np.random.default_rng(spec.seed + 1))
    if dicom:
        ct_path = f"ct/{spec.case_id}"
        write_ct_series(ct.volume, out / ct_path, spec.case_id)
    else:
        ct_path = f"ct/{spec.case_id}.nii.gz"
        (out / "ct").mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(to_sitk(ct.volume), str(out / ct_path), useCompression=True, compressionLevel=1)
    return {
        "case_id": spec.case_id, "patient_id": f"pat{spec.case_id[3:]}",
        "label": ("benign", "malignant")[spec.label], "label_name": ("benign", "malignant")[spec.label],
        "us_image": f"us/{spec.case_id}.png", "us_mask": f"us/{spec.case_id}_mask.png",
        "us_box": f"{col0},{row0},{col1},{row1}", "ct_image": ct_path,
        "ct_point_ras": _point_text(ct.mass_ras), "ct_side": spec.side, "ct_clock": format_clock(spec.clock_hour),
        "ct_distance_mm": f"{ct.distance_mm:.1f}", "lesion_diameter_mm": f"{spec.diameter_mm:.1f}",
        "reader_us": spec.reader_us_birads, "reader_ct": f"{spec.reader_ct_probability:.3f}",
        "truth_nipple_right_ras": _point_text(ct.nipples_ras["right"]),
        "truth_nipple_left_ras": _point_text(ct.nipples_ras["left"]),
        "truth_us_appearance": f"{spec.us_appearance:.3f}", "truth_ct_appearance": f"{spec.ct_appearance:.3f}",
    }


def read_case(case: dict):
    """The raw inputs of one validated manifest case: (US image, lesion mask, CT volume, CT mass point)."""
    image = load_us_image(case["us_image"])
    return image, load_lesion_mask([case["us_mask"]], image.shape), load_ct(case["ct_image"]), np.array(case["ct_point_ras"])


def generate_cohort(out: str | Path, cases: int = 240, seed: int = 0, dicom: bool = False, workers: int = 2,
                    **latent_options) -> Path:
    """Write ``cases`` synthetic paired cases into ``out``; return the manifest path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs = sample_lesions(cases, seed=seed, **latent_options)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(write_case, specs, [out] * len(specs), [dicom] * len(specs)))
    return write_manifest(rows, out / "manifest.csv")
