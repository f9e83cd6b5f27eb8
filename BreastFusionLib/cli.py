"""The ``breastfusion`` command line: one sub-command per module in ``BreastFusionLib.commands``.

Sub-commands: ``validate`` (check a cohort manifest), ``split`` (patient-level splits or folds),
``locate`` (nipples and a mass on chest CT from its clock position and distance, or the clock position of a point),
``predict`` (one case through the trained models: probabilities, heat maps, report), ``serve`` (a warm
model process answering predict requests line by line).

Each command module defines ``HELP`` (one line), ``configure(parser)`` and ``run(args) -> int``.
Only the chosen command's module is imported (``predict`` must not pay for, or need, what ``split``
imports); ``breastfusion --help`` imports them all to list them. Errors a user can fix (bad files, values, manifests) are raised as ``UserInputError`` and
printed as one clear message, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from BreastFusionLib.errors import UserInputError

COMMANDS = ("validate", "split", "locate", "predict", "serve")
SERVING = ("predict", "serve")  # started without training-only packages (serving.lean_imports)


def build_parser(commands: tuple[str, ...] = COMMANDS) -> argparse.ArgumentParser:
    """The argument parser with the sub-commands ``commands`` (default: all)."""
    parser = argparse.ArgumentParser(prog="breastfusion", description="BreastFusion (research use only).")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in commands:
        module = importlib.import_module(f"BreastFusionLib.commands.{name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; user errors print ``error: ...`` and return exit code 1."""
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser((chosen,) if chosen in COMMANDS else COMMANDS).parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def console_main() -> int:
    """The ``breastfusion`` program: serving commands start lean, as they do inside 3D Slicer, and with OpenMP
    threads that sleep while they wait (unless ``OMP_WAIT_POLICY`` is set): on a CPU shared with another job,
    spinning threads made one cold ``predict`` take 13.3 s instead of 5.5 (docs/INFERENCE.md)."""
    if next((a for a in sys.argv[1:] if not a.startswith("-")), None) in SERVING:
        from BreastFusionLib.serving.client import SLEEPING_OPENMP_THREADS
        from BreastFusionLib.serving.lean_imports import hide_training_packages

        os.environ.setdefault(*SLEEPING_OPENMP_THREADS)
        hide_training_packages()
    return main()


if __name__ == "__main__":
    sys.exit(console_main())
