"""Just enough of 3D Slicer's Python API (slicer, qt, ctk, vtk) to import BreastFusion.py and run its logic
without Slicer: what each call does here mirrors what the module needs from it, nothing more. Names the
module uses are checked against Slicer's own sources separately (tests/slicer_api.json)."""

from __future__ import annotations

import os
import sys
import types
import unittest
from pathlib import Path


class Recorder:
    """Calls made to the fake Slicer, for the tests to inspect."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.timers: list = []  # callables handed to QTimer.singleShot, run by run_timers()
        self.confirm = True  # answer of confirmOkCancelDisplay
        self.testing = False

    def run_timers(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            pending, self.timers = self.timers, []
            for callback in pending:
                callback()


class MarkupsNode:
    """A markups fiducial node: control points with a position status, the maximum point count, observers."""

    PositionDefined, PositionPreview = 2, 1

    def __init__(self) -> None:
        self.points: list[tuple[list[float], int]] = []
        self.maximum = -1

    def SetMaximumNumberOfControlPoints(self, count):
        self.maximum = count

    def GetNumberOfControlPoints(self):
        return len(self.points)

    def GetNumberOfDefinedControlPoints(self):
        return sum(status == self.PositionDefined for _, status in self.points)

    def GetNthControlPointPositionStatus(self, index):
        return self.points[index][1]

    def GetNthControlPointPositionWorld(self, index, position):
        position[:] = self.points[index][0]

    def RemoveAllControlPoints(self):
        self.points = []


def install(recorder: Recorder, tmp: Path, with_packaging: bool) -> None:
    """Put fake slicer/qt/ctk/vtk modules into sys.modules (remove them with ``uninstall``)."""
    qt = types.ModuleType("qt")
    qt.QTimer = types.SimpleNamespace(singleShot=lambda ms, callback: recorder.timers.append(callback))
    ctk = types.ModuleType("ctk")
    ctk.ctkPathLineEdit = types.SimpleNamespace(Dirs=1)
    vtk = types.ModuleType("vtk")
    vtk.vtkCommand = types.SimpleNamespace(ModifiedEvent="ModifiedEvent")

    slicer = types.ModuleType("slicer")
    slicer.__path__ = []
    events = ("PointPositionDefinedEvent", "PointEndInteractionEvent", "PointRemovedEvent", "PointModifiedEvent")
    slicer.vtkMRMLMarkupsNode = types.SimpleNamespace(PositionDefined=MarkupsNode.PositionDefined, **{e: e for e in events})
    slicer.vtkMRMLMarkupsFiducialNode = type("vtkMRMLMarkupsFiducialNode", (MarkupsNode,), {})
    slicer.vtkMRMLMarkupsROINode = type("vtkMRMLMarkupsROINode", (), {})
    slicer.vtkMRMLScalarVolumeNode = type("vtkMRMLScalarVolumeNode", (), {})
    slicer.app = types.SimpleNamespace(connect=lambda *a: None, testingEnabled=lambda: recorder.testing,
                                       processEvents=lambda: recorder.run_timers(), temporaryPath=str(tmp))

    util = types.ModuleType("slicer.util")

    class VTKObservationMixin:
        def __init__(self):
            self.observations = []

        def addObserver(self, node, event, method):
            self.observations.append((node, event))

        def removeObserver(self, node, event, method):
            self.observations.remove((node, event))

    util.VTKObservationMixin = VTKObservationMixin
    util.startupEnvironment = lambda: dict(os.environ)
    util.tempDirectory = lambda key="": str(Path(__import__("tempfile").mkdtemp(prefix=key, dir=tmp)))
    util.confirmOkCancelDisplay = lambda text, *args, **kwargs: recorder.calls.append(("confirm", text)) or recorder.confirm
    util.pip_install = lambda requirements: recorder.calls.append(("pip_install", requirements))
    slicer.util = util

    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.Choice = wrapper.WithinRange = lambda *args: None
    slicer.mrmlScene = types.SimpleNamespace(Clear=lambda *args: None)
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic"):
        setattr(scripted, name, type(name, (), {"__init__": lambda self, *args: None}))

    class ScriptedLoadableModuleTest(unittest.TestCase):  # Slicer's is a unittest.TestCase too
        def delayDisplay(self, message, *args):
            recorder.calls.append(("delayDisplay", message))

    scripted.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest
    modules = {"qt": qt, "ctk": ctk, "vtk": vtk, "slicer": slicer, "slicer.util": util, "slicer.i18n": i18n,
               "slicer.parameterNodeWrapper": wrapper, "slicer.ScriptedLoadableModule": scripted}
    if with_packaging:  # Slicer >= 5.12: a real file, so that `import slicer.packaging` binds it as in Slicer
        package = tmp / "fake_slicer_package"
        package.mkdir(exist_ok=True)
        (package / "packaging.py").write_text(
            "import slicer\n\ndef pip_ensure(requirements, **kwargs):\n"
            "    slicer.recorder.calls.append(('pip_ensure', requirements, kwargs))\n")
        slicer.__path__ = [str(package)]
        slicer.recorder = recorder
    sys.modules.update(modules)


def uninstall() -> None:
    for name in ("qt", "ctk", "vtk", "slicer", "slicer.util", "slicer.i18n", "slicer.parameterNodeWrapper",
                 "slicer.ScriptedLoadableModule", "slicer.packaging", "BreastFusionModuleUnderTest"):
        sys.modules.pop(name, None)
