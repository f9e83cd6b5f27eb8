"""The BreastFusion Slicer module's background worker: a long-lived model process run with ``PythonSlicer``.

The module starts it once (``PythonSlicer inference_worker.py --python-path DIR --device cpu|auto
--bundle MODELS``), sends it cases on standard input and reads progress and answers on standard
output, as ``breastfusion serve`` does (the protocol is ``BreastFusionLib/serving/protocol.py``). The
models are loaded and warmed once; the worker exits when its standard input closes (Cancel,
closing Slicer, or Slicer ending in any way).

The module never imports this script: it is a command-line program. ``--python-path`` names the
folder that holds ``BreastFusionLib`` (the checkout, or the extension's install folder).
Research use only; not a medical device.
"""

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="BreastFusion background worker (started by the Slicer module).",
                                     epilog="Every other option is passed to 'breastfusion serve'.")
    parser.add_argument("--python-path", action="append", default=[], help="folder to put first on sys.path")
    known, serve_arguments = parser.parse_known_args(argv)
    for folder in reversed(known.python_path):
        sys.path.insert(0, folder)
    from BreastFusionLib.serving.lean_imports import hide_training_packages

    hide_training_packages()
    from BreastFusionLib.cli import main as breastfusion

    return breastfusion(["serve", *serve_arguments])


if __name__ == "__main__":
    sys.exit(main())
