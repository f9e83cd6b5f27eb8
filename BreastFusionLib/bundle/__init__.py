"""Glue between the MONAI bundle configs (``monai_bundle/configs``) and BreastFusionLib."""

from BreastFusionLib.bundle.checkpoints import BestModelState, latest_resume_checkpoint, preflight
from BreastFusionLib.bundle.datalist import class_weights, default_bundle_root, load_datalist
from BreastFusionLib.bundle.inferer import AutocastInferer
from BreastFusionLib.bundle.report import write_model_report

__all__ = [
    "AutocastInferer", "BestModelState", "class_weights", "default_bundle_root", "latest_resume_checkpoint", "load_datalist", "preflight",
    "write_model_report",
]
