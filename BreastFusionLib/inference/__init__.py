"""Prediction on one case from raw inputs: bundle loading, crops, calibrated probabilities, heat maps.

``load_bundle(folder, modalities)`` loads the trained models once; ``predict_case(bundle, ...)``
runs the training preprocessing (crop functions + the bundle's ``array_preprocessing``) on a US image
and/or a chest CT and returns a ``CaseResult``; ``write_outputs`` writes result.json, crops, heat
maps, overlays and report.html. See docs/INFERENCE.md. Nothing here imports training, evaluation
statistics or plotting code: this is what the 3D Slicer worker runs.
"""

from BreastFusionLib.inference.loaded_bundle import LoadedBundle, LoadedModel, load_bundle
from BreastFusionLib.inference.calibration import apply_temperature, fit_temperature
from BreastFusionLib.inference.case import CaseResult, ModelResult, predict_case
from BreastFusionLib.inference.outputs import write_outputs

__all__ = ["CaseResult", "LoadedBundle", "LoadedModel", "ModelResult", "apply_temperature", "fit_temperature", "load_bundle",
           "predict_case", "write_outputs"]
