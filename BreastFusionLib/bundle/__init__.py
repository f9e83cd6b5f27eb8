"""Glue between the MONAI bundle configs (``monai_bundle/configs``) and BreastFusionLib."""

from BreastFusionLib.bundle.checkpoints import BestModelState, latest_resume_checkpoint, preflight
from BreastFusionLib.bundle.datalist import class_weights, load_datalist
from BreastFusionLib.bundle.ensemble import write_ensemble
from BreastFusionLib.bundle.external import evaluation_folder, preflight_external, write_external_report
from BreastFusionLib.bundle.inferer import AutocastInferer
from BreastFusionLib.bundle.report import write_model_report
from BreastFusionLib.bundle.trained_model import trained_model, write_model_settings

__all__ = [
    "AutocastInferer", "BestModelState", "class_weights", "evaluation_folder", "latest_resume_checkpoint",
    "load_datalist", "preflight", "preflight_external", "trained_model", "write_external_report", "write_model_report",
    "write_ensemble", "write_model_settings",
]
