"""BreastFusion: benign vs malignant breast masses from ultrasound, chest CT, or both fused (3D Slicer module).

This file is only GUI and MRML <-> numpy glue. Every computation (nipple detection, clock-face
geometry and mass proposal through ``LesionLocator``, lesion crops, previews, heat-map captions,
dependency checks, inference) lives in the Slicer-free ``BreastFusionLib`` package, tested with pytest outside Slicer.
Inference runs in one long-lived background ``PythonSlicer`` process (``Resources/inference_worker.py``,
driven through ``BreastFusionLib.serving.client``) that loads and warms the models once, so the GUI
never freezes, later runs are fast, and Cancel stops the whole process tree.

Supported: 3D Slicer 5.10 and later (Python 3.12). The file still loads on Slicer 5.8 (Python 3.9:
no ``match``, no ``X | Y`` types, no ``from __future__ import annotations``, which the parameter
node wrapper could not read) only to tell the user that 5.10 is needed.

Research use only: not a medical device, not for diagnosis.
"""

import importlib.util
import json
import logging
import os
import pathlib
import shutil
import sys
import time
import unittest
from typing import Annotated, Callable, Dict, List, Optional

import ctk
import numpy as np
import qt
import vtk

import slicer
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

MODULE_DIR = pathlib.Path(__file__).resolve().parent
WORKER_SCRIPT = MODULE_DIR / "Resources" / "inference_worker.py"
REQUIREMENTS_FILE = MODULE_DIR / "Resources" / "requirements.txt"
SAMPLE_NAME = "BreastFusionSynthetic"
SAMPLE_SEED = 7
DISCLAIMER = ("Research use only. BreastFusion is not a medical device and must not be used for diagnosis: "
              "every output needs review by a qualified radiologist.")
HEATMAP_COLOR_NODE_IDS = ("vtkMRMLColorTableNodeFileColdToHotRainbow.txt", "vtkMRMLColorTableNodeRainbow")
# Markup events that mean "a point now has its final position" (not the hover preview of a placement).
POINT_SETTLED_EVENTS = (slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                        slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent,
                        slicer.vtkMRMLMarkupsNode.PointRemovedEvent)


def _ensureBreastFusionLibOnPath() -> None:
    """Developer layout: with only ``<repo>/BreastFusion`` as additional module path, find ``<repo>/BreastFusionLib``.

    A built extension packages BreastFusionLib next to this file, which Slicer already puts on sys.path.
    Appended (lowest priority), and only a path; nothing is imported or installed here.
    """
    if importlib.util.find_spec("BreastFusionLib") is not None:
        return
    repository = MODULE_DIR.parent
    if (repository / "BreastFusionLib" / "__init__.py").is_file() and str(repository) not in sys.path:
        sys.path.append(str(repository))


_ensureBreastFusionLibOnPath()


#
# BreastFusion
#


class BreastFusion(ScriptedLoadableModule):
    """Module metadata; registers the synthetic sample case once Slicer has started."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("BreastFusion")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Diagnosis")]
        self.parent.dependencies = ["Markups"]
        self.parent.contributors = ["BreastFusion contributors"]
        self.parent.helpText = _("""
Classifies a breast mass as benign or malignant from an ultrasound (US) image, the chest-CT view of
the same mass, or both fused (CBAM-ResNet-50 models). Workflow: load the CT and the US image, detect
or place the nipples, type the reported position (side, clock, distance from the nipple) or click
the mass, draw a box around the mass on the US image, check the crops, run, review the heat maps
and export the report. Needs 3D Slicer 5.10 or later.<br><br>
<b>{disclaimer}</b><br><br>
See <a href="https://github.com/breastfusion/BreastFusion/blob/main/docs/SLICER.md">docs/SLICER.md</a>.
""").format(disclaimer=DISCLAIMER)
        self.parent.acknowledgementText = _("""
Implements and extends Liu, Xiao and Qin, "Deep learning fusion of ultrasound and chest CT to improve
diagnosis of breast masses". Built on 3D Slicer, MONAI and PyTorch; the module follows the Slicer
scripted-module template and the background-process pattern of SlicerMONAIAuto3DSeg.
""")
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Sample data: generated locally (no download), see docs/SLICER.md
#


def sampleCaseFolder(seed: int = SAMPLE_SEED) -> pathlib.Path:
    """Where the synthetic sample case of ``seed`` is generated: the Slicer cache folder."""
    return pathlib.Path(slicer.app.cachePath) / "BreastFusion" / f"synthetic_seed{seed}"


def registerSampleData():
    """Add the synthetic case to the Sample Data module; its files are generated on first use."""
    import SampleData

    folder = sampleCaseFolder()
    iconPath = str(MODULE_DIR / "Resources" / "Icons" / "BreastFusion.png")

    def generateThenLoad(source):
        BreastFusionLogic().generateSampleCase(folder, SAMPLE_SEED)
        return SampleData.SampleDataLogic().downloadFromSource(source)

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="BreastFusion",
        sampleName=SAMPLE_NAME,
        uris=[(folder / "ct.nii.gz").as_uri(), (folder / "us.png").as_uri()],
        fileNames=[f"{SAMPLE_NAME}_CT.nii.gz", f"{SAMPLE_NAME}_US.png"],
        nodeNames=[f"{SAMPLE_NAME}_CT", f"{SAMPLE_NAME}_US"],
        thumbnailFileName=iconPath,
        loadFileTypes="VolumeFile",
        customDownloader=generateThenLoad,
    )


#
# BreastFusionParameterNode
#


@parameterNodeWrapper
class BreastFusionParameterNode:
    """Everything the panel shows; saved with the scene so that reloading restores the panel.

    ctVolume, usVolume: the chest CT and the US image (a 2D image is a one-slice volume).
    rightNipple, leftNipple, massPoint: one control point each, RAS mm on the CT.
    usLesionBox: an ROI around the mass on the US image.
    side, clock, distanceMm: the reported position; kept in sync with massPoint once it is placed.
    lesionDiameterMm: lesion size for the CT crop (0 = default 20 mm).
    modelFolder: the trained models (MONAI bundle folder), "" until chosen (kept in sync with the path
    widget by hand: the wrapper's Path connector would show an unset path as ".").
    useUSModel/useCTModel/useFusionModel pick models; cpuOnly: run on the CPU even when CUDA is available.
    """

    ctVolume: vtkMRMLScalarVolumeNode
    usVolume: vtkMRMLScalarVolumeNode
    rightNipple: vtkMRMLMarkupsFiducialNode
    leftNipple: vtkMRMLMarkupsFiducialNode
    massPoint: vtkMRMLMarkupsFiducialNode
    usLesionBox: vtkMRMLMarkupsROINode
    side: Annotated[str, Choice(["left", "right"])] = "left"
    clock: str = ""
    distanceMm: Annotated[float, WithinRange(0.0, 250.0)] = 30.0
    lesionDiameterMm: Annotated[float, WithinRange(0.0, 150.0)] = 0.0
    modelFolder: str = ""
    useUSModel: bool = True
    useCTModel: bool = True
    useFusionModel: bool = True
    cpuOnly: bool = False


#
# BreastFusionWidget
#


class BreastFusionWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: binds the .ui to the parameter node and forwards every action to the logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedMarkups = []
        self._result = None
        self._resultFolder = None

    def setup(self) -> None:
        """Load the .ui, connect the buttons, create the logic (called once, when the module is first opened)."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BreastFusion.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = BreastFusionLogic()

        self.ui.disclaimerLabel.text = DISCLAIMER
        self.ui.modelFolderPathLineEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.ui.modelFolderPathLineEdit.connect("currentPathChanged(QString)", self.onModelFolderChanged)
        for placeWidget, selector in ((self.ui.rightNipplePlaceWidget, self.ui.rightNippleSelector),
                                      (self.ui.leftNipplePlaceWidget, self.ui.leftNippleSelector),
                                      (self.ui.massPlaceWidget, self.ui.massSelector),
                                      (self.ui.usLesionBoxPlaceWidget, self.ui.usLesionBoxSelector)):
            placeWidget.setMRMLScene(slicer.mrmlScene)
            placeWidget.placeMultipleMarkups = slicer.qSlicerMarkupsPlaceWidget.ForcePlaceSingleMarkup
            selector.connect("currentNodeChanged(vtkMRMLNode*)", placeWidget.setCurrentNode)
        for placeWidget, selector in ((self.ui.rightNipplePlaceWidget, self.ui.rightNippleSelector),
                                      (self.ui.leftNipplePlaceWidget, self.ui.leftNippleSelector),
                                      (self.ui.massPlaceWidget, self.ui.massSelector)):
            placeWidget.connect("activeMarkupsPlaceModeChanged(bool)",
                                lambda active, selector=selector: self._onPlacePoint(selector, active))
        self.ui.heatMapKindComboBox.addItems(["gradcam", "attention"])
        for label in (self.ui.usCropLabel, self.ui.ctCropLabel):
            label.setFixedSize(150, 150)
            label.scaledContents = True
        self.ui.resultsTableWidget.setHorizontalHeaderLabels(
            [_("Model"), _("Probability"), _("Threshold"), _("Decision"), _("Missing"), _("Ensemble spread")])
        self.ui.cancelButton.enabled = False

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.loadSampleButton.connect("clicked(bool)", self.onLoadSample)
        self.ui.detectNipplesButton.connect("clicked(bool)", self.onDetectNipples)
        self.ui.findMassButton.connect("clicked(bool)", self.onFindMass)
        self.ui.previewCropsButton.connect("clicked(bool)", self.onPreviewCrops)
        self.ui.runButton.connect("clicked(bool)", self.onRun)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.showHeatMapButton.connect("clicked(bool)", self.onShowHeatMap)
        self.ui.exportReportButton.connect("clicked(bool)", self.onExportReport)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed: stop the worker."""
        self.logic.stopWorker()
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module: stop updating the panel."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._observeMarkups([])

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Take the module's parameter node and pick the first CT volume if none is chosen."""
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.ctVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.ctVolume = first

    def setParameterNode(self, inputParameterNode: Optional[BreastFusionParameterNode]) -> None:
        """Bind the panel to a parameter node (None unbinds it)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        """Follow the markups that the parameter node points at, show the model folder, enable what can run."""
        p = self._parameterNode
        self._observeMarkups([n for n in (p.massPoint, p.rightNipple, p.leftNipple) if n] if p else [])
        if p and self.ui.modelFolderPathLineEdit.currentPath != p.modelFolder:
            self.ui.modelFolderPathLineEdit.currentPath = p.modelFolder
        self._checkCanRun()

    def _observeMarkups(self, wanted: List) -> None:
        """Watch the mass and nipple points (one control point each): placing or moving one updates side / clock / distance."""
        for node in self._observedMarkups:
            if node not in wanted:
                for event in POINT_SETTLED_EVENTS:
                    self.removeObserver(node, event, self._onMarkupMoved)
        for node in wanted:
            if node not in self._observedMarkups:
                node.SetMaximumNumberOfControlPoints(1)
                for event in POINT_SETTLED_EVENTS:
                    self.addObserver(node, event, self._onMarkupMoved)
        self._observedMarkups = list(wanted)

    def _onPlacePoint(self, selector, active: bool) -> None:
        """Placing a point on a node that already has one replaces it (a full node would make Slicer start a new node)."""
        node = selector.currentNode()
        if active and node and node.GetNumberOfDefinedControlPoints() > 0:
            node.RemoveAllControlPoints()

    def _onMarkupMoved(self, caller=None, event=None) -> None:
        description = self.logic.updateClockFromMass(self._parameterNode)
        self.ui.massPositionLabel.text = description or ""

    def _checkCanRun(self) -> None:
        p = self._parameterNode
        running = self.logic.isInferenceRunning()
        hasImage = bool(p and (p.ctVolume or p.usVolume))
        self.ui.runButton.enabled = hasImage and not running
        self.ui.runButton.toolTip = _("Run the selected models in the background") if hasImage else _("Select a CT or a US image first")
        self.ui.detectNipplesButton.enabled = bool(p and p.ctVolume)
        self.ui.findMassButton.enabled = bool(p and p.ctVolume and p.clock.strip())
        self.ui.previewCropsButton.enabled = hasImage
        self.ui.cancelButton.enabled = running

    # --- user actions -----------------------------------------------------------------------------

    def onModelFolderChanged(self, path: str) -> None:
        """Remember the folder, and load its models in the background if everything is installed already."""
        if not self._parameterNode or self._parameterNode.modelFolder == path:
            return
        self._parameterNode.modelFolder = path
        with slicer.util.tryWithErrorDisplay(_("Failed to start the BreastFusion worker."), waitCursor=True):
            self.logic.prepareWorker(self._parameterNode)

    def onLoadSample(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to create the synthetic sample case."), waitCursor=True):
            case = self.logic.loadSampleCase(self._parameterNode)
            self.ui.statusLabel.text = _("Synthetic case loaded: {side} breast, {clock}, {distance} mm from the nipple "
                                         "(US box {box}).").format(side=case["ct_side"], clock=case["ct_clock"],
                                                                    distance=case["ct_distance_mm"], box=case["us_box"])

    def onDetectNipples(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to detect the nipples."), waitCursor=True):
            results = self.logic.detectNipples(self._parameterNode)
            self.ui.statusLabel.text = "\n".join(r.message for r in results.values())
            self._onMarkupMoved()  # points moved by code fire no "placed" event

    def onFindMass(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to find the mass."), waitCursor=True):
            location = self.logic.findMass(self._parameterNode)
            self.ui.statusLabel.text = _("{message} (score {score:.2f}: check the point and move it if needed)").format(
                message=location.message, score=location.score)
            self._onMarkupMoved()

    def onPreviewCrops(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to compute the crops."), waitCursor=True):
            previews = self.logic.computeCropPreviews(self._parameterNode)
            for key, label in (("us", self.ui.usCropLabel), ("ct", self.ui.ctCropLabel)):
                preview = previews.get(key)
                pixmap = qt.QPixmap(str(preview.png)) if preview else qt.QPixmap()
                if preview and pixmap.isNull():
                    raise RuntimeError(_("Could not load the crop preview {path}").format(path=preview.png))
                label.setPixmap(pixmap)
                label.toolTip = preview.note if preview else ""

    def onRun(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to start the inference."), waitCursor=True):
            if not self.logic.ensureDependencies(askConfirmation=True):
                self.ui.statusLabel.text = _("Not run: the Python packages BreastFusion needs are not installed.")
                return
            self.ui.logTextEdit.clear()
            self.ui.progressBar.value = 0
            self._result = None
            self._resultFolder = self.logic.startInference(
                self._parameterNode, logCallback=self._log, progressCallback=self._progress,
                completedCallback=self._onInferenceCompleted)
            self._checkCanRun()

    def onCancel(self) -> None:
        self.logic.cancelInference()

    def onShowHeatMap(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to show the heat map."), waitCursor=True):
            model, modality = self.ui.heatMapModelComboBox.currentText.split(" / ")
            kind = self.ui.heatMapKindComboBox.currentText
            self.logic.showHeatMap(self._parameterNode, self._result, self._resultFolder, model, modality, kind)
            self.ui.heatMapInfoLabel.text = self.logic.heatMapCaption(self._result, model, modality, kind)

    def onExportReport(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to export the report."), waitCursor=True):
            path = qt.QFileDialog.getSaveFileName(self.parent, _("Export report"), "breastfusion_report.html", "HTML (*.html)")
            if path:
                self.logic.exportReport(self._resultFolder, path)
                self.ui.statusLabel.text = _("Report written to {path}").format(path=path)

    # --- inference callbacks (GUI thread, from the logic's timer) ---------------------------------

    def _log(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text)

    def _progress(self, percent: int, message: str) -> None:
        self.ui.progressBar.value = percent
        self.ui.statusLabel.text = message

    def _onInferenceCompleted(self, ok: bool, message: str, cancelled: bool) -> None:
        self._checkCanRun()
        if cancelled:
            self.ui.statusLabel.text = _("Cancelled: the worker was stopped.")
            return
        if not ok:
            self.ui.statusLabel.text = _("Inference failed: {message}").format(message=message)
            self._log(message)
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to read the result."), waitCursor=True):
            self._result = self.logic.readResult(self._resultFolder)
            self._showResult(self._result)

    def _showResult(self, result: Dict) -> None:
        models = result.get("models", {})
        table = self.ui.resultsTableWidget
        table.setRowCount(len(models))
        for row, (name, entry) in enumerate(sorted(models.items())):
            cells = [name, f"{entry['probability']:.3f}", f"{entry['threshold']:.3f}", entry["decision"],
                     entry.get("missing_modality") or "", self.logic.ensembleText(entry)]
            for column, text in enumerate(cells):
                table.setItem(row, column, qt.QTableWidgetItem(text))
        self.ui.heatMapModelComboBox.clear()
        for model, modalities in sorted(result.get("heatmaps", {}).items()):
            for modality in sorted(modalities):
                self.ui.heatMapModelComboBox.addItem(f"{model} / {modality}")
        self.ui.showHeatMapButton.enabled = self.ui.heatMapModelComboBox.count > 0
        self.ui.heatMapInfoLabel.text = ""
        self.ui.exportReportButton.enabled = True
        self.ui.disclaimerLabel.text = result.get("disclaimer") or DISCLAIMER
        self.ui.statusLabel.text = _("Done. Probabilities are model outputs for research, not a diagnosis.")


#
# BreastFusionLogic
#


class BreastFusionLogic(ScriptedLoadableModuleLogic):
    """Everything the panel does, usable without it (Python console, batch scripts, tests).

    Converts MRML nodes to numpy arrays and geometry, calls BreastFusionLib, and writes results
    back into nodes. BreastFusionLib modules that need numpy, scipy or more are imported inside the
    methods, after ``ensureDependencies``, so that the module loads before anything is installed.
    The background worker (one per Slicer session, started on the first run or when a model folder
    is chosen) is driven through ``BreastFusionLib.serving.client.WorkerProcess``.
    """

    POLL_MS = 200

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.worker = None  # BreastFusionLib.serving.client.WorkerProcess
        self.workerDevice = None
        self._polling = False  # one QTimer chain reads the worker's events
        self._run = None  # the request in flight: id, callbacks
        self._requestCount = 0
        self.lastOutcome = None  # (ok, message, cancelled) of the last finished request

    def getParameterNode(self) -> BreastFusionParameterNode:
        return BreastFusionParameterNode(super().getParameterNode())

    # --- dependencies -----------------------------------------------------------------------------

    @staticmethod
    def missingDependencies() -> List[str]:
        """Distribution names of the packages BreastFusion needs that cannot be imported here."""
        from BreastFusionLib.dependencies import missing_distributions

        return missing_distributions()

    def ensureDependencies(self, askConfirmation: bool = True) -> bool:
        """Install what is missing, after asking; never called at import.

        Returns False (nothing installed) when the user declines and, in testing mode, whenever
        something is missing: tests never change Slicer's Python. torch comes from the PyTorch
        extension; the rest from requirements.txt, pinned so that nothing Slicer has is replaced.
        """
        from BreastFusionLib import dependencies

        if sys.version_info < dependencies.MIN_PYTHON:
            raise RuntimeError(_("BreastFusion needs 3D Slicer 5.10 or later (Python 3.10 or later); this Slicer "
                                 "runs Python {version}.").format(version=sys.version.split()[0]))
        missing = dependencies.missing_distributions()
        if not missing:
            warning = dependencies.old_torch_warning()
            if warning:
                logging.warning("BreastFusion: %s", warning)
            return True
        if slicer.app.testingEnabled():
            logging.info("BreastFusion: testing mode, nothing installed; missing: %s", ", ".join(missing))
            return False
        if dependencies.FROM_PYTORCH_EXTENSION in missing:
            try:
                import PyTorchUtils
            except ImportError:
                raise RuntimeError(_("BreastFusion needs PyTorch: install the PyTorch extension from the "
                                     "Extensions Manager, restart Slicer and try again.")) from None
            minimum = ">=" + ".".join(str(n) for n in dependencies.MIN_TORCH)
            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=askConfirmation,
                                                            torchVersionRequirement=minimum) is None:
                return False
            missing = dependencies.missing_distributions()
        requirements, unavailable = dependencies.to_install(dependencies.read_requirements(REQUIREMENTS_FILE),
                                                            [name for name in missing if name != "torch"])
        if unavailable:
            raise RuntimeError(_("{packages} should come with 3D Slicer 5.10 or later but cannot be imported: "
                                 "use a supported Slicer version.").format(packages=", ".join(unavailable)))
        if requirements:
            if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                    _("BreastFusion needs these Python packages, which will now be downloaded and installed: {packages}. "
                      "Nothing Slicer already has is changed. This can take a few minutes.").format(
                        packages=", ".join(requirements))):
                return False
            constraints = pathlib.Path(slicer.util.tempDirectory("BreastFusionInstall")) / "constraints.txt"
            constraints.write_text(dependencies.keep_installed_constraints())
            try:  # "import slicer.packaging" here would make "slicer" a local name of this whole method
                from slicer import packaging as slicerPackaging
            except ImportError:  # Slicer 5.10
                slicer.util.pip_install([*requirements, "-c", str(constraints)])
            else:  # Slicer 5.12 and later: progress dialog, and a restart prompt when an imported package changed
                slicerPackaging.pip_ensure(requirements, constraints=str(constraints), prompt_install=False,
                                           requester="BreastFusion")
        stillMissing = dependencies.missing_distributions()
        if stillMissing:
            raise RuntimeError(_("Still missing after installation: {packages}. Restart Slicer and try again.").format(
                packages=", ".join(stillMissing)))
        return True

    # --- MRML <-> numpy -----------------------------------------------------------------------------

    @staticmethod
    def _checkNotTransformed(node) -> None:
        if node.GetParentTransformNode() is not None:
            raise ValueError(_("{name} is under a transform: harden the transform first (Data module, right-click).").format(
                name=node.GetName()))

    def ctVolumeFromNode(self, volumeNode):
        """The CT node as a ``CTVolume``: its voxels [k, j, i] (a view, no copy) and IJKToRAS matrix."""
        from BreastFusionLib.ct.volume import CTVolume

        self._checkNotTransformed(volumeNode)
        matrix = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(matrix)
        return CTVolume(hu=slicer.util.arrayFromVolume(volumeNode), ijk_to_ras=slicer.util.arrayFromVTKMatrix(matrix))

    def usArrayFromNode(self, volumeNode) -> np.ndarray:
        """The US frame (rows, cols) or (rows, cols, 3): the middle slice of a multi-frame volume."""
        self._checkNotTransformed(volumeNode)
        array = slicer.util.arrayFromVolume(volumeNode)
        return np.array(array[array.shape[0] // 2])

    @staticmethod
    def _point(markupsNode) -> Optional[np.ndarray]:
        """The node's first control point once placed (not the hover preview of a placement), RAS mm."""
        if (not markupsNode or markupsNode.GetNumberOfControlPoints() < 1
                or markupsNode.GetNthControlPointPositionStatus(0) != slicer.vtkMRMLMarkupsNode.PositionDefined):
            return None
        position = [0.0, 0.0, 0.0]
        markupsNode.GetNthControlPointPositionWorld(0, position)
        return np.array(position)

    @staticmethod
    def _setPoint(markupsNode, point, label: str) -> None:
        if markupsNode.GetNumberOfControlPoints() < 1:
            markupsNode.AddControlPointWorld(vtk.vtkVector3d(*[float(v) for v in point]), label)
        else:
            markupsNode.SetNthControlPointPositionWorld(0, *[float(v) for v in point])
            markupsNode.SetNthControlPointLabel(0, label)

    @staticmethod
    def _markupsNode(current, name: str, color):
        if current:
            return current
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
        node.SetMaximumNumberOfControlPoints(1)
        node.CreateDefaultDisplayNodes()
        node.GetDisplayNode().SetSelectedColor(*color)
        return node

    def usBoxXYXY(self, usNode, roiNode) -> List[float]:
        """The ROI around the mass as a pixel box (x0, y0, x1, y1) of the US image (x = column, y = row)."""
        self._checkNotTransformed(roiNode)
        bounds = [0.0] * 6
        roiNode.GetRASBounds(bounds)
        rasToIjk = vtk.vtkMatrix4x4()
        usNode.GetRASToIJKMatrix(rasToIjk)
        corners = np.array([[x, y, z, 1.0] for x in bounds[0:2] for y in bounds[2:4] for z in bounds[4:6]])
        ijk = corners @ slicer.util.arrayFromVTKMatrix(rasToIjk).T
        rows, cols = self.usArrayFromNode(usNode).shape[:2]
        # Voxel centres are at integer indices: the box edges are half a pixel outside them.
        x0, x1 = np.clip([ijk[:, 0].min() + 0.5, ijk[:, 0].max() + 0.5], 0, cols)
        y0, y1 = np.clip([ijk[:, 1].min() + 0.5, ijk[:, 1].max() + 0.5], 0, rows)
        return [round(float(v), 1) for v in (x0, y0, x1, y1)]

    # --- localization -------------------------------------------------------------------------------

    def detectNipples(self, parameterNode: BreastFusionParameterNode) -> Dict:
        """Find both nipples on the CT (most anterior skin point of each breast) and place the nipple points."""
        from BreastFusionLib.localization.points import LesionLocator

        results = LesionLocator(self.ctVolumeFromNode(parameterNode.ctVolume)).nipples
        for side, color in (("right", (1.0, 0.5, 0.0)), ("left", (0.0, 0.7, 1.0))):
            result = results[side]
            if not result.found:
                logging.warning("BreastFusion: %s", result.message)
                continue
            attribute = side + "Nipple"
            node = self._markupsNode(getattr(parameterNode, attribute), f"{side.capitalize()} nipple", color)
            self._setPoint(node, result.point_ras, f"{side[0].upper()} nipple ({result.confidence:.2f})")
            setattr(parameterNode, attribute, node)
        return results

    def _nipple(self, parameterNode: BreastFusionParameterNode, side: str) -> np.ndarray:
        point = self._point(getattr(parameterNode, side + "Nipple"))
        if point is None:
            raise ValueError(_("No {side} nipple: detect the nipples or place the {side} nipple point.").format(side=side))
        return point

    def findMass(self, parameterNode: BreastFusionParameterNode):
        """Propose the mass centre in the reported sector (side, clock, distance) from the panel's nipple point of
        that side, by the route ``breastfusion locate`` and ``predict`` take (``LesionLocator``), and place the
        mass point there; returns the ``LesionLocation``."""
        from BreastFusionLib.localization.clock import ClockPosition
        from BreastFusionLib.localization.parsing import parse_clock, parse_side
        from BreastFusionLib.localization.points import LesionLocator

        side = parse_side(parameterNode.side)
        position = ClockPosition(side, parse_clock(parameterNode.clock), float(parameterNode.distanceMm))
        locator = LesionLocator(self.ctVolumeFromNode(parameterNode.ctVolume), side, self._nipple(parameterNode, side),
                                "the panel's nipple point")
        location = locator.from_clock(position)
        node = self._markupsNode(parameterNode.massPoint, "Mass", (1.0, 0.1, 0.1))
        self._setPoint(node, location.point_ras, "Mass")
        parameterNode.massPoint = node
        slicer.modules.markups.logic().JumpSlicesToLocation(*[float(v) for v in location.point_ras], True)
        return location

    def updateClockFromMass(self, parameterNode: BreastFusionParameterNode) -> Optional[str]:
        """Side, clock and distance of the mass point from the nipples, into the parameter node, by the same
        rule as ``breastfusion locate`` and ``predict`` (``describe_point``). Returns the sentence to show,
        or None while the mass point or both nipples are missing."""
        from BreastFusionLib.localization.parsing import format_clock
        from BreastFusionLib.localization.points import describe_point

        mass = self._point(parameterNode.massPoint)
        nipples = {side: self._point(getattr(parameterNode, side + "Nipple")) for side in ("right", "left")}
        if mass is None or all(point is None for point in nipples.values()):
            return None
        location = describe_point(mass, nipples)
        parameterNode.side = location.side
        if location.clock_hour is not None:
            parameterNode.clock = format_clock(location.clock_hour)
            parameterNode.distanceMm = round(min(location.distance_mm, 250.0), 1)
        return location.describe()

    # --- crops preview ------------------------------------------------------------------------------

    def computeCropPreviews(self, parameterNode: BreastFusionParameterNode, folder: Optional[str] = None) -> Dict:
        """The 300x300 crops the models will see, as ``BreastFusionLib.previews.CropPreview`` (pixels, PNG, note)."""
        from BreastFusionLib.previews import crop_previews

        p = parameterNode
        hasUS = bool(p.usVolume and p.usLesionBox)
        return crop_previews(
            folder or pathlib.Path(slicer.app.temporaryPath) / "BreastFusionPreview",
            us_frame=self.usArrayFromNode(p.usVolume) if hasUS else None,
            us_box=self.usBoxXYXY(p.usVolume, p.usLesionBox) if hasUS else None,
            ct=self.ctVolumeFromNode(p.ctVolume) if p.ctVolume else None,
            mass_point_ras=self._point(p.massPoint), lesion_diameter_mm=p.lesionDiameterMm)

    # --- inference ----------------------------------------------------------------------------------

    def selectedModels(self, parameterNode: BreastFusionParameterNode) -> List[str]:
        p = parameterNode
        models = [name for name, use in (("us", p.useUSModel), ("ct", p.useCTModel), ("fusion", p.useFusionModel)) if use]
        if not models:
            raise ValueError(_("Select at least one model (US, CT or fusion)."))
        return models

    def writeInferenceInputs(self, parameterNode: BreastFusionParameterNode, folder: pathlib.Path) -> Dict:
        """Write the arrays and ``inputs.json`` the worker reads (``BreastFusionLib.serving.module_inputs``)."""
        from BreastFusionLib.serving.module_inputs import write_module_inputs

        p = parameterNode
        return write_module_inputs(
            folder, us_frame=self.usArrayFromNode(p.usVolume) if p.usVolume else None,
            us_box=self.usBoxXYXY(p.usVolume, p.usLesionBox) if p.usVolume and p.usLesionBox else None,
            ct=self.ctVolumeFromNode(p.ctVolume) if p.ctVolume else None, point_ras=self._point(p.massPoint),
            side=p.side, clock=p.clock.strip() or None, distance_mm=p.distanceMm, lesion_diameter_mm=p.lesionDiameterMm)

    @staticmethod
    def _bundleFolder(parameterNode: BreastFusionParameterNode) -> str:
        folder = parameterNode.modelFolder.strip()
        return folder if folder and os.path.isdir(os.path.join(folder, "models")) else ""

    def workerCommand(self, device: str, bundleFolder: str = "") -> List[str]:
        """``PythonSlicer inference_worker.py ...``: the worker finds BreastFusionLib through ``--python-path``."""
        python = shutil.which("PythonSlicer")
        if python is None:
            raise RuntimeError(_("PythonSlicer was not found next to Slicer: the installation looks incomplete."))
        import BreastFusionLib

        libraryParent = str(pathlib.Path(BreastFusionLib.__file__).resolve().parent.parent)
        command = [python, str(WORKER_SCRIPT), "--python-path", libraryParent, "--device", device]
        return command + (["--bundle", bundleFolder] if bundleFolder else [])

    def _startWorker(self, device: str, bundleFolder: str) -> None:
        """The worker for ``device``, started (models preloaded from ``bundleFolder``) unless already running."""
        if self.worker is not None and self.worker.is_running() and self.workerDevice == device:
            return
        self.stopWorker()
        from BreastFusionLib.serving.client import WorkerProcess, worker_environment

        environment = worker_environment(slicer.util.startupEnvironment(), device)
        command = self.workerCommand(device, bundleFolder)
        logging.info("BreastFusion: starting %s", " ".join(command))
        self.worker = WorkerProcess(command, environment).start()
        self.workerDevice = device
        if not self._polling:
            self._polling = True
            qt.QTimer.singleShot(self.POLL_MS, self._pollWorker)

    def prepareWorker(self, parameterNode: BreastFusionParameterNode) -> bool:
        """Start the worker and let it load the chosen models now (no question asked, nothing installed):
        the first run is then as fast as the later ones. False when that cannot be done yet."""
        bundleFolder = self._bundleFolder(parameterNode)
        if not bundleFolder or self.missingDependencies() or self.isInferenceRunning():
            return False
        self._startWorker("cpu" if parameterNode.cpuOnly else "auto", bundleFolder)
        return True

    def startInference(self, parameterNode: BreastFusionParameterNode,
                       logCallback: Optional[Callable[[str], None]] = None,
                       progressCallback: Optional[Callable[[int, str], None]] = None,
                       completedCallback: Optional[Callable[[bool, str, bool], None]] = None,
                       checkOnly: bool = False) -> pathlib.Path:
        """Write the inputs and send them to the worker; returns the output folder (result.json lands there).

        ``checkOnly``: the worker reads and checks the inputs but predicts nothing (no model folder needed).
        ``completedCallback(ok, message, cancelled)`` is called once, from the GUI thread.
        """
        if self.isInferenceRunning():
            raise RuntimeError(_("An inference is already running: wait for it or cancel it."))
        bundleFolder = self._bundleFolder(parameterNode)
        if not checkOnly and not bundleFolder:
            raise ValueError(_("Choose the folder of the trained models (the BreastFusion MONAI bundle, with a models/ folder)."))
        work = pathlib.Path(slicer.util.tempDirectory("BreastFusion"))
        self.writeInferenceInputs(parameterNode, work / "input")
        self._startWorker("cpu" if parameterNode.cpuOnly else "auto", bundleFolder)
        self._requestCount += 1
        requestId = str(self._requestCount)
        self._run = {"id": requestId,
                     "log": logCallback or (lambda text: logging.info("BreastFusion: %s", text)),
                     "progress": progressCallback or (lambda percent, text: logging.info("BreastFusion: %d%% %s", percent, text)),
                     "completed": completedCallback or (lambda ok, message, cancelled: None)}
        self.worker.send({"id": requestId, "module_input": str(work / "input"), "out": str(work / "output"),
                          "bundle": bundleFolder, "models": self.selectedModels(parameterNode), "check_only": checkOnly})
        return work / "output"

    def _pollWorker(self) -> None:
        """Hand the worker's events to the run's callbacks (GUI thread); keeps polling while the worker lives."""
        from BreastFusionLib.serving.client import EXIT, LOG
        from BreastFusionLib.serving.protocol import DONE, PROGRESS, READY

        worker = self.worker
        if worker is None:
            self._polling = False
            return
        for event in worker.poll():
            run = self._run
            if event.kind == LOG:
                (run["log"] if run else lambda text: logging.info("BreastFusion worker: %s", text))(event.payload["text"])
            elif event.kind == PROGRESS and run:
                run["progress"](event.payload["percent"], event.payload["message"])
            elif event.kind == READY:
                ready = event.payload
                logging.info("BreastFusion: worker ready on %s in %.1f s%s", ready.get("device"), ready.get("seconds", 0.0),
                             f" ({ready['error']})" if ready.get("error") else "")
            elif event.kind == DONE and run and str(event.payload.get("id")) == run["id"]:
                if event.payload.get("ok"):
                    run["progress"](100, _("done in {seconds:.1f} s").format(seconds=event.payload.get("seconds", 0.0)))
                self._finishRun(bool(event.payload.get("ok")), event.payload.get("error", ""), False)
            elif event.kind == EXIT:
                self.worker = None
                self._polling = False
                if run:
                    self._finishRun(False, _("the BreastFusion worker stopped unexpectedly (exit code {code}); it is "
                                             "started again on the next run").format(code=event.payload["returncode"]), False)
                return
        qt.QTimer.singleShot(self.POLL_MS, self._pollWorker)

    def _finishRun(self, ok: bool, message: str, cancelled: bool) -> None:
        run, self._run = self._run, None
        self.lastOutcome = (ok, message, cancelled)
        if run:
            run["completed"](ok, message, cancelled)

    def isInferenceRunning(self) -> bool:
        return self._run is not None

    def cancelInference(self) -> None:
        """Stop the run in flight: the worker and everything it started end (it restarts on the next run)."""
        if self._run is None:
            return
        self.stopWorker()
        self._finishRun(False, _("cancelled"), True)

    def stopWorker(self) -> None:
        """Close the worker's input (it exits), then kill its process tree if it is still there."""
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop(grace_seconds=1.0)

    def waitForInference(self, timeoutSeconds: float = 600.0) -> bool:
        """Block (processing Qt events) until the run ends; True when it succeeded. For tests and scripts."""
        deadline = time.time() + timeoutSeconds
        while self.isInferenceRunning():
            if time.time() > deadline:
                self.cancelInference()
                raise TimeoutError(f"BreastFusion inference still running after {timeoutSeconds:.0f} s: cancelled")
            slicer.app.processEvents()
            time.sleep(0.05)
        return bool(self.lastOutcome and self.lastOutcome[0])

    # --- results ------------------------------------------------------------------------------------

    @staticmethod
    def readResult(folder) -> Dict:
        """``result.json`` of a finished run, checked against the predict contract."""
        path = pathlib.Path(folder) / "result.json"
        if not path.is_file():
            raise ValueError(_("No result.json in {folder}: the run did not finish.").format(folder=folder))
        result = json.loads(path.read_text())
        for name, entry in result.get("models", {}).items():
            missing = {"probability", "threshold", "decision"} - set(entry)
            if missing:
                raise ValueError(_("result.json: model {name} lacks {keys}").format(name=name, keys=sorted(missing)))
        return result

    @staticmethod
    def heatMapCaption(result: Dict, model: str, modality: str, kind: str) -> str:
        """What a shown heat map is, whether it is flat, and its measured hit rate (``result.json`` ``heatmap_info``)."""
        from BreastFusionLib.display import heatmap_caption

        return heatmap_caption(result.get("heatmap_info", {}).get(model, {}).get(modality, {}).get(kind))

    @staticmethod
    def ensembleText(entry: Dict) -> str:
        """An ensemble model's uncertainty (its members' range, SD and vote) from its result.json entry; "" for one model."""
        from BreastFusionLib.display import ensemble_text

        return ensemble_text(entry.get("ensemble"))

    def showHeatMap(self, parameterNode: BreastFusionParameterNode, result: Dict, folder, model: str, modality: str,
                    kind: str = "gradcam", opacity: float = 0.5):
        """Show one heat map as a coloured overlay over its image; returns the overlay volume node.

        US: a volume in the geometry of the US volume. CT: a one-slice volume on axial slice
        ``ct_slice_index`` of the CT as BreastFusionLib oriented it (``ct_geometry.json``). The display
        window is 0-1, the range every map is scaled to in its crop (as in the report).
        """
        from BreastFusionLib.serving.protocol import CT_GEOMETRY_FILE

        relative = result["heatmaps"][model][modality][kind]
        heat = np.load(pathlib.Path(folder) / relative).astype(np.float32)
        if heat.ndim != 2:
            raise ValueError(_("{path}: a heat map must be 2D, got shape {shape}").format(path=relative, shape=heat.shape))
        if modality == "us":
            base = parameterNode.usVolume
            rows, cols = self.usArrayFromNode(base).shape[:2]
            if heat.shape != (rows, cols):
                raise ValueError(_("US heat map of shape {heat} does not match the US image ({rows}x{cols})").format(
                    heat=heat.shape, rows=rows, cols=cols))
            matrix = vtk.vtkMatrix4x4()
            base.GetIJKToRASMatrix(matrix)
            if base.GetImageData().GetDimensions()[2] > 1:  # multi-frame: the middle frame was classified
                k = base.GetImageData().GetDimensions()[2] // 2
                ijkToRas = slicer.util.arrayFromVTKMatrix(matrix)
                ijkToRas[:3, 3] = ijkToRas[:3, :3] @ np.array([0.0, 0.0, k]) + ijkToRas[:3, 3]
                matrix = slicer.util.vtkMatrixFromArray(ijkToRas)
        else:
            base = parameterNode.ctVolume
            geometry = json.loads((pathlib.Path(folder) / CT_GEOMETRY_FILE).read_text())
            k = int(result["localization"]["ct_slice_index"])
            shapeKji = geometry["shape_kji"]
            if heat.shape != tuple(shapeKji[1:]):
                raise ValueError(_("CT heat map of shape {heat} does not match the CT slice ({rows}x{cols})").format(
                    heat=heat.shape, rows=shapeKji[1], cols=shapeKji[2]))
            ijkToRas = np.array(geometry["ijk_to_ras"], dtype=float)
            ijkToRas[:3, 3] = ijkToRas[:3, :3] @ np.array([0.0, 0.0, k]) + ijkToRas[:3, 3]
            matrix = slicer.util.vtkMatrixFromArray(ijkToRas)
        name = f"BreastFusion {model} {modality} {kind}"
        node = slicer.mrmlScene.GetFirstNodeByName(name) or slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        slicer.util.updateVolumeFromArray(node, heat[np.newaxis])
        node.SetIJKToRASMatrix(matrix)
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        for colorId in HEATMAP_COLOR_NODE_IDS:
            if slicer.mrmlScene.GetNodeByID(colorId):
                display.SetAndObserveColorNodeID(colorId)
                break
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(0.0, 1.0)
        slicer.util.setSliceViewerLayers(background=base, foreground=node, foregroundOpacity=opacity)
        mass = self._point(parameterNode.massPoint)
        if modality == "ct" and mass is not None:
            slicer.modules.markups.logic().JumpSlicesToLocation(*[float(v) for v in mass], True)
        return node

    @staticmethod
    def exportReport(folder, destination) -> str:
        """Copy the run's ``report.html`` to ``destination``; returns the written path."""
        source = pathlib.Path(folder or "") / "report.html"
        if not source.is_file():
            raise ValueError(_("No report.html in {folder}: run the models first.").format(folder=folder))
        shutil.copyfile(source, destination)
        return str(destination)

    # --- sample case --------------------------------------------------------------------------------

    @staticmethod
    def generateSampleCase(folder, seed: int = SAMPLE_SEED) -> Dict:
        """Write one synthetic paired case (``ct.nii.gz``, ``us.png``, ``case.json``) into ``folder`` once.

        Generated locally by BreastFusionLib.synthetic with a fixed seed: no download. ``case.json``
        holds the manifest row (US box, CT point, side, clock, distance, and the synthetic ground truth).
        """
        folder = pathlib.Path(folder)
        caseFile = folder / "case.json"
        if caseFile.is_file() and (folder / "ct.nii.gz").is_file() and (folder / "us.png").is_file():
            return json.loads(caseFile.read_text())
        from BreastFusionLib.synthetic.cohort import write_case
        from BreastFusionLib.synthetic.latent import sample_lesions

        folder.mkdir(parents=True, exist_ok=True)
        row = write_case(sample_lesions(1, seed=seed)[0], folder)
        shutil.copyfile(folder / row["ct_image"], folder / "ct.nii.gz")
        shutil.copyfile(folder / row["us_image"], folder / "us.png")
        caseFile.write_text(json.dumps(row, indent=2))
        return row

    def loadSampleCase(self, parameterNode: Optional[BreastFusionParameterNode] = None, seed: int = SAMPLE_SEED) -> Dict:
        """Generate (first time) and load the synthetic case; fills the parameter node. Returns the case row."""
        case = self.generateSampleCase(sampleCaseFolder(seed), seed)
        folder = sampleCaseFolder(seed)
        ctNode = slicer.util.loadVolume(str(folder / "ct.nii.gz"), {"name": f"{SAMPLE_NAME}_CT"})
        usNode = slicer.util.loadVolume(str(folder / "us.png"), {"name": f"{SAMPLE_NAME}_US", "singleFile": True})
        p = parameterNode or self.getParameterNode()
        p.ctVolume = ctNode
        p.usVolume = usNode
        p.side = case["ct_side"]
        p.clock = case["ct_clock"]
        p.distanceMm = float(case["ct_distance_mm"])
        p.lesionDiameterMm = float(case["lesion_diameter_mm"])
        slicer.util.setSliceViewerLayers(background=ctNode, fit=True)
        return case

    def addUSBoxFromPixels(self, parameterNode: BreastFusionParameterNode, boxXYXY) -> "vtkMRMLMarkupsROINode":
        """An ROI on the US image from a pixel box (x0, y0, x1, y1), e.g. the sample case's ``us_box``."""
        x0, y0, x1, y1 = (float(v) for v in boxXYXY)
        matrix = vtk.vtkMatrix4x4()
        parameterNode.usVolume.GetIJKToRASMatrix(matrix)
        ijkToRas = slicer.util.arrayFromVTKMatrix(matrix)
        corners = np.array([[x0 - 0.5, y0 - 0.5, -0.5, 1.0], [x1 - 0.5, y1 - 0.5, 0.5, 1.0]]) @ ijkToRas.T
        roi = parameterNode.usLesionBox or slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "US lesion box")
        roi.SetCenterWorld(*((corners[0, :3] + corners[1, :3]) / 2.0))
        roi.SetSizeWorld(*np.abs(corners[1, :3] - corners[0, :3]))
        parameterNode.usLesionBox = roi
        return roi


#
# BreastFusionTest
#


class BreastFusionTest(ScriptedLoadableModuleTest):
    """The full workflow on the synthetic sample case, offline (nothing is downloaded or installed).

    Skipped, with the reason shown, when BreastFusion's Python packages are missing. The worker always
    runs: it reads and checks the module's inputs; it predicts for real (result, heat maps, report,
    then a run cancelled part-way) when the environment variable ``BREASTFUSION_TEST_BUNDLE`` names a
    trained model folder.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        try:
            self.test_BreastFusionWorkflow()
        except unittest.SkipTest as reason:  # Reload and Test would show a skip as a failure
            self.delayDisplay(f"BreastFusionTest skipped: {reason}")

    def test_BreastFusionWorkflow(self):
        logic = BreastFusionLogic()
        if sys.version_info < (3, 10):
            self.skipTest("BreastFusion needs 3D Slicer 5.10 or later")
        missing = logic.missingDependencies()
        if missing:
            self.skipTest(f"BreastFusion's Python packages are not installed ({', '.join(missing)}): press Run once "
                          "in the BreastFusion module to install them, then run this test again")
        p = logic.getParameterNode()

        self.delayDisplay("Generating and loading the synthetic sample case")
        case = logic.loadSampleCase(p)
        self.assertIsNotNone(p.ctVolume)
        self.assertIsNotNone(p.usVolume)

        self.delayDisplay("Detecting the nipples")
        results = logic.detectNipples(p)
        for side in ("right", "left"):
            self.assertTrue(results[side].found, results[side].message)
            truth = np.array([float(v) for v in case[f"truth_nipple_{side}_ras"].split(",")])
            self.assertLess(float(np.linalg.norm(logic._point(getattr(p, side + "Nipple")) - truth)), 10.0)

        self.delayDisplay("Finding the mass from its clock position")
        location = logic.findMass(p)
        truth = np.array([float(v) for v in case["ct_point_ras"].split(",")])
        self.assertLess(float(np.linalg.norm(location.point_ras - truth)), 15.0, location.message)
        description = logic.updateClockFromMass(p)
        self.assertIn(case["ct_side"].capitalize(), description)

        self.delayDisplay("US lesion box and crop previews")
        box = [float(v) for v in case["us_box"].split(",")]
        logic.addUSBoxFromPixels(p, box)
        np.testing.assert_allclose(logic.usBoxXYXY(p.usVolume, p.usLesionBox), box, atol=1.0)
        previews = logic.computeCropPreviews(p)
        for key in ("us", "ct"):
            self.assertEqual(previews[key].pixels.shape[:2], (300, 300))
            self.assertFalse(qt.QPixmap(str(previews[key].png)).isNull())

        bundle = os.environ.get("BREASTFUSION_TEST_BUNDLE", "")
        p.modelFolder = bundle
        p.cpuOnly = True
        self.delayDisplay("Background worker: " + ("inference" if bundle else "inputs checked (set BREASTFUSION_TEST_BUNDLE "
                                                                              "to a trained model folder to test inference)"))
        progress = []
        folder = logic.startInference(p, progressCallback=lambda percent, text: progress.append(percent), checkOnly=not bundle)
        self.assertTrue(logic.waitForInference(600.0), logic.lastOutcome)
        self.assertEqual(progress[-1], 100)
        self.assertTrue((folder / "ct_geometry.json").is_file())
        if bundle:
            result = logic.readResult(folder)
            for name, entry in result["models"].items():
                self.assertTrue(0.0 <= entry["probability"] <= 1.0, name)
                self.assertIn(entry["decision"], ("benign", "malignant"))
            for model, modalities in result.get("heatmaps", {}).items():
                for modality in modalities:
                    node = logic.showHeatMap(p, result, folder, model, modality, "attention")
                    self.assertEqual(node.GetImageData().GetDimensions()[2], 1)
            exported = pathlib.Path(slicer.util.tempDirectory("BreastFusionTest")) / "report.html"
            logic.exportReport(folder, exported)
            self.assertTrue(exported.is_file())

            self.delayDisplay("Cancel stops the worker")
            logic.startInference(p)
            process = logic.worker.process
            logic.cancelInference()
            self.assertIsNone(logic.worker)
            self.assertIsNotNone(process.poll())
            self.assertTrue(logic.lastOutcome[2])
        logic.stopWorker()
        self.delayDisplay("Test passed")
