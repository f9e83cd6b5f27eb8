"""The 3D Slicer module checked without Slicer (Slicer cannot be installed on the build machines).

- every ``self.ui.<name>`` the module uses exists in ``BreastFusion.ui`` with the class its name promises;
- every parameter-node field is bound in the .ui (``SlicerParameterName``) to a widget that can show it;
- every BreastFusionLib file the module and its worker import (transitively) is packaged by CMake;
- the module and the worker parse as Python 3.12 (Slicer 5.10+), and as 3.9 so that Slicer 5.8 can load
  the module and tell the user it needs 5.10; BreastFusionLib parses as 3.12.
The worker itself is tested in test_serving.py and, in a Slicer-like Python, in test_slicer_python.py.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "BreastFusion"
MODULE_PY = MODULE_DIR / "BreastFusion.py"
WORKER_PY = MODULE_DIR / "Resources" / "inference_worker.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "BreastFusion.ui"
MODULE_CMAKE = MODULE_DIR / "CMakeLists.txt"
TOP_CMAKE = ROOT / "CMakeLists.txt"

# Widget class promised by the end of a widget's name (longest suffix first).
SUFFIX_CLASSES = [
    ("PathLineEdit", "ctkPathLineEdit"), ("CollapsibleButton", "ctkCollapsibleButton"),
    ("PlaceWidget", "qSlicerMarkupsPlaceWidget"), ("TableWidget", "QTableWidget"), ("TextEdit", "QPlainTextEdit"),
    ("ProgressBar", "QProgressBar"), ("ComboBox", "QComboBox"), ("CheckBox", "QCheckBox"), ("SpinBox", "QDoubleSpinBox"),
    ("LineEdit", "QLineEdit"), ("Selector", "qMRMLNodeComboBox"), ("Button", "QPushButton"), ("Label", "QLabel"),
]


def _ui_widgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI_FILE).getroot().iter("widget")}


def _parameter_name(widget: ET.Element) -> str | None:
    for prop in widget.findall("property"):
        if prop.get("name") == "SlicerParameterName":
            return prop.findtext("string")
    return None


def _module_tree() -> ast.Module:
    return ast.parse(MODULE_PY.read_text(), filename=str(MODULE_PY))


def _parameter_fields() -> dict[str, str]:
    """Field name -> annotation source of the @parameterNodeWrapper class."""
    for node in _module_tree().body:
        if isinstance(node, ast.ClassDef) and any(getattr(d, "id", None) == "parameterNodeWrapper" for d in node.decorator_list):
            return {s.target.id: ast.unparse(s.annotation) for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("no @parameterNodeWrapper class in BreastFusion.py")


# --- .ui <-> Python ------------------------------------------------------------------------------


def test_every_ui_name_used_by_the_module_exists_with_the_expected_class():
    widgets = _ui_widgets()
    used = {n.attr for n in ast.walk(_module_tree()) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Attribute) and n.value.attr == "ui"
            and isinstance(n.value.value, ast.Name) and n.value.value.id == "self"}
    assert len(used) > 20, used
    for name in sorted(used):
        assert name in widgets, f"self.ui.{name} is used in BreastFusion.py but missing from BreastFusion.ui"
        expected = next((cls for suffix, cls in SUFFIX_CLASSES if (name[0].upper() + name[1:]).endswith(suffix)), None)
        assert expected is not None, f"self.ui.{name}: name has no known widget suffix"
        assert widgets[name].get("class") == expected, f"{name} is a {widgets[name].get('class')}, expected {expected}"


def test_results_table_declares_as_many_columns_as_the_module_labels_and_fills():
    columns = int(_ui_widgets()["resultsTableWidget"].find("property[@name='columnCount']/number").text)
    calls = [n for n in ast.walk(_module_tree()) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == "setHorizontalHeaderLabels"]
    assert len(calls) == 1 and len(calls[0].args[0].elts) == columns == 6  # ... "Missing", "Ensemble spread"
    cells = next(n for n in ast.walk(_module_tree()) if isinstance(n, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "cells" for t in n.targets))
    assert len(cells.value.elts) == columns


# Fields the module keeps in sync with their widget by hand: the wrapper's Path connector shows an unset path as ".".
SYNCED_BY_HAND = {"modelFolder": ("modelFolderPathLineEdit", "currentPathChanged(QString)")}


def test_model_folder_is_a_plain_string_synced_by_hand_so_an_unset_folder_shows_empty():
    fields = _parameter_fields()
    source = MODULE_PY.read_text()
    for field, (widget, signal) in SYNCED_BY_HAND.items():
        assert fields[field] == "str", fields[field]
        assert re.search(rf'\b{field}: str = ""', source)
        assert f'self.ui.{widget}.connect("{signal}"' in source and f"self.ui.{widget}.currentPath = " in source
        assert _parameter_name(_ui_widgets()[widget]) is None  # not bound by the wrapper


def test_every_parameter_node_field_is_bound_to_a_fitting_widget():
    fields = {name: annotation for name, annotation in _parameter_fields().items() if name not in SYNCED_BY_HAND}
    bound: dict[str, list[ET.Element]] = {}
    for widget in _ui_widgets().values():
        name = _parameter_name(widget)
        if name is not None:
            bound.setdefault(name, []).append(widget)
    assert set(bound) == set(fields), f"unbound fields {set(fields) - set(bound)}, unknown names {set(bound) - set(fields)}"
    for field, annotation in fields.items():
        assert len(bound[field]) == 1, f"{field} is bound to several widgets"
        widget = bound[field][0]
        cls = widget.get("class")
        if annotation.startswith("vtkMRML"):
            node_types = [s.text for s in widget.iter("string") if s.text and s.text.startswith("vtkMRML")]
            assert cls == "qMRMLNodeComboBox" and annotation in node_types, (field, cls, node_types)
        elif annotation == "bool":
            assert cls == "QCheckBox", (field, cls)
        elif "float" in annotation:
            assert cls == "QDoubleSpinBox", (field, cls)  # the wrapper matches the exact class, not ctkDoubleSpinBox
        elif "Choice" in annotation:
            assert cls == "QComboBox", (field, cls)
        elif annotation == "str":
            assert cls == "QLineEdit", (field, cls)
        elif annotation == "pathlib.Path":
            assert cls == "ctkPathLineEdit", (field, cls)
        else:
            raise AssertionError(f"{field}: no widget rule for annotation {annotation}")


def test_ui_declares_its_custom_widgets_and_scene_connections():
    root = ET.parse(UI_FILE).getroot()
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    qt_classes = {c for c in used if c.startswith("Q")}
    assert used - qt_classes <= declared, used - qt_classes - declared
    receivers = {c.findtext("receiver") for c in root.iter("connection") if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    mrml = {w.get("name") for w in root.iter("widget") if w.get("class") in ("qMRMLNodeComboBox", "qSlicerMarkupsPlaceWidget")}
    assert mrml <= receivers, mrml - receivers


# --- packaging ---------------------------------------------------------------------------------------


def _imported_lib_modules(path: Path) -> set[str]:
    """BreastFusionLib modules imported by one file, including ``import_module(f"BreastFusionLib.pkg.{x}")``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "BreastFusionLib"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "BreastFusionLib":
            found.add(node.module)
            for alias in node.names:  # "from BreastFusionLib.x import y" where y is a module
                if (ROOT / Path(*node.module.split("."), alias.name + ".py")).is_file():
                    found.add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            prefix = str(node.values[0].value)
            if prefix.startswith("BreastFusionLib.") and prefix.endswith("."):
                package = ROOT / Path(*prefix.strip(".").split("."))
                found |= {prefix + p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    return found


def _module_file(name: str) -> Path:
    base = ROOT / Path(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _transitive_lib_files() -> set[str]:
    todo = _imported_lib_modules(MODULE_PY) | _imported_lib_modules(WORKER_PY) | {"BreastFusionLib.cli"}
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo |= {".".join(parts[:i]) for i in range(1, len(parts))}  # parent packages (__init__.py)
        todo |= _imported_lib_modules(_module_file(name))
    return {str(_module_file(n).relative_to(ROOT)) for n in seen}


def _cmake_packaged_lib_files() -> set[str]:
    """Files the module CMakeLists.txt packages: its GLOB_RECURSE patterns and explicit BreastFusionLib entries."""
    text = MODULE_CMAKE.read_text()
    packaged = set()
    for pattern in re.findall(r"\$\{BREASTFUSIONLIB_SOURCE_DIR\}/(BreastFusionLib/\S+)", text):
        packaged |= {str(p.relative_to(ROOT)) for p in ROOT.glob("BreastFusionLib/**/*") if fnmatch.fnmatch(str(p.relative_to(ROOT)), pattern)}
    packaged |= set(re.findall(r"^\s*(?:\.\./)?(BreastFusionLib/\S+\.py)\s*$", text, re.M))
    return packaged


def test_cmake_packages_every_breastfusionlib_file_the_module_needs():
    needed = _transitive_lib_files()
    assert {"BreastFusionLib/__init__.py", "BreastFusionLib/cli.py", "BreastFusionLib/localization/nipples.py",
            "BreastFusionLib/synthetic/cohort.py", "BreastFusionLib/commands/locate.py"} <= needed
    missing = needed - _cmake_packaged_lib_files()
    assert not missing, f"not packaged by BreastFusion/CMakeLists.txt: {sorted(missing)}"


def test_cmake_packages_the_serving_config_where_breastfusionlib_looks_for_it():
    from BreastFusionLib.transform_config import REPOSITORY_CONFIGS

    config = re.search(r"set\(SERVING_CONFIG (\S+)\)", MODULE_CMAKE.read_text()).group(1)
    assert (ROOT / config).is_file() and ROOT / config == REPOSITORY_CONFIGS / "inference.json"
    # installed beside BreastFusionLib in the scripted-modules folder, as it lies beside it in the repository
    assert REPOSITORY_CONFIGS.parent.parent == ROOT and "${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/${SERVING_CONFIG}" in MODULE_CMAKE.read_text()


def test_cmake_lists_existing_resources_and_registers_tests():
    text = MODULE_CMAKE.read_text()
    resources = re.search(r"set\(MODULE_PYTHON_RESOURCES(.*?)\)", text, re.S).group(1).split()
    for resource in resources:
        assert (MODULE_DIR / resource.replace("${MODULE_NAME}", "BreastFusion")).is_file(), resource
    assert "Resources/inference_worker.py" in resources
    assert "slicerMacroBuildScriptedModule(" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    top = TOP_CMAKE.read_text()
    for variable in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL"):
        assert re.search(rf'set\(EXTENSION_{variable} "[^"]+"\)', top), variable
    for url in re.findall(r'"(https://raw\.githubusercontent\.com/breastfusion/BreastFusion/main/([^"]+))"', top):
        assert (ROOT / url[1]).is_file(), f"{url[0]} names a file that is not in the repository"
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in top and "add_subdirectory(BreastFusion)" in top


# --- Python versions of Slicer -----------------------------------------------------------------------


@pytest.mark.parametrize("path", [MODULE_PY, WORKER_PY], ids=["module", "worker"])
@pytest.mark.parametrize("version", [(3, 9), (3, 12)], ids=["py39", "py312"])
def test_parses_on_slicer_python_versions(path, version):
    ast.parse(path.read_text(), filename=str(path), feature_version=version)


def test_module_annotations_are_real_and_python39_safe():
    """parameterNodeWrapper evaluates annotations: no postponed evaluation, no ``X | Y`` at runtime."""
    tree = _module_tree()
    assert not any(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in tree.body)
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations += [a.annotation for a in node.args.args + node.args.kwonlyargs if a.annotation is not None]
            annotations += [node.returns] if node.returns is not None else []
        for annotation in annotations:
            assert not any(isinstance(n, ast.BinOp) for n in ast.walk(annotation)), ast.unparse(annotation)
            assert not any(isinstance(n, ast.Subscript) and getattr(n.value, "id", "") in ("list", "dict", "tuple")
                           for n in ast.walk(annotation)), ast.unparse(annotation)


def test_breastfusionlib_files_the_module_needs_parse_on_slicers_python():
    """Slicer 5.10 and later run Python 3.12 (the module itself still parses on 3.9, to tell a 5.8 user why not)."""
    for relative in sorted(_transitive_lib_files()):
        ast.parse((ROOT / relative).read_text(), filename=relative, feature_version=(3, 12))


def test_module_never_installs_or_imports_lib_at_import_time():
    """Dependencies are installed on first use only; BreastFusionLib is imported inside methods."""
    tree = _module_tree()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not any(n.startswith("BreastFusionLib") for n in names), ast.unparse(node)
        if isinstance(node, ast.Expr):
            assert "pip_install" not in ast.unparse(node) and "pip_ensure" not in ast.unparse(node)


def test_docs_say_the_module_was_not_run_in_slicer():
    text = (ROOT / "docs" / "SLICER.md").read_text()
    assert "not been run in 3D Slicer" in text
    assert "--additional-module-paths" in text and "slicer.testing.runUnitTest" in text
