"""Which Python packages BreastFusion needs inside 3D Slicer, which are missing, and how to install
them without replacing what Slicer (or its PyTorch extension) provides. Standard library only: the
Slicer module uses it before anything is installed.

Slicer 5.10 and later bundle numpy, scipy, SimpleITK, Pillow and pydicom (its SuperBuild
``External_python-*.cmake`` files); the PyTorch extension installs torch. BreastFusion itself adds
only what ``BreastFusion/Resources/requirements.txt`` lists (monai). Installing is done with a pip
constraints file that pins every package already there to its installed version, so that pip never
upgrades or downgrades Slicer's own numpy or the extension's torch as a side effect.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

# import name -> distribution name, for every package the Slicer module and its worker import.
REQUIRED_IMPORTS: Dict[str, str] = {
    "numpy": "numpy", "scipy": "scipy", "PIL": "Pillow", "SimpleITK": "SimpleITK", "pydicom": "pydicom",
    "torch": "torch", "monai": "monai",
}
SLICER_BUNDLED = ("numpy", "scipy", "SimpleITK", "Pillow", "pydicom")  # shipped with Slicer >= 5.10
FROM_PYTORCH_EXTENSION = "torch"
MIN_TORCH = (2, 13)  # the oldest torch the serving path is tested with (tests/test_slicer_python.py)
MIN_PYTHON = (3, 10)  # monai >= 1.6 needs it; Slicer 5.10 and later run Python 3.12
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_name(requirement: str) -> str:
    """'monai[fire]>=1.5 ; python_version >= "3.10"' -> 'monai'."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return match.group(1)


def read_requirements(path: Path) -> List[str]:
    """The requirement lines of a requirements.txt (comments and blank lines left out)."""
    lines = [line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines()]
    return [line for line in lines if line]


def missing_distributions(required: Dict[str, str] = REQUIRED_IMPORTS) -> List[str]:
    """Distribution names of the required packages that cannot be imported here."""
    return [dist for name, dist in required.items() if importlib.util.find_spec(name) is None]


def version_tuple(version: str) -> Tuple[int, ...]:
    """'2.13.0+cpu' -> (2, 13, 0): the leading numbers of a version."""
    numbers = []
    for part in version.split("+")[0].split("."):
        match = re.match(r"\d+", part)
        if match is None:
            break
        numbers.append(int(match.group()))
    return tuple(numbers)


def installed_version(distribution: str) -> Optional[str]:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def old_torch_warning() -> Optional[str]:
    """A sentence when the installed torch is older than the oldest tested one; None otherwise."""
    version = installed_version(FROM_PYTORCH_EXTENSION)
    if version is None or version_tuple(version) >= MIN_TORCH:
        return None
    return (f"torch {version} is older than the oldest version BreastFusion is tested with "
            f"({'.'.join(map(str, MIN_TORCH))}): if inference fails, update torch in the PyTorch Utils module")


def keep_installed_constraints(distributions=SLICER_BUNDLED + (FROM_PYTORCH_EXTENSION,)) -> str:
    """A pip constraints file's text pinning each installed one of ``distributions`` to its version."""
    pins = [(name, installed_version(name)) for name in distributions]
    return "".join(f"{name}=={version}\n" for name, version in pins if version)


def to_install(requirements: List[str], missing: List[str]) -> Tuple[List[str], List[str]]:
    """(requirement lines to pip-install, missing distributions that none of them provides)."""
    wanted = {name.lower() for name in missing}
    chosen = [r for r in requirements if requirement_name(r).lower() in wanted]
    provided = {requirement_name(r).lower() for r in chosen}
    return chosen, [name for name in missing if name.lower() not in provided]
