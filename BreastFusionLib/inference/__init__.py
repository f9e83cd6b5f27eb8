"""Prediction on one case from raw inputs: bundle loading, crops, calibrated probabilities, heat maps.

``load_bundle(folder, modalities)`` loads the trained models once; ``predict_case(bundle, ...)``
runs the training preprocessing (crop functions + ``transforms.inference_transforms``) on a US image
and/or a chest CT and returns a ``CaseResult``; ``write_outputs`` writes result.json, crops, heat
maps, overlays and report.html. See docs/INFERENCE.md.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Bundle": "bundle", "LoadedModel": "bundle", "load_bundle": "bundle",
    "CaseResult": "case", "ModelResult": "case", "predict_case": "case",
    "apply_temperature": "calibration", "fit_temperature": "calibration",
    "write_outputs": "outputs",
}


def __getattr__(name: str):
    """Lazy exports, so that ``bundle.report`` can import ``inference.calibration`` without a cycle."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


__all__ = sorted(_EXPORTS)
