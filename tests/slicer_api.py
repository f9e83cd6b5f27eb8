"""What the Slicer module asks of 3D Slicer, read from its source, and checked against a verified list.

Slicer cannot be installed on the build machines, so every ``slicer`` / ``qt`` / ``ctk`` / ``vtk`` /
MRML name the module uses must be right by construction. ``usages(source, ui)`` walks the module's
syntax tree and reports what it asks of Slicer; ``tests/slicer_api.json`` lists what was checked in
Slicer's own sources (with the file and line); ``problems`` says which usages the list lacks.

Keys of a usage (the same keys name the entries of the list):

- a name: a dotted name rooted at ``slicer``, ``qt``, ``ctk``, ``vtk`` or another Slicer module
  (``slicer.util.loadUI``, ``qt.QTimer.singleShot``, ``vtk.vtkCommand.ModifiedEvent``);
- a member: ``Class.member`` for a method or property used on an object whose class is known: a
  widget of the .ui (class from the .ui), an object from a listed name with a ``type`` or a
  ``returns`` (``slicer.mrmlScene`` is a ``vtkMRMLScene``), a parameter-node field (its annotation),
  a member inherited by the module's own classes (``ScriptedLoadableModuleWidget.resourcePath``);
- ``?.member``: a method called on an object of unknown class (a function argument, a value from a
  dict): it must be a member of some listed class, or a listed Python method;
- a call shape ``(_, _, key=)``: positional count and keyword names of each call; a listed name or
  member declares the shapes checked in the source (``calls``), ``*`` stands for ``*args``;
- ``signal Class.signature``: a Qt signal given as a string to ``.connect``;
- ``ui ...``: what the .ui file itself uses (widget classes, properties, connections);
- ``wrapper ...``: parameterNodeWrapper features: field annotations and the widget class bound to each.

``python tests/slicer_api.py`` prints what the list lacks for BreastFusion.py, as entries to complete;
``python tests/slicer_api.py --check-sources [MIRRORS]`` re-reads every cited line from local git
mirrors. The format of the list and how to extend it: docs/SLICER.md, section 'The Slicer API check'.
"""

import ast
import json
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]
MODULE_PY = ROOT / "BreastFusion" / "BreastFusion.py"
UI_FILE = ROOT / "BreastFusion" / "Resources" / "UI" / "BreastFusion.ui"
API_LIST = Path(__file__).resolve().parent / "slicer_api.json"

# Modules Slicer provides (roots of names checked against the list).
SLICER_ROOTS = {"slicer", "qt", "ctk", "vtk", "SampleData", "PyTorchUtils"}
# Calls of these give plain Python values (any other module imported by name is plain Python too).
PYTHON_BUILTINS = {"str", "int", "float", "bool", "list", "dict", "set", "tuple", "sorted", "open", "enumerate",
                   "zip", "range", "round", "min", "max", "abs", "len", "iter", "next", "getattr", "repr", "sum"}


@dataclass(frozen=True)
class Usage:
    key: str  # what must be listed (see the module docstring)
    call: Optional[str]  # call shape, when the usage is a call
    line: int


def call_shape(call: ast.Call) -> str:
    """``(_, _, key=)``: one ``_`` per positional argument (``*`` for ``*args``), then the keyword names sorted."""
    parts = ["*" if isinstance(a, ast.Starred) else "_" for a in call.args]
    parts += sorted("**" if k.arg is None else f"{k.arg}=" for k in call.keywords)
    return "(" + ", ".join(parts) + ")"


def ui_classes(ui_text: str) -> Tuple[str, Dict[str, str]]:
    """(class of the top-level widget, {widget name: class}) of a Qt Designer file."""
    root = ET.fromstring(ui_text)
    top = root.find("widget")
    return top.get("class"), {w.get("name"): w.get("class") for w in root.iter("widget")}


def ui_usages(ui_text: str) -> List[Usage]:
    """Widget classes, properties and connections a Qt Designer file uses."""
    root = ET.fromstring(ui_text)
    classes = {w.get("name"): w.get("class") for w in root.iter("widget")}
    found = []
    for widget in root.iter("widget"):
        cls = widget.get("class")
        found.append(Usage(f"ui class {cls}", None, 0))
        for prop in widget.findall("property"):
            if prop.get("stdset") != "0":  # stdset=0: a dynamic property, e.g. SlicerParameterName
                found.append(Usage(f"ui property {cls}.{prop.get('name')}", None, 0))
    for connection in root.iter("connection"):
        sender, receiver = classes[connection.findtext("sender")], classes[connection.findtext("receiver")]
        found.append(Usage(f"ui signal {sender}.{connection.findtext('signal')}", None, 0))
        found.append(Usage(f"ui slot {receiver}.{connection.findtext('slot')}", None, 0))
    return found


def _ancestors(cls: str, api: dict) -> List[str]:
    """``cls`` then its base classes (``classes`` of the list), nearest first; ``A/B`` is a class with bases A and B."""
    order, todo = [], cls.split("/")
    while todo:
        current = todo.pop(0)
        if current not in order:
            order.append(current)
            todo += api.get("classes", {}).get(current, {}).get("bases", [])
    return order


def lookup(name: str, api: dict) -> Optional[dict]:
    """The entry for ``name``; ``Class.member`` is also found on the base classes of ``Class``."""
    entries = {e["name"]: e for e in api["entries"]}
    if name in entries:
        return entries[name]
    owner, _, member = name.rpartition(".")
    if owner and owner.split(".")[0] not in SLICER_ROOTS and owner != "?":
        for cls in _ancestors(owner, api):
            if f"{cls}.{member}" in entries:
                return entries[f"{cls}.{member}"]
    return None


# A value the extractor knows something about: ("ns", dotted name), ("obj", class name),
# ("own", class of this module), ("super", class of this module), ("ui",) for self.ui, ("py",).
Value = Optional[tuple]


class _Extractor:
    def __init__(self, tree: ast.Module, ui_text: str, api: dict):
        self.ui_text = ui_text
        self.top_class, self.widgets = ui_classes(ui_text)
        self.api = api
        self.found: List[Usage] = []
        self.imports: Dict[str, Value] = {}
        self.functions: Set[str] = set()
        self.classes: Dict[str, dict] = {}  # own classes: bases, members, fields, self-attribute values
        self.tree = tree
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self._import(node)
            elif isinstance(node, ast.FunctionDef):
                self.functions.add(node.name)
            elif isinstance(node, ast.ClassDef):
                self._own_class(node)

    # --- module structure ---------------------------------------------------------------------

    def _import(self, node) -> None:
        for alias in node.names:
            local = alias.asname or alias.name.split(".")[0]
            if isinstance(node, ast.Import):
                root = alias.name.split(".")[0]
                self.imports[local] = ("ns", root) if root in SLICER_ROOTS else ("py",)
                if root in SLICER_ROOTS and "." in alias.name:
                    self.found.append(Usage(alias.name, None, node.lineno))
            elif node.module and node.module.split(".")[0] in SLICER_ROOTS:
                full = f"{node.module}.{alias.name}"
                self.imports[local] = ("ns", full)
                self.found.append(Usage(full, None, node.lineno))
            else:
                self.imports[local] = ("py",)

    def _own_class(self, node: ast.ClassDef) -> None:
        bases = [ast.unparse(b) for b in node.bases]
        if any(ast.unparse(d) == "parameterNodeWrapper" for d in node.decorator_list):
            bases.append("parameterNodeWrapper")
        members = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
        members |= {t.id for n in node.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        fields = {n.target.id: n.annotation for n in node.body if isinstance(n, ast.AnnAssign)}
        for n in ast.walk(node):
            if isinstance(n, (ast.Assign, ast.AnnAssign)):
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target]):
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                        members.add(t.attr)
        self.classes[node.name] = {"bases": bases, "members": members | set(fields), "fields": fields,
                                   "self_values": {}}

    def _annotation_value(self, annotation) -> Value:
        """Value of a parameter or field annotation: own classes, MRML classes (``Optional[X]`` is X)."""
        if annotation is None:
            return None
        text = ast.unparse(annotation).strip("'\"")
        if text.startswith("Optional[") and text.endswith("]"):
            text = text[len("Optional["):-1]
        if text in self.classes:
            return ("own", text)
        if text.startswith(("vtkMRML", "qMRML", "qSlicer")):
            return ("obj", text)
        return None

    # --- values -------------------------------------------------------------------------------

    def _entry_value(self, name: str, key: str) -> Value:
        """The value of a listed name (``key`` "type") or of calling it ("returns"); "python": a plain Python value;
        "ui": the top-level widget of the .ui (``slicer.util.loadUI``)."""
        entry = lookup(name, self.api) or {}
        if key not in entry:
            return None
        return {"python": ("py",), "ui": ("obj", self.top_class)}.get(entry[key], ("obj", entry[key]))

    def _member(self, base: Value, attr: str, node: ast.AST, call: Optional[ast.Call], env: dict) -> Value:
        """Record ``base.attr`` (used at ``node``) and return the value it gives."""
        line = node.lineno
        shape = call_shape(call) if call is not None else None
        if base is None:
            if call is not None:  # a method of an object of unknown class: listed somewhere, or Python
                self.found.append(Usage(f"?.{attr}", shape, line))
            return None
        kind = base[0]
        if kind == "py":
            return ("py",)
        if kind == "ns":
            name = f"{base[1]}.{attr}"
            self.found.append(Usage(name, shape, line))
            if call is not None:
                entry = lookup(name, self.api) or {}
                if entry.get("kind") == "class":
                    return ("obj", name.rsplit(".", 1)[1])
                return self._entry_value(name, "returns")
            return self._entry_value(name, "type") or ("ns", name)
        if kind == "ui":
            return ("obj", self.widgets[attr]) if attr in self.widgets else None
        if kind == "obj":
            name = f"{base[1]}.{attr}"
            self.found.append(Usage(name, shape, line))
            if call is not None:
                return self._returns_node_class(name, call) or self._entry_value(name, "returns")
            return self._entry_value(name, "type")
        if kind in ("own", "super"):
            info = self.classes[base[1]]
            if kind == "own" and attr in info["members"]:
                if attr in info["fields"]:
                    return self._annotation_value(info["fields"][attr])
                if attr == "ui":
                    return ("ui",)
                return info["self_values"].get(attr)
            for own_base in (b for b in info["bases"] if b in self.classes):  # inherited from a class of this module
                return self._member(("own", own_base), attr, node, call, env)
            key = "/".join(info["bases"]) or base[1]
            self.found.append(Usage(f"{key}.{attr}", shape, line))
            if call is not None:
                return self._entry_value(f"{key}.{attr}", "returns")
            return self._entry_value(f"{key}.{attr}", "type")
        return None

    def _returns_node_class(self, name: str, call: ast.Call) -> Value:
        """``AddNewNodeByClass("vtkMRMLX", ...)`` and ``GetFirstNodeByClass("vtkMRMLX")`` give a vtkMRMLX."""
        if name.endswith((".AddNewNodeByClass", ".GetFirstNodeByClass")) and call.args:
            first = call.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                return ("obj", first.value)
        return None

    def value(self, node: ast.AST, env: dict, call: Optional[ast.Call] = None) -> Value:
        """Evaluate ``node`` (recording usages); ``call`` is the Call node when ``node`` is its function."""
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            if node.id in self.imports:
                value = self.imports[node.id]
                if value[0] == "ns" and call is not None:  # a name imported from a Slicer module, called
                    self.found.append(Usage(value[1], call_shape(call), node.lineno))
                    if (lookup(value[1], self.api) or {}).get("kind") == "class":
                        return ("obj", value[1].rsplit(".", 1)[1])
                    return self._entry_value(value[1], "returns")
                return value
            if node.id in self.classes:
                return ("own", node.id) if call is not None else None
            if node.id in PYTHON_BUILTINS or node.id in self.functions:
                return ("py",)
            return None
        if isinstance(node, ast.Attribute):
            return self._member(self.value(node.value, env), node.attr, node, call, env)
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "super":
                return ("super", env["__class__"]) if "__class__" in env else None
            return self.value(node.func, env, call=node)
        if isinstance(node, ast.BoolOp):
            values = [self.value(v, env) for v in node.values]
            known = [v for v in values if v is not None]
            return known[-1] if known else None
        if isinstance(node, ast.Constant) and node.value is None:
            return None
        if isinstance(node, (ast.Constant, ast.JoinedStr, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.ListComp,
                             ast.DictComp, ast.SetComp, ast.BinOp, ast.Compare, ast.GeneratorExp, ast.Subscript)):
            return ("py",)
        return None

    # --- statements ---------------------------------------------------------------------------

    def run(self) -> List[Usage]:
        for _ in range(2):  # the second pass knows the values of self attributes set in other methods
            self.found = []
            module_env: dict = {}
            for node in self.tree.body:
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    self._import(node)
                elif isinstance(node, ast.FunctionDef):
                    self._function(node, {})
                elif isinstance(node, ast.ClassDef):
                    self._class_body(node)
                else:
                    self._statement(node, module_env)
        return self.found

    def _class_body(self, node: ast.ClassDef) -> None:
        info = self.classes[node.name]
        if "parameterNodeWrapper" in info["bases"]:
            self._wrapper_fields(node)
        for item in node.body:
            if isinstance(item, ast.FunctionDef):
                env = {"__class__": node.name}
                if item.args.args and item.args.args[0].arg == "self" and not item.decorator_list:
                    env["self"] = ("own", node.name)
                self._function(item, env)
            elif isinstance(item, ast.AnnAssign) and item.value is not None:
                self._expression(item.value, {})
            elif not isinstance(item, ast.AnnAssign):
                self._statement(item, {})

    def _wrapper_fields(self, node: ast.ClassDef) -> None:
        """parameterNodeWrapper: each field's annotation, and the .ui widget class bound to it."""
        bound = _bound_widgets(self.ui_text)
        for item in node.body:
            if isinstance(item, ast.AnnAssign):
                annotation = _wrapper_annotation(item.annotation)
                self.found.append(Usage(f"wrapper annotation {annotation}", None, item.lineno))
                widget = bound.get(item.target.id)
                if widget is not None:
                    self.found.append(Usage(f"wrapper bind {annotation} -> {widget}", None, item.lineno))

    def _function(self, node: ast.FunctionDef, env: dict) -> None:
        env = dict(env)
        for arg in node.args.args + node.args.kwonlyargs:
            if arg.arg != "self" or "self" not in env:
                value = self._annotation_value(arg.annotation)
                env[arg.arg] = value
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self._expression(default, env)
        for statement in node.body:
            self._statement(statement, env)

    def _bind(self, target: ast.AST, value: Value, env: dict) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = value
        elif isinstance(target, ast.Attribute):
            base = self._expression(target.value, env)
            if isinstance(target.value, ast.Name) and target.value.id == "self" and base and base[0] == "own":
                info = self.classes[base[1]]
                if target.attr in info["members"]:
                    if value is not None:
                        info["self_values"][target.attr] = value
                    return
            self._member(base, target.attr, target, None, env)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._bind(element, None, env)
        else:
            self._expression(target, env)

    def _loop_values(self, target: ast.AST, iterable: ast.AST, env: dict) -> None:
        """``for a, b in ((x1, y1), (x2, y2))``: a and b get the value common to all rows, if any."""
        rows = iterable.elts if isinstance(iterable, (ast.Tuple, ast.List)) else None
        if isinstance(target, ast.Tuple) and rows and all(isinstance(r, ast.Tuple) and len(r.elts) == len(target.elts)
                                                          for r in rows):
            for index, element in enumerate(target.elts):
                values = {self._expression(r.elts[index], env) for r in rows}
                self._bind(element, values.pop() if len(values) == 1 else None, env)
            return
        if isinstance(target, ast.Name) and rows:
            values = {self._expression(r, env) for r in rows}
            self._bind(target, values.pop() if len(values) == 1 else None, env)
            return
        self._expression(iterable, env)
        self._bind(target, None, env)

    def _statement(self, node: ast.AST, env: dict) -> None:
        if isinstance(node, ast.Assign):
            value = self._expression(node.value, env)
            for target in node.targets:
                self._bind(target, value, env)
        elif isinstance(node, ast.AnnAssign):
            self._bind(node.target, self._expression(node.value, env) if node.value else None, env)
        elif isinstance(node, ast.AugAssign):
            self._expression(node.value, env)
            self._expression(node.target, env)
        elif isinstance(node, ast.For):
            self._loop_values(node.target, node.iter, env)
            for statement in node.body + node.orelse:
                self._statement(statement, env)
        elif isinstance(node, (ast.If, ast.While)):
            self._expression(node.test, env)
            for statement in node.body + node.orelse:
                self._statement(statement, env)
        elif isinstance(node, ast.With):
            for item in node.items:
                self._expression(item.context_expr, env)
                if item.optional_vars is not None:
                    self._bind(item.optional_vars, None, env)
            for statement in node.body:
                self._statement(statement, env)
        elif isinstance(node, ast.Try):
            for statement in node.body + node.orelse + node.finalbody:
                self._statement(statement, env)
            for handler in node.handlers:
                if handler.name:
                    env[handler.name] = ("py",)
                for statement in handler.body:
                    self._statement(statement, env)
        elif isinstance(node, ast.FunctionDef):
            self._function(node, env)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            self._import(node)
            for alias in node.names:
                env[alias.asname or alias.name.split(".")[0]] = self.imports[alias.asname or alias.name.split(".")[0]]
        elif isinstance(node, (ast.Expr, ast.Return)) and node.value is not None:
            self._expression(node.value, env)
        elif isinstance(node, ast.Raise):
            if node.exc is not None:
                self._expression(node.exc, env)

    def _expression(self, node: ast.AST, env: dict) -> Value:
        """Evaluate an expression and every name, member and call inside it; returns its value."""
        result = self.value(node, env)
        self._inside(node, env)
        return result

    def _inside(self, node: ast.AST, env: dict) -> None:
        """Evaluate the parts of ``node`` that ``value`` did not follow (arguments, operands, lambdas...)."""
        if isinstance(node, ast.Call) and _is_connect_with_signal(node):
            self._signal(node, env)
        if isinstance(node, ast.Lambda):
            inner = dict(env, **{a.arg: None for a in node.args.args})
            self._expression(node.body, inner)
            return
        if isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp, ast.DictComp)):
            inner = dict(env)
            for generator in node.generators:
                self._expression(generator.iter, inner)
                self._bind(generator.target, None, inner)
                for condition in generator.ifs:
                    self._expression(condition, inner)
            for part in ([node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]):
                self._expression(part, inner)
            return
        for child in ast.iter_child_nodes(node):
            followed = ((isinstance(node, ast.Attribute) and child is node.value)
                        or (isinstance(node, ast.Call) and child is node.func) or isinstance(node, ast.BoolOp))
            if followed:
                self._inside(child, env)
            elif isinstance(child, ast.expr):
                self._expression(child, env)
            elif isinstance(child, ast.keyword):
                self._expression(child.value, env)

    def _signal(self, call: ast.Call, env: dict) -> None:
        sender = self.value(call.func.value, env)
        signature = call.args[0].value
        if sender is not None and sender[0] == "obj":
            self.found.append(Usage(f"signal {sender[1]}.{signature}", None, call.lineno))
        else:
            self.found.append(Usage(f"signal {ast.unparse(call.func.value)}.{signature}", None, call.lineno))


def _is_connect_with_signal(call: ast.Call) -> bool:
    return (isinstance(call.func, ast.Attribute) and call.func.attr == "connect" and call.args
            and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str))


def _wrapper_annotation(annotation: ast.AST) -> str:
    """``Annotated[float, WithinRange(0, 1)]`` -> ``Annotated[float, WithinRange]``."""
    if isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) == "Annotated":
        parts = annotation.slice.elts
        names = [ast.unparse(p.func) if isinstance(p, ast.Call) else ast.unparse(p) for p in parts[1:]]
        return f"Annotated[{ast.unparse(parts[0])}, {', '.join(names)}]"
    return ast.unparse(annotation)


def _bound_widgets(ui_text: str) -> Dict[str, str]:
    """{parameter name: widget class} of the widgets with a ``SlicerParameterName`` property."""
    bound = {}
    for widget in ET.fromstring(ui_text).iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.findtext("string")] = widget.get("class")
    return bound


def usages(source: str, ui_text: str, api: dict) -> List[Usage]:
    """Everything ``source`` (a Slicer scripted module) and its .ui ask of Slicer."""
    found = _Extractor(ast.parse(source), ui_text, api).run()
    # A name followed further on the same line (slicer.util in slicer.util.loadUI) needs no entry of its own.
    extended = {(u.line, u.key.rsplit(".", 1)[0]) for u in found if "." in u.key}
    found = [u for u in found if u.call is not None or (u.line, u.key) not in extended]
    return found + ui_usages(ui_text)


# --- the check ------------------------------------------------------------------------------------


def load_api(path: Path = API_LIST) -> dict:
    return json.loads(path.read_text())


def find_entry(usage: Usage, api: dict) -> Optional[dict]:
    """The entry of the list that covers ``usage`` (a member is looked up through the base classes)."""
    entries = {e["name"]: e for e in api["entries"]}
    key = usage.key
    if key in entries:
        return entries[key]
    for prefix in ("signal ", "ui property ", "ui signal ", "ui slot ", ""):
        if key.startswith(prefix) and "." in key[len(prefix):]:
            owner, member = key[len(prefix):].split(".", 1)
            if prefix == "" and (owner in SLICER_ROOTS or owner == "?"):
                break
            for cls in _ancestors(owner, api):
                if f"{prefix}{cls}.{member}" in entries:
                    return entries[f"{prefix}{cls}.{member}"]
            return None
    if key.startswith("?."):
        member = key[2:]
        if member in api.get("python_methods", {}):
            return {"name": key, "kind": "python", "verified": True}
        matches = [e for name, e in entries.items() if name.endswith("." + member)
                   and e.get("kind") in ("method", "slot", "property", "python") and name.split(".")[0] not in SLICER_ROOTS]
        return next((e for e in matches if usage.call in e.get("calls", [])), matches[0] if matches else None)
    return None


HOW_TO_ADD = ("To allow a usage, find it in the sources Slicer 5.10.0 is built from (Slicer v5.10.0, the CTK and PythonQt "
              "commits it pins; see \"sources\" in tests/slicer_api.json) and add an entry there: name, kind, the call shapes "
              "checked (\"calls\"), \"source\" {repo, ref, path, line, text of that line} and \"verified\": true. "
              "`python tests/slicer_api.py` prints templates of the missing entries; `python tests/slicer_api.py --check-sources` "
              "re-reads every cited line from local git mirrors. See docs/SLICER.md, section 'The Slicer API check'.")


def problems(found: List[Usage], api: dict) -> List[str]:
    """One message per usage that the list does not cover, or covers only as unverified or rejected."""
    messages = []
    for usage in sorted(set(found), key=lambda u: (u.line, u.key, u.call or "")):
        where = f"BreastFusion.py:{usage.line}" if usage.line else "BreastFusion.ui"
        shown = usage.key + (usage.call or "")
        entry = find_entry(usage, api)
        if entry is None:
            messages.append(f"{where}: {shown} is not in the verified Slicer API list.")
        elif entry.get("kind") == "python":
            continue
        elif not entry.get("verified", False):
            messages.append(f"{where}: {shown} is listed as unverified: {entry.get('reason', 'no reason given')}")
        elif usage.call is not None and usage.call not in entry.get("calls", []):
            rejected = entry.get("rejected", {}).get(usage.call)
            reason = f" It does not exist: {rejected}" if rejected else ""
            messages.append(f"{where}: {usage.key} is not verified with the call shape {usage.call} "
                            f"(verified: {', '.join(entry.get('calls', [])) or 'not callable'}).{reason}")
    return messages


def module_problems(source: Optional[str] = None, ui_text: Optional[str] = None, api: Optional[dict] = None) -> List[str]:
    api = api or load_api()
    found = usages(source if source is not None else MODULE_PY.read_text(),
                   ui_text if ui_text is not None else UI_FILE.read_text(), api)
    return problems(found, api)


def templates(api: dict) -> List[dict]:
    """What to add to the list for the usages of BreastFusion.py it lacks: new entries to complete, or call shapes
    to add to an existing entry (``add_calls``) after checking them in the source."""
    wanted = {}
    for usage in usages(MODULE_PY.read_text(), UI_FILE.read_text(), api):
        entry = find_entry(usage, api)
        if entry is None:
            template = wanted.setdefault(usage.key, {
                "name": usage.key, "kind": "function|class|method|property|slot|signal|enum|event|...", "calls": [],
                "source": {"repo": "Slicer/Slicer", "ref": "v5.10.0", "path": "?", "line": 0, "text": "?"},
                "verified": True, "used_at": []})
            shapes = template["calls"]
        elif usage.call is not None and entry.get("kind") != "python" and usage.call not in entry.get("calls", []):
            template = wanted.setdefault(entry["name"], {"name": entry["name"], "add_calls": [], "used_at": []})
            shapes = template["add_calls"]
            if usage.call in entry.get("rejected", {}):
                template["rejected"] = entry["rejected"][usage.call]
        else:
            continue
        if usage.call and usage.call not in shapes:
            shapes.append(usage.call)
        template["used_at"].append(usage.line)
    return list(wanted.values())


def check_sources(api: dict, mirrors: Path) -> List[str]:
    """Re-read every cited line from local git mirrors (``<mirrors>/<owner>+<name>/repo``); one message per mismatch.

    Sources without a local mirror, and documentation references, are counted as not re-checked.
    """
    import subprocess

    cited = [(e["name"], e["source"]) for e in api["entries"] if e.get("source")]
    cited += [(name, c["source"]) for name, c in api.get("classes", {}).items() if c.get("source")]
    files, mismatches, unchecked = {}, [], 0
    for name, source in cited:
        if "repo" not in source:
            unchecked += 1
            continue
        repo = mirrors / source["repo"].replace("/", "+") / "repo"
        key = (repo, source["ref"], source["path"])
        if key not in files:
            shown = subprocess.run(["git", "-C", str(repo), "show", f"{source['ref']}:{source['path']}"],
                                   capture_output=True, text=True) if repo.is_dir() else None
            files[key] = shown.stdout.splitlines() if shown is not None and shown.returncode == 0 else None
        lines = files[key]
        if lines is None:
            unchecked += 1
        elif not (0 < source["line"] <= len(lines) and lines[source["line"] - 1].strip() == source["text"]):
            cited_at = f"{source['repo']}@{source['ref']}:{source['path']}:{source['line']}"
            mismatches.append(f"{name}: {cited_at} is not {source['text']!r}")
    print(f"{len(cited) - unchecked - len(mismatches)} cited lines match, {len(mismatches)} differ, "
          f"{unchecked} not re-checked (documentation or no local mirror under {mirrors})", file=sys.stderr)
    return mismatches


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check-sources"]:
        mirrors = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("/work/.mirror")
        differing = check_sources(load_api(), mirrors)
        print("\n".join(differing))
        sys.exit(1 if differing else 0)
    missing = templates(load_api())
    json.dump(missing, sys.stdout, indent=1)
    print(f"\n{len(missing)} usages of BreastFusion.py are not covered by tests/slicer_api.json", file=sys.stderr)
