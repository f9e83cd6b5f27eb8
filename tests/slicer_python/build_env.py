"""Build (once) a Python environment that holds only what 3D Slicer gives the BreastFusion worker.

Three layers, in the order a user's Slicer gets them:
1. the packages Slicer 5.10.0 bundles (``slicer-5.10.0-python.txt``, pinned from Slicer's SuperBuild);
2. torch, as the PyTorch extension installs it (here the CPU build ``torch==2.13.0``, the oldest torch
   BreastFusion supports: ``BreastFusionLib.dependencies.MIN_TORCH``);
3. the module's ``BreastFusion/Resources/requirements.txt``, installed the way ``ensureDependencies``
   does it: with a constraints file pinning everything already there (``keep_installed_constraints``).

Plus ``lowest/``, a folder with the oldest monai the requirements allow (1.5.1), put first on the
worker's PYTHONPATH to test the lowest supported torch + monai pair. BreastFusionLib is not installed:
the worker finds it through ``--python-path``, as in Slicer.

The environment is rebuilt only when one of its inputs changes (a hash in ``<env>/.inputs``).
Usage: ``python tests/slicer_python/build_env.py [ENV]`` (default ``.venv-slicer`` at the repository root).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BUNDLED = HERE / "slicer-5.10.0-python.txt"
REQUIREMENTS = ROOT / "BreastFusion" / "Resources" / "requirements.txt"
DEPENDENCIES = ROOT / "BreastFusionLib" / "dependencies.py"
TORCH = "torch==2.13.0"
LOWEST_MONAI = "monai==1.5.1"
DEFAULT_ENV = ROOT / ".venv-slicer"


def inputs_hash() -> str:
    digest = hashlib.sha256()
    for path in (BUNDLED, REQUIREMENTS, DEPENDENCIES, Path(__file__)):
        digest.update(path.read_bytes())
    digest.update(f"{TORCH} {LOWEST_MONAI} {sys.version}".encode())
    return digest.hexdigest()


def python_of(env: Path) -> Path:
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def pip(env: Path, *args: str) -> None:
    subprocess.run([str(python_of(env)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args], check=True)


def build(env: Path = DEFAULT_ENV) -> Path:
    """The environment's Python, building the environment first when it is missing or out of date."""
    stamp = env / ".inputs"
    if stamp.is_file() and stamp.read_text() == inputs_hash() and python_of(env).is_file():
        return python_of(env)
    if env.exists():
        shutil.rmtree(env)
    print(f"building the Slicer-like Python in {env} (once)", flush=True)
    venv.EnvBuilder(with_pip=True).create(env)
    pip(env, "-r", str(BUNDLED))
    pip(env, TORCH)
    constraints = env / "constraints.txt"
    keep = ("from importlib.util import spec_from_file_location, module_from_spec\n"
            f"spec = spec_from_file_location('dependencies', {str(DEPENDENCIES)!r})\n"
            "module = module_from_spec(spec); spec.loader.exec_module(module)\n"
            "print(module.keep_installed_constraints(), end='')")
    constraints.write_text(subprocess.run([str(python_of(env)), "-c", keep], check=True, capture_output=True,
                                          text=True).stdout)
    pip(env, "-r", str(REQUIREMENTS), "-c", str(constraints))
    pip(env, "--no-deps", "--target", str(env / "lowest"), LOWEST_MONAI)
    stamp.write_text(inputs_hash())
    return python_of(env)


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_ENV))
