"""The two 300x300 crops the models will see, computed before a run so that a viewer can show them
(the 3D Slicer panel's *Preview crops*). Exactly the worker's path: the US frame goes through the same
PNG writer and loader, the CT through the same canonical orientation, then the same crop functions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from BreastFusionLib.ct.crop import ct_axial_crop
from BreastFusionLib.ct.volume import CTVolume, canonical
from BreastFusionLib.display import save_grey_png
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.us.crop import us_lesion_crop
from BreastFusionLib.us.io import load_us_image, write_us_png


@dataclass
class CropPreview:
    """One crop as the model will see it, saved as an 8-bit PNG, with a note for the viewer."""

    pixels: np.ndarray
    png: Path
    note: str


def crop_previews(folder: str | Path, us_frame: np.ndarray | None = None, us_box=None, ct: CTVolume | None = None,
                  mass_point_ras=None, lesion_diameter_mm: float | None = None) -> dict[str, CropPreview]:
    """{"us": ..., "ct": ...} for what is given: the US frame (as ``slicer.util.arrayFromVolume`` gives it)
    with its lesion box (x0, y0, x1, y1), and/or the CT with the mass point (RAS mm)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    previews = {}
    if us_frame is not None and us_box is not None:
        source = folder / "us_frame.png"
        write_us_png(us_frame, source)
        crop = us_lesion_crop(load_us_image(source), box=tuple(float(v) for v in us_box))
        previews["us"] = CropPreview(crop.pixels, save_grey_png(crop.pixels, folder / "us_crop.png"),
                                     f"{crop.overlay_pixels} overlay pixels removed")
    if ct is not None and mass_point_ras is not None:
        crop = ct_axial_crop(canonical(ct), np.asarray(mass_point_ras, float), lesion_diameter_mm=lesion_diameter_mm or None)
        previews["ct"] = CropPreview(crop.pixels, save_grey_png(crop.pixels, folder / "ct_crop.png"),
                                     f"axial slice {crop.slice_index} of the CT as BreastFusion orients it")
    if not previews:
        raise UserInputError("nothing to crop: give the US image and its lesion box, and/or the CT and the mass point")
    return previews
