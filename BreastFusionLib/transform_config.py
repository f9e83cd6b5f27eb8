"""The bundle's transform lists, read from its configs with MONAI's ``ConfigParser``: one definition for train and serve.

``monai_bundle/configs/train.json`` lists the transforms as ``_target_`` entries, the way MONAI
model-zoo bundles do (a user overrides one of them on the command line, e.g.
``--train#augmentation#0#prob 0``): ``loading`` (PNG crop files), ``resizing``, ``stacking``, the
training-only ``train#off_centre_window`` and ``train#augmentation``, and the composed
``train#preprocessing`` and ``validate#preprocessing``. ``inference.json`` holds the same ``loading``,
``resizing`` and ``stacking`` (a test keeps them identical), plus ``array_preprocessing``: in-memory
crops (Slicer, ``breastfusion predict``) quantised to the PNGs' grey levels, then the same steps.

Serving reads ``array_preprocessing`` from the trained bundle's own ``configs/inference.json``; a
bundle folder without one (the demo and the tests' tiny bundles write none; bundles from before the
transforms were listed in the configs have no ``array_preprocessing``) is served with the
repository's copy (``monai_bundle/configs``; a ``UserInputError`` says so when BreastFusionLib is
installed without it and the bundle has none). The configs' ``imports`` are not evaluated here: they load training modules
(``BreastFusionLib.bundle`` loads plotting) that a serving process does not have; the transform
entries need only ``BreastFusionLib.transforms``.
"""

from __future__ import annotations

import functools
from pathlib import Path

from monai.bundle import ConfigParser
from monai.transforms import Compose

import BreastFusionLib.transforms  # noqa: F401  (the configs' expressions and _target_s name it)
from BreastFusionLib.errors import UserInputError

REPOSITORY_CONFIGS = Path(__file__).resolve().parents[1] / "monai_bundle" / "configs"
SERVING_ID = "array_preprocessing"


def configured_transforms(config_file: str | Path, config_id: str, modality: str, spatial_size: int,
                          off_centre: float = 0.0, crop_scale: float = 0.0) -> Compose:
    """The ``Compose`` at ``config_id`` of ``config_file``, for a ``modality`` model of input size ``spatial_size``."""
    config = ConfigParser.load_config_files(str(config_file))
    config.pop("imports", None)
    parser = ConfigParser(config, globals={"BreastFusionLib": "BreastFusionLib"})
    parser.update({"modality": modality, "spatial_size": int(spatial_size), "off_centre": off_centre,
                   "crop_scale": crop_scale})
    return parser.get_parsed_content(config_id, instantiate=True)


def serving_config(configs: str | Path | None = None) -> Path:
    """The inference.json serving reads: the one in ``configs`` (a bundle's configs folder) when it lists
    ``array_preprocessing``, else the repository's."""
    own = Path(configs) / "inference.json" if configs is not None else None
    if own is not None and own.is_file() and SERVING_ID in ConfigParser.load_config_files(str(own)):
        return own
    repository = REPOSITORY_CONFIGS / "inference.json"
    if not repository.is_file():  # BreastFusionLib installed without the repository's monai_bundle/
        raise UserInputError(f"no preprocessing definition: {own or 'the bundle folder'} has no {SERVING_ID} and "
                             f"{repository} does not exist; copy monai_bundle/configs/inference.json into the bundle's configs/")
    return repository


def train_transforms(modality: str, spatial_size: int = 300, off_centre: float = 0.0,
                     crop_scale: float = 0.0) -> Compose:
    """Crop files (context crop files when ``off_centre`` > 0) -> augmented ``image`` (and ``label``): ``train#preprocessing``.

    ``crop_scale`` > 0 (with ``off_centre``): windows of (1 - crop_scale) to (1 + crop_scale) crop sides."""
    return configured_transforms(REPOSITORY_CONFIGS / "train.json", "train#preprocessing", modality, spatial_size,
                                 off_centre, crop_scale)


def eval_transforms(modality: str, spatial_size: int = 300) -> Compose:
    """Crop files -> ``image`` tensor for validation, evaluation and batch inference: ``validate#preprocessing``."""
    return configured_transforms(REPOSITORY_CONFIGS / "train.json", "validate#preprocessing", modality, spatial_size)


@functools.lru_cache(maxsize=32)
def inference_transforms(modality: str, spatial_size: int = 300, configs: str | Path | None = None) -> Compose:
    """In-memory [0, 1] 2D crops -> ``image`` tensor, identical to ``eval_transforms`` on saved PNGs.

    ``configs``: the trained bundle's configs folder (None: the repository's); see ``serving_config``.
    Built once per model and reused for every case (its transforms are deterministic).
    """
    return configured_transforms(serving_config(configs), SERVING_ID, modality, spatial_size)
