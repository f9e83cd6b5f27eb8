"""Start a serving process without the packages only training and reporting use.

``import monai`` imports every MONAI module, and with them every optional package that happens to
be installed: matplotlib, scikit-learn, pytorch-ignite, MLflow, TensorBoard, pandas. Serving needs
none of them, and 3D Slicer bundles none of them. Hiding them before MONAI is imported makes a
``breastfusion predict`` or ``serve`` process start as it does in Slicer, seconds faster; MONAI
treats a hidden package exactly as a missing one. Only processes that serve call this.
"""

from __future__ import annotations

import importlib.abc
import sys

TRAINING_ONLY = ("matplotlib", "sklearn", "ignite", "mlflow", "tensorboard", "tensorboardX", "pandas")


class _Hidden(importlib.abc.MetaPathFinder):
    def __init__(self, names) -> None:
        self.names = frozenset(names)

    def find_spec(self, fullname, path, target=None):
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden in a serving process)", name=fullname)
        return None


def hide_training_packages(names=TRAINING_ONLY) -> bool:
    """Make ``names`` unimportable in this process; False (nothing hidden) when one is already imported."""
    if any(name in sys.modules for name in names):
        return False
    sys.meta_path.insert(0, _Hidden(names))
    return True
