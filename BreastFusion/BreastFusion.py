"""BreastFusion: benign vs malignant breast masses from ultrasound, chest CT, or both fused (3D Slicer module).

This file is only GUI and MRML <-> numpy glue. Every computation (nipple detection, clock-face
geometry, mass proposal, lesion crops, inference) lives in the Slicer-free ``BreastFusionLib``
package, tested with pytest outside Slicer. Inference runs in a background ``PythonSlicer`` process
(``Resources/inference_worker.py``) that calls the ``breastfusion predict`` command line, so the
GUI never freezes and a run can be cancelled.

Must run on Slicer 5.8 (Python 3.9): no ``match``, no ``X | Y`` types, and no
``from __future__ import annotations`` (the parameter node wrapper reads real annotations).

Research use only: not a medical device, not for diagnosis.
"""

import importlib.util
import json
import logging
import os
import pathlib
import queue
import shutil
import sys
import threading
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
SAMPLE_NAME = "BreastFusionSynthetic"
SAMPLE_SEED = 7
DISCLAIMER = ("Research use only. BreastFusion is not a medical device and must not be used for diagnosis: "
              "every output needs review by a qualified radiologist.")
# Never pip-installed by this module on Slicer 5.8 / 5.10: Slicer or the PyTorch extension provides them.
SLICER_BUNDLED = {"torch", "SimpleITK", "numpy", "Pillow", "pydicom", "requests"}
HEATMAP_COLOR_NODE_IDS = ("vtkMRMLColorTableNodeFileColdToHotRainbow.txt", "vtkMRMLColorTableNodeRainbow")


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


def _worker():
    """The background script ``Resources/inference_worker.py`` imported as a module (its helpers are shared)."""
    name = "BreastFusionInferenceWorker"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, str(MODULE_DIR / "Resources" / "inference_worker.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


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
and export the report.<br><br>
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
        loadFileType="VolumeFile",
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
    modelFolder: the trained models (MONAI bundle folder); useUSModel/useCTModel/useFusionModel pick models.
    cpuOnly: run on the CPU even when CUDA is available.
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
    modelFolder: pathlib.Path
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
        for placeWidget, selector in ((self.ui.rightNipplePlaceWidget, self.ui.rightNippleSelector),
                                      (self.ui.leftNipplePlaceWidget, self.ui.leftNippleSelector),
                                      (self.ui.massPlaceWidget, self.ui.massSelector),
                                      (self.ui.usLesionBoxPlaceWidget, self.ui.usLesionBoxSelector)):
            placeWidget.setMRMLScene(slicer.mrmlScene)
            placeWidget.placeMultipleMarkups = slicer.qSlicerMarkupsPlaceWidget.ForcePlaceSingleMarkup
            selector.connect("currentNodeChanged(vtkMRMLNode*)", placeWidget.setCurrentNode)
        self.ui.heatMapKindComboBox.addItems(["attention", "gradcam"])
        for label in (self.ui.usCropLabel, self.ui.ctCropLabel):
            label.setFixedSize(150, 150)
            label.scaledContents = True
        self.ui.resultsTableWidget.setHorizontalHeaderLabels(
            [_("Model"), _("Probability"), _("Threshold"), _("Decision"), _("Missing")])
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
        """Called when the application closes and the module widget is destroyed."""
        self.logic.cancelInference()
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
        """Follow the markups that the parameter node points at, and enable what can run."""
        self._observeMarkups()
        self._checkCanRun()

    def _observeMarkups(self) -> None:
        """Watch the mass and nipple points: moving one updates side / clock / distance."""
        wanted = []
        if self._parameterNode:
            wanted = [n for n in (self._parameterNode.massPoint, self._parameterNode.rightNipple,
                                  self._parameterNode.leftNipple) if n]
        for node in self._observedMarkups:
            if node not in wanted:
                self.removeObserver(node, slicer.vtkMRMLMarkupsNode.PointModifiedEvent, self._onMarkupMoved)
        for node in wanted:
            if node not in self._observedMarkups:
                self.addObserver(node, slicer.vtkMRMLMarkupsNode.PointModifiedEvent, self._onMarkupMoved)
        self._observedMarkups = wanted

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

    def onFindMass(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to find the mass."), waitCursor=True):
            proposal = self.logic.findMass(self._parameterNode)
            self.ui.statusLabel.text = _("{message} (score {score:.2f}: check the point and move it if needed)").format(
                message=proposal.message, score=proposal.score)
            self._onMarkupMoved()

    def onPreviewCrops(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to compute the crops."), waitCursor=True):
            crops = self.logic.computeCropPreviews(self._parameterNode)
            for key, label in (("us", self.ui.usCropLabel), ("ct", self.ui.ctCropLabel)):
                label.setPixmap(_pixmapFromArray(crops[key]) if key in crops else qt.QPixmap())
                label.toolTip = crops.get(key + "_note", "")

    def onRun(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to start the inference."), waitCursor=True):
            if not self.logic.ensureDependencies(askConfirmation=True):
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
        self.ui.statusLabel.text = _("Cancelling...")

    def onShowHeatMap(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to show the heat map."), waitCursor=True):
            model, modality = self.ui.heatMapModelComboBox.currentText.split(" / ")
            self.logic.showHeatMap(self._parameterNode, self._result, self._resultFolder, model, modality,
                                   self.ui.heatMapKindComboBox.currentText)

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

    def _onInferenceCompleted(self, returnCode: int, cancelled: bool) -> None:
        self._checkCanRun()
        if cancelled:
            self.ui.statusLabel.text = _("Cancelled.")
            return
        if returnCode != 0:
            self.ui.statusLabel.text = _("Inference failed (exit code {code}): see the log below.").format(code=returnCode)
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
                     entry.get("missing_modality") or ""]
            for column, text in enumerate(cells):
                table.setItem(row, column, qt.QTableWidgetItem(text))
        self.ui.heatMapModelComboBox.clear()
        for model, modalities in sorted(result.get("heatmaps", {}).items()):
            for modality in sorted(modalities):
                self.ui.heatMapModelComboBox.addItem(f"{model} / {modality}")
        self.ui.showHeatMapButton.enabled = self.ui.heatMapModelComboBox.count > 0
        self.ui.exportReportButton.enabled = True
        self.ui.disclaimerLabel.text = result.get("disclaimer") or DISCLAIMER
        self.ui.statusLabel.text = _("Done. Probabilities are model outputs for research, not a diagnosis.")


def _pixmapFromArray(pixels: np.ndarray) -> "qt.QPixmap":
    """A [0, 1] grey crop as a QPixmap for the preview labels."""
    grey = np.ascontiguousarray(np.clip(np.round(np.asarray(pixels, dtype=float) * 255.0), 0, 255).astype(np.uint8))
    if grey.ndim == 3:
        grey = np.ascontiguousarray(grey[..., 0])
    rows, cols = grey.shape
    image = qt.QImage(grey.tobytes(), cols, rows, cols, qt.QImage.Format_Grayscale8)
    return qt.QPixmap.fromImage(image.copy())


#
# BreastFusionInferenceProcess
#


class BreastFusionInferenceProcess:
    """A ``PythonSlicer`` process whose output is read by a thread and handed to the GUI thread by a QTimer.

    ``cancel`` kills the process tree: on some platforms ``PythonSlicer`` is a launcher whose child
    runs the script, so killing only the launcher would leave inference running.
    """

    POLL_MS = 200

    def __init__(self, command: List[str], environment: Optional[Dict[str, str]],
                 logCallback: Callable[[str], None], progressCallback: Callable[[int, str], None],
                 completedCallback: Callable[[int, bool], None]) -> None:
        self.command = command
        self.environment = environment
        self.logCallback = logCallback
        self.progressCallback = progressCallback
        self.completedCallback = completedCallback
        self.process = None
        self.queue = queue.Queue()
        self.thread = None
        self.cancelled = False
        self.returnCode = None

    def start(self) -> None:
        logging.info("BreastFusion: %s", " ".join(self.command))
        self.process = slicer.util.launchConsoleProcess(self.command, updateEnvironment=self.environment)
        self.thread = threading.Thread(target=self._readOutput, daemon=True)
        self.thread.start()
        qt.QTimer.singleShot(self.POLL_MS, self._poll)

    def _readOutput(self) -> None:
        for line in iter(self.process.stdout.readline, ""):
            self.queue.put(line.rstrip("\r\n"))
        self.process.wait()

    def _drain(self) -> None:
        while True:
            try:
                line = self.queue.get_nowait()
            except queue.Empty:
                return
            parsed = _worker().parse_progress_line(line)
            if parsed is not None:
                self.progressCallback(*parsed)
            else:
                self.logCallback(line)

    def _poll(self) -> None:
        self._drain()
        if self.thread.is_alive():
            qt.QTimer.singleShot(self.POLL_MS, self._poll)
            return
        self._drain()
        self.returnCode = self.process.returncode
        self.completedCallback(self.returnCode, self.cancelled)

    def isRunning(self) -> bool:
        return self.process is not None and self.returnCode is None

    def cancel(self) -> None:
        if not self.isRunning() or self.process.poll() is not None:
            return
        self.cancelled = True
        try:
            import psutil

            parent = psutil.Process(self.process.pid)
            for child in parent.children(recursive=True):
                child.kill()
        except Exception as error:  # psutil missing or the process already gone
            logging.debug("BreastFusion: child processes not killed (%s)", error)
        self.process.kill()

    def wait(self, timeoutSeconds: float = 600.0) -> int:
        """Block (processing Qt events) until the process ends; for tests and batch scripts."""
        import time

        deadline = time.time() + timeoutSeconds
        while self.isRunning():
            if time.time() > deadline:
                self.cancel()
                raise TimeoutError(f"BreastFusion inference still running after {timeoutSeconds:.0f} s: cancelled")
            slicer.app.processEvents()
            time.sleep(0.05)
        return self.returnCode


#
# BreastFusionLogic
#


class BreastFusionLogic(ScriptedLoadableModuleLogic):
    """Everything the panel does, usable without it (Python console, batch scripts, tests).

    Converts MRML nodes to numpy arrays and geometry, calls BreastFusionLib, and writes results
    back into nodes. BreastFusionLib is imported inside the methods, after ``ensureDependencies``,
    so that the module loads even before its dependencies are installed.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.inferenceProcess = None

    def getParameterNode(self) -> BreastFusionParameterNode:
        return BreastFusionParameterNode(super().getParameterNode())

    # --- dependencies -----------------------------------------------------------------------------

    REQUIRED_IMPORTS = {"scipy": "scipy", "PIL": "Pillow", "SimpleITK": "SimpleITK", "pydicom": "pydicom",
                        "torch": "torch", "monai": "monai"}

    def missingDependencies(self) -> List[str]:
        """Distribution names whose import is missing."""
        return [dist for name, dist in self.REQUIRED_IMPORTS.items() if importlib.util.find_spec(name) is None]

    def ensureDependencies(self, askConfirmation: bool = True) -> bool:
        """Install what is missing, after asking; never called at import. False when the user declined."""
        missing = self.missingDependencies()
        if not missing:
            return True
        if "torch" in missing:
            try:
                import PyTorchUtils
            except ImportError:
                raise RuntimeError(_("BreastFusion needs PyTorch: install the PyTorch extension from the "
                                     "Extensions Manager, restart Slicer and try again.")) from None
            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=askConfirmation) is None:
                return False
        requirements = str(MODULE_DIR / "Resources" / "requirements.txt")
        if hasattr(slicer, "packaging"):  # Slicer >= 5.12: prompt, progress and restart detection built in
            import slicer.packaging

            slicer.packaging.pip_ensure(slicer.packaging.load_requirements(requirements), requester="BreastFusion")
            return True
        # Slicer 5.8 / 5.10: never reinstall what Slicer or the PyTorch extension ships (see requirements.txt).
        missingNow = set(self.missingDependencies())
        lines = [line.strip() for line in open(requirements) if line.strip() and not line.lstrip().startswith("#")]
        toInstall = [r for r in lines if _requirementName(r) in missingNow and _requirementName(r) not in SLICER_BUNDLED]
        if toInstall:
            if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                    _("BreastFusion needs these Python packages, which will now be downloaded and installed: {packages}. "
                      "This can take several minutes.").format(packages=", ".join(toInstall))):
                return False
            for requirement in toInstall:
                slicer.util.pip_install(requirement)
        stillMissing = self.missingDependencies()
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
        if not markupsNode or markupsNode.GetNumberOfControlPoints() < 1:
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
        from BreastFusionLib.localization.nipples import find_nipples

        results = find_nipples(self.ctVolumeFromNode(parameterNode.ctVolume))
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
        """Propose the mass centre in the reported sector (side, clock, distance) and place the mass point there."""
        from BreastFusionLib.localization.clock import ClockPosition
        from BreastFusionLib.localization.nipples import propose_mass
        from BreastFusionLib.localization.parsing import parse_clock, parse_side

        side = parse_side(parameterNode.side)
        position = ClockPosition(side, parse_clock(parameterNode.clock), float(parameterNode.distanceMm))
        proposal = propose_mass(self.ctVolumeFromNode(parameterNode.ctVolume), self._nipple(parameterNode, side), position)
        node = self._markupsNode(parameterNode.massPoint, "Mass", (1.0, 0.1, 0.1))
        self._setPoint(node, proposal.point_ras, "Mass")
        parameterNode.massPoint = node
        slicer.modules.markups.logic().JumpSlicesToLocation(*[float(v) for v in proposal.point_ras], True)
        return proposal

    def updateClockFromMass(self, parameterNode: BreastFusionParameterNode) -> Optional[str]:
        """Side, clock and distance of the mass point (from the nipple of its breast) into the parameter node.

        Returns a sentence describing the position, or None while a point is missing.
        """
        from BreastFusionLib.localization.clock import clock_from_point
        from BreastFusionLib.localization.parsing import format_clock

        mass = self._point(parameterNode.massPoint)
        nipples = {side: self._point(getattr(parameterNode, side + "Nipple")) for side in ("right", "left")}
        found = {side: point for side, point in nipples.items() if point is not None}
        if mass is None or not found:
            return None
        side = parameterNode.side if parameterNode.side in found else next(iter(found))
        if len(found) == 2:  # the nearer nipple's breast
            side = min(found, key=lambda s: float(np.linalg.norm(found[s] - mass)))
        position = clock_from_point(found[side], mass, side)
        parameterNode.side = side
        parameterNode.clock = format_clock(position.hour)
        parameterNode.distanceMm = round(min(position.distance_mm, 250.0), 1)
        depth = float(found[side][1] - mass[1])
        return _("{side} breast, {clock} o'clock, {distance:.0f} mm from the nipple, {depth:.0f} mm deep").format(
            side=side.capitalize(), clock=format_clock(position.hour), distance=position.distance_mm, depth=depth)

    # --- crops preview ------------------------------------------------------------------------------

    def computeCropPreviews(self, parameterNode: BreastFusionParameterNode, folder: Optional[str] = None) -> Dict:
        """The 300x300 crops the models will see: {"us": array, "ct": array} for what is available.

        The US crop goes through the same PNG file and loader as the background inference.
        """
        crops = {}
        p = parameterNode
        if p.usVolume and p.usLesionBox:
            from BreastFusionLib.us.crop import us_lesion_crop
            from BreastFusionLib.us.io import load_us_image

            folder = pathlib.Path(folder or slicer.util.tempDirectory("BreastFusionPreview"))
            path = folder / "us_preview.png"
            _worker().write_us_png(self.usArrayFromNode(p.usVolume), path)
            crop = us_lesion_crop(load_us_image(path), box=self.usBoxXYXY(p.usVolume, p.usLesionBox))
            crops["us"] = crop.pixels
            crops["us_note"] = _("{count} overlay pixels removed").format(count=crop.overlay_pixels)
        mass = self._point(p.massPoint)
        if p.ctVolume and mass is not None:
            from BreastFusionLib.ct.crop import ct_axial_crop

            crop = ct_axial_crop(self.ctVolumeFromNode(p.ctVolume), mass, lesion_diameter_mm=p.lesionDiameterMm or None)
            crops["ct"] = crop.pixels
            crops["ct_note"] = _("axial slice {k} of the CT as BreastFusionLib orients it").format(k=crop.slice_index)
        if not crops:
            raise ValueError(_("Nothing to crop: give the US image and its lesion box, and/or the CT and the mass point."))
        return crops

    # --- inference ----------------------------------------------------------------------------------

    def selectedModels(self, parameterNode: BreastFusionParameterNode) -> List[str]:
        p = parameterNode
        models = [name for name, use in (("us", p.useUSModel), ("ct", p.useCTModel), ("fusion", p.useFusionModel)) if use]
        if not models:
            raise ValueError(_("Select at least one model (US, CT or fusion)."))
        return models

    def writeInferenceInputs(self, parameterNode: BreastFusionParameterNode, folder: pathlib.Path) -> Dict:
        """Write the arrays and ``inputs.json`` that ``inference_worker.py`` reads; return the json."""
        p = parameterNode
        folder.mkdir(parents=True, exist_ok=True)
        spec = {"version": 1, "us": None, "ct": None, "location": None,
                "lesion_diameter_mm": float(p.lesionDiameterMm) or None}
        if p.usVolume:
            np.save(folder / "us.npy", self.usArrayFromNode(p.usVolume))
            box = self.usBoxXYXY(p.usVolume, p.usLesionBox) if p.usLesionBox else None
            spec["us"] = {"array": "us.npy", "box_xyxy": box}
        if p.ctVolume:
            volume = self.ctVolumeFromNode(p.ctVolume)
            np.save(folder / "ct.npy", volume.hu)
            spec["ct"] = {"array": "ct.npy", "ijk_to_ras": volume.ijk_to_ras.tolist()}
            mass = self._point(p.massPoint)
            if mass is not None:
                spec["location"] = {"point_ras": [float(v) for v in mass]}
            elif p.clock.strip():
                spec["location"] = {"side": p.side, "clock": p.clock.strip(), "distance_mm": float(p.distanceMm)}
            else:
                raise ValueError(_("Locate the mass on the CT: place the mass point, or give side, clock and distance."))
        (folder / _worker().INPUTS_FILE).write_text(json.dumps(spec, indent=2))
        return spec

    def inferenceCommand(self, inputFolder: pathlib.Path, outputFolder: pathlib.Path, modelFolder: Optional[str],
                         models: List[str], cpuOnly: bool, dryRun: bool = False) -> List[str]:
        python = shutil.which("PythonSlicer")
        if python is None:
            raise RuntimeError(_("PythonSlicer was not found next to Slicer: the installation looks incomplete."))
        import BreastFusionLib

        libraryParent = str(pathlib.Path(BreastFusionLib.__file__).resolve().parent.parent)
        command = [python, str(MODULE_DIR / "Resources" / "inference_worker.py"), "--input", str(inputFolder),
                   "--out", str(outputFolder), "--models", ",".join(models), "--python-path", libraryParent]
        if modelFolder:
            command += ["--bundle", str(modelFolder)]
        if cpuOnly:
            command.append("--cpu")
        if dryRun:
            command.append("--dry-run")
        return command

    def startInference(self, parameterNode: BreastFusionParameterNode,
                       logCallback: Optional[Callable[[str], None]] = None,
                       progressCallback: Optional[Callable[[int, str], None]] = None,
                       completedCallback: Optional[Callable[[int, bool], None]] = None,
                       dryRun: bool = False) -> pathlib.Path:
        """Write the inputs and start the background process; returns the output folder (result.json lands there)."""
        if self.isInferenceRunning():
            raise RuntimeError(_("An inference is already running: wait for it or cancel it."))
        modelFolder = str(parameterNode.modelFolder) if parameterNode.modelFolder else ""
        if not dryRun and (not modelFolder or modelFolder == "." or not os.path.isdir(modelFolder)):
            raise ValueError(_("Choose the folder of the trained models (the BreastFusion MONAI bundle)."))
        work = pathlib.Path(slicer.util.tempDirectory("BreastFusion"))
        self.writeInferenceInputs(parameterNode, work / "input")
        command = self.inferenceCommand(work / "input", work / "output", modelFolder, self.selectedModels(parameterNode),
                                        parameterNode.cpuOnly, dryRun)
        self.inferenceProcess = BreastFusionInferenceProcess(
            command, {"CUDA_VISIBLE_DEVICES": "-1"} if parameterNode.cpuOnly else None,
            logCallback or (lambda text: logging.info("BreastFusion: %s", text)),
            progressCallback or (lambda percent, text: logging.info("BreastFusion: %d%% %s", percent, text)),
            completedCallback or (lambda code, cancelled: None))
        self.inferenceProcess.start()
        return work / "output"

    def isInferenceRunning(self) -> bool:
        return self.inferenceProcess is not None and self.inferenceProcess.isRunning()

    def cancelInference(self) -> None:
        if self.inferenceProcess is not None:
            self.inferenceProcess.cancel()

    def waitForInference(self, timeoutSeconds: float = 600.0) -> int:
        if self.inferenceProcess is None:
            raise RuntimeError(_("No inference was started."))
        return self.inferenceProcess.wait(timeoutSeconds)

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

    def showHeatMap(self, parameterNode: BreastFusionParameterNode, result: Dict, folder, model: str, modality: str,
                    kind: str = "attention", opacity: float = 0.5):
        """Show one heat map as a coloured overlay over its image; returns the overlay volume node.

        US: a volume in the geometry of the US volume. CT: a one-slice volume on axial slice
        ``ct_slice_index`` of the CT as BreastFusionLib oriented it (``ct_geometry.json``). Attention is
        windowed from its lowest to its highest value in the crop, as in the overlay PNGs.
        """
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
            geometry = json.loads((pathlib.Path(folder) / _worker().CT_GEOMETRY_FILE).read_text())
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
        low, high = 0.0, 1.0  # Grad-CAM is already scaled 0..1
        if kind == "attention" and heat.max() > 0:  # gates sit near 0.5: show their range inside the crop (heat > 0)
            low, high = float(heat[heat > 0].min()), float(heat.max())
        display.SetWindowLevelMinMax(low, max(high, low + 1e-6))
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
        roi.SetXYZ(*((corners[0, :3] + corners[1, :3]) / 2.0))
        roi.SetRadiusXYZ(*(np.abs(corners[1, :3] - corners[0, :3]) / 2.0))
        parameterNode.usLesionBox = roi
        return roi


def _requirementName(requirement: str) -> str:
    """'monai[fire]>=1.4 ; python_version...' -> 'monai'."""
    name = requirement.split(";")[0].strip()
    for separator in "[<>=!~ ":
        name = name.split(separator)[0]
    return name


#
# BreastFusionTest
#


class BreastFusionTest(ScriptedLoadableModuleTest):
    """The full workflow on the synthetic sample case.

    Inference runs for real when ``BreastFusionLib.commands.predict`` exists and the environment
    variable ``BREASTFUSION_TEST_BUNDLE`` names a trained model folder; otherwise the background
    process runs in ``--dry-run`` mode (inputs written, predict skipped) and the test says so.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_BreastFusionWorkflow()

    def test_BreastFusionWorkflow(self):
        logic = BreastFusionLogic()
        if not logic.ensureDependencies(askConfirmation=False):
            self.skipTest("BreastFusion dependencies are not installed")
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
        proposal = logic.findMass(p)
        truth = np.array([float(v) for v in case["ct_point_ras"].split(",")])
        self.assertLess(float(np.linalg.norm(proposal.point_ras - truth)), 15.0, proposal.message)
        description = logic.updateClockFromMass(p)
        self.assertIn(case["ct_side"].capitalize(), description)

        self.delayDisplay("US lesion box and crop previews")
        box = [float(v) for v in case["us_box"].split(",")]
        logic.addUSBoxFromPixels(p, box)
        np.testing.assert_allclose(logic.usBoxXYXY(p.usVolume, p.usLesionBox), box, atol=1.0)
        crops = logic.computeCropPreviews(p)
        self.assertEqual(crops["us"].shape[:2], (300, 300))
        self.assertEqual(crops["ct"].shape[:2], (300, 300))

        bundle = os.environ.get("BREASTFUSION_TEST_BUNDLE", "")
        realRun = bool(bundle) and importlib.util.find_spec("BreastFusionLib.commands.predict") is not None
        p.modelFolder = pathlib.Path(bundle or ".")
        p.cpuOnly = True
        self.delayDisplay("Background inference" + ("" if realRun else " (dry run: no predict command or no BREASTFUSION_TEST_BUNDLE)"))
        progress = []
        folder = logic.startInference(p, progressCallback=lambda percent, text: progress.append(percent), dryRun=not realRun)
        self.assertEqual(logic.waitForInference(600.0), 0)
        self.assertEqual(progress[-1], 100)
        self.assertTrue((folder / "ct_geometry.json").is_file())
        argv = json.loads((folder / "predict_argv.json").read_text())
        self.assertTrue(any(a.startswith("--point=") for a in argv))
        self.assertTrue(any(a.startswith("--us-box=") for a in argv))
        if not realRun:
            self.delayDisplay("Dry run passed; set BREASTFUSION_TEST_BUNDLE to test predict, heat maps and the report")
            return

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
        self.delayDisplay("Test passed")
