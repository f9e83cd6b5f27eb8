"""The main job (``make demo``): a synthetic paired cohort, trained and compared end to end.

1. generate the synthetic paired US + chest-CT cohort (``BreastFusionLib.synthetic``);
2. split it by patient, stratified by label (train / val / test);
3. prepare the US and CT lesion crops (``BreastFusionLib.cohort.prepare``);
4. train and evaluate the US, CT and fusion models with the MONAI bundle's own commands
   (``python -m monai.bundle run training|evaluating``, demo sizes from ``configs/demo.json``);
5. compare them with the late-fusion baseline: Table 1, DeLong tests, combined ROC.

Everything lands in ``--out`` (default ``out/demo``); the synthetic numbers show that the
pipeline works, not how a model would do on patients.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from BreastFusionLib.bundle.late_fusion import write_late_fusion_predictions
from BreastFusionLib.bundle.comparison import write_comparison
from BreastFusionLib.cohort.manifest import load_manifest, write_manifest
from BreastFusionLib.cohort.prepare import prepare_cohort
from BreastFusionLib.cohort.splits import assign_splits
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.synthetic import generate_cohort

CONFIGS = Path(__file__).resolve().parents[1] / "monai_bundle" / "configs"
MODALITIES = ("us", "ct", "fusion")


def _step(message: str, started: float) -> None:
    print(f"\n== [{time.perf_counter() - started:4.0f} s] {message}", flush=True)


_EPOCH_METRICS = re.compile(r"Epoch\[(\d+)\] Metrics -- .*val_auc: ([0-9.]+)")


def _bundle(run_id: str, config_files: list[str], log: Path, **overrides) -> None:
    """Run ``python -m monai.bundle run RUN_ID`` with overrides; full log to ``log``, one line per epoch here."""
    files = "[" + ",".join(f"'{CONFIGS / name}'" for name in config_files) + "]"
    command = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", files]
    command += [item for key, value in overrides.items() for item in (f"--{key}", str(value))]
    print("   $ " + shlex.join(["python", *command[1:]]), flush=True)
    started = time.perf_counter()
    with log.open("a") as handle:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env={**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"})
        for line in process.stdout:
            handle.write(line)
            if match := _EPOCH_METRICS.search(line):
                print(f"     epoch {match.group(1)}: validation AUC {float(match.group(2)):.3f} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    if process.wait() != 0:
        raise SystemExit(f"error: the bundle {run_id} run failed; see the end of {log}")


def run_demo(out: Path, cases: int, seed: int, epochs: int | None, overrides: dict | None = None) -> Path:
    """Run every step; return the report folder. ``overrides`` are extra bundle settings (e.g. for tests)."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    _step(f"1/5 synthetic paired cohort: {cases} cases (seed {seed})", started)
    manifest = generate_cohort(out / "cohort", cases=cases, seed=seed)

    _step("2/5 patient-level stratified split: 65% train / 15% validation / 20% test", started)
    rows = assign_splits(load_manifest(manifest), fractions=(0.65, 0.15, 0.2), seed=seed)
    split_manifest = out / "cohort" / "manifest_split.csv"
    write_manifest(rows, split_manifest)

    _step("3/5 lesion crops (US overlays removed; CT axial soft-tissue window)", started)
    off_centre = float((overrides or {}).get("off_centre", 0))  # off-centre training cuts windows from context crops
    crops = prepare_cohort(str(split_manifest), str(out / "crops"), context=off_centre > 0)

    bundle_root, log = out / "bundle", out / "bundle.log"
    bundle_root.mkdir(exist_ok=True)
    common = {"dataset_dir": out / "crops", "bundle_root": bundle_root, "seed": seed}
    if epochs is not None:
        common["max_epochs"] = epochs
    common.update(overrides or {})
    for index, modality in enumerate(MODALITIES, start=1):
        _step(f"4/5 [{index}/3] {modality} model: train, then evaluate (log: {log})", started)
        _bundle("training", ["train.json", "demo.json"], log, modality=modality, **common)
        _bundle("evaluating", ["train.json", "demo.json", "evaluate.json"], log, modality=modality, **common)

    _step("5/5 comparison: Table 1, DeLong tests, combined ROC", started)
    runs = bundle_root / "runs"
    write_late_fusion_predictions(runs / "us", runs / "ct", runs / "late_fusion")
    report = out / "report"
    table = write_comparison({name: runs / name for name in ("us", "ct", "fusion", "late_fusion")}, crops, report)
    print("\n" + table.read_text())
    print(f"done in {time.perf_counter() - started:.0f} s. Report: {report}  (per-model details: {runs})")
    return report


def _bundle_setting(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` -> (key, value), passed to the bundle as ``--KEY VALUE``."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (a bundle setting), got {text!r}")
    return key.strip(), value.strip()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="BreastFusion demo on a synthetic paired US + CT cohort.")
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--cases", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override demo.json's max_epochs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=_bundle_setting,
                        help="any other bundle setting, e.g. --set backbone=cbam_efficientnet_lite0 --set spatial_size=224")
    args = parser.parse_args(argv)
    try:
        run_demo(args.out, args.cases, args.seed, args.epochs, dict(args.set))
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
