"""The ``breastfusion`` command line: one sub-command per module in ``BreastFusionLib.commands``.

Sub-commands: ``validate`` (check a cohort manifest), ``split`` (patient-level splits or folds),
``locate`` (nipples and a mass on chest CT from its clock position and distance, or the clock position of a point),
``predict`` (one case through the trained models: probabilities, heat maps, report).

Each command module defines ``HELP`` (one line), ``configure(parser)`` and ``run(args) -> int``.
Errors a user can fix (bad files, values, manifests) are raised as ``UserInputError`` and
printed as one clear message, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from BreastFusionLib.errors import UserInputError

COMMANDS = ("validate", "split", "locate", "predict")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command that is installed."""
    parser = argparse.ArgumentParser(prog="breastfusion", description="BreastFusion (research use only).")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"BreastFusionLib.commands.{name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; user errors print ``error: ...`` and return exit code 1."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
