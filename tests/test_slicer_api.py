"""The Slicer module uses only Slicer API checked in Slicer's own sources (tests/slicer_api.json), without Slicer.

tests/slicer_api.py reads BreastFusion.py and its .ui; docs/SLICER.md, section 'The Slicer API check' says how to extend the list.
"""

import json

import pytest
from slicer_api import HOW_TO_ADD, MODULE_PY, UI_FILE, find_entry, load_api, module_problems, usages

API = load_api()
UI = UI_FILE.read_text()


# A widget class whose self.ui holds the widgets of BreastFusion.ui, as in the module.
WIDGET = "class W:\n    def setup(self):\n        self.ui = None\n    def f(self):\n"


def _problems(snippet: str) -> list:
    return module_problems(snippet, UI, API)


def test_breastfusion_module_uses_only_verified_slicer_api():
    found = module_problems(api=API)
    assert not found, "\n".join(found) + "\n\n" + HOW_TO_ADD


def test_qimage_from_raw_bytes_is_reported_as_not_existing():
    snippet = "import qt\ndata = bytes(100)\nimage = qt.QImage(data, 10, 10, 10, qt.QImage.Format_Grayscale8)\n"
    found = _problems(snippet)
    assert len(found) == 1, found
    assert "qt.QImage" in found[0] and "(_, _, _, _, _)" in found[0] and "typesystem_gui.xml" in found[0]
    assert "tests/slicer_api.json" in HOW_TO_ADD and "source" in HOW_TO_ADD


@pytest.mark.parametrize("snippet, reported", [
    ("import slicer\nslicer.util.loadUIFile('x.ui')\n", "slicer.util.loadUIFile"),
    ("import slicer\nslicer.util.tempDirectory('a', 'b', 'c', 'd')\n", "slicer.util.tempDirectory"),
    ("import ctk\nx = ctk.ctkPathLineEdit.Directories\n", "ctk.ctkPathLineEdit.Directories"),
    ("import slicer\nx = slicer.vtkMRMLMarkupsNode.PointMovedEvent\n", "slicer.vtkMRMLMarkupsNode.PointMovedEvent"),
    (WIDGET + "        self.ui.runButton.connect('clicked()', print)\n", "signal QPushButton.clicked()"),
    (WIDGET + "        self.ui.usCropLabel.setImage(None)\n", "QLabel.setImage"),
    (WIDGET + "        self.ui.modelFolderPathLineEdit.directory = ''\n", "ctkPathLineEdit.directory"),
    ("def f(node):\n    node.SetNthFiducialPositionFromArray(0, [0, 0, 0])\n", "?.SetNthFiducialPositionFromArray"),
    ("import slicer\nn = slicer.mrmlScene.AddNewNodeByClass('vtkMRMLMarkupsFiducialNode')\nn.SetLocked(1)\n",
     "vtkMRMLMarkupsFiducialNode.SetLocked"),
])
def test_a_usage_missing_from_the_list_is_reported(snippet, reported):
    found = _problems(snippet)
    assert any(reported in message for message in found), found


def test_verified_replacements_for_the_known_defects_are_allowed():
    snippet = (
        "import qt, slicer, subprocess\n"
        "label = qt.QLabel()\n"
        "label.setPixmap(qt.QPixmap('/tmp/crop.png'))\n"
        "env = slicer.util.startupEnvironment()\n"
        "node = slicer.mrmlScene.AddNewNodeByClass('vtkMRMLMarkupsFiducialNode', 'Mass')\n"
        "node.SetMaximumNumberOfControlPoints(1)\n"
        "if node.GetNthControlPointPositionStatus(0) == slicer.vtkMRMLMarkupsNode.PositionDefined:\n"
        "    pass\n"
        "events = (slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent)\n"
        "testing = slicer.app.testingEnabled()\n"
    )
    found = [m for m in _problems(snippet) if "qt.QLabel" not in m]  # a QLabel built in code is not listed
    assert not found, found


def test_the_extractor_resolves_widgets_nodes_and_inherited_members():
    keys = {u.key for u in usages(MODULE_PY.read_text(), UI, API)}
    expected = {
        "QPushButton.connect", "signal QPushButton.clicked(bool)",  # self.ui.<name> -> class in the .ui
        "qSlicerMarkupsPlaceWidget.placeMultipleMarkups",  # a loop over (self.ui.a, self.ui.b) pairs
        "signal qMRMLNodeComboBox.currentNodeChanged(vtkMRMLNode*)",
        "vtkMRMLScalarVolumeNode.GetIJKToRASMatrix",  # a parameter-node field -> its annotation
        "vtkMRMLMarkupsROINode.SetCenterWorld",  # AddNewNodeByClass("vtkMRMLMarkupsROINode")
        "qSlicerScriptedLoadableModule.title",  # self.parent of a ScriptedLoadableModule
        "parameterNodeWrapper.connectGui", "QLayout.addWidget", "vtkSlicerMarkupsLogic.JumpSlicesToLocation",
        "wrapper bind bool -> QCheckBox", "signal ctkPathLineEdit.currentPathChanged(QString)", "ui slot qSlicerMarkupsPlaceWidget.setMRMLScene(vtkMRMLScene*)",
    }
    assert expected <= keys, expected - keys


def test_every_entry_names_its_source_or_why_it_is_unverified():
    names = [e["name"] for e in API["entries"]]
    assert len(names) == len(set(names)), "duplicate entries"
    for entry in API["entries"]:
        if entry.get("verified"):
            source = entry.get("source") or {}
            cited = {"repo", "ref", "path", "line", "text"} <= set(source) or {"url", "text"} <= set(source)
            assert cited, f"{entry['name']}: a verified entry needs source {{repo, ref, path, line, text}} or {{url, text}}"
        else:
            assert entry.get("reason"), f"{entry['name']}: an unverified entry needs a reason"
        for shape in entry.get("calls", []) + list(entry.get("rejected", {})):
            assert shape.startswith("(") and shape.endswith(")"), (entry["name"], shape)
    for name, cls in API["classes"].items():
        for base in cls["bases"]:
            assert base in API["classes"] or base.startswith("unittest."), f"{name}: base {base} is not listed"


def test_a_listed_entry_covers_a_member_through_base_classes():
    from slicer_api import Usage

    entry = find_entry(Usage("QPushButton.enabled", None, 1), API)
    assert entry is not None and entry["name"] == "QWidget.enabled"
    assert json.dumps(entry["source"])  # cited
