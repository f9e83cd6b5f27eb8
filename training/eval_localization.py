"""Nipple detection and mass proposal against the ground truth of synthetic chest CTs.

Usage: python training/eval_localization.py [--cases 100] [--seed 0] [--json OUT] [--failures DIR]

For each case of ``sample_lesions(cases, seed)`` the CT is rendered (``render_ct``), both nipples
are found (``find_nipples``) and compared with ``nipples_ras``; the mass is proposed
(``propose_mass``) at the case's true clock hour and distance, from the detected nipple (the
end-to-end figure) and from the true nipple (the proposal step alone), and compared with
``mass_ras``. ``--failures DIR`` writes the check figure of up to 8 proposals more than 5 mm off.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from BreastFusionLib.localization.clock import ClockPosition, clock_from_point  # noqa: E402
from BreastFusionLib.localization.mass import candidate_region, propose_mass  # noqa: E402
from BreastFusionLib.localization.nipples import find_nipples  # noqa: E402
from BreastFusionLib.localization.check_figure import write_check_figure  # noqa: E402
from BreastFusionLib.synthetic.chest_ct import render_ct  # noqa: E402
from BreastFusionLib.synthetic.latent import sample_lesions  # noqa: E402

NIPPLE_OK_MM = 3.0
MASS_OK_MM = 5.0


def _summary(errors: np.ndarray, threshold: float) -> dict:
    finite = errors[np.isfinite(errors)]
    return {
        "n": int(errors.size),
        "not_found": int(errors.size - finite.size),
        "median_mm": float(np.median(finite)) if finite.size else None,
        "p95_mm": float(np.percentile(finite, 95)) if finite.size else None,
        "max_mm": float(finite.max()) if finite.size else None,
        f"fraction_within_{threshold:g}mm": float(np.mean(errors <= threshold)),  # not found counts as a miss
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the summary and per-case rows here")
    parser.add_argument("--failures", type=Path, help="folder for overlays of proposals more than 5 mm off")
    args = parser.parse_args()

    rows = []
    timings = {"render_s": [], "find_nipples_s": [], "propose_mass_s": []}
    for spec in sample_lesions(args.cases, seed=args.seed):
        start = time.perf_counter()
        case = render_ct(spec, np.random.default_rng(spec.seed))
        timings["render_s"].append(time.perf_counter() - start)
        start = time.perf_counter()
        nipples = find_nipples(case.volume)
        timings["find_nipples_s"].append(time.perf_counter() - start)
        row = {"case_id": spec.case_id, "side": spec.side, "clock_hour": spec.clock_hour, "distance_mm": case.distance_mm,
               "diameter_mm": spec.diameter_mm, "ct_appearance": spec.ct_appearance}
        for side in ("right", "left"):
            found = nipples[side]
            row[f"nipple_{side}_mm"] = float(np.linalg.norm(found.point_ras - case.nipples_ras[side])) if found.found else float("inf")
            row[f"nipple_{side}_confidence"] = found.confidence
        position = ClockPosition(spec.side, spec.clock_hour, case.distance_mm)
        for source, nipple in (("detected", nipples[spec.side].point_ras), ("true", case.nipples_ras[spec.side])):
            if nipple is None:
                row[f"mass_{source}_mm"], row[f"score_{source}"] = float("inf"), 0.0
                continue
            start = time.perf_counter()
            proposal = propose_mass(case.volume, nipple, position)
            if source == "detected":
                timings["propose_mass_s"].append(time.perf_counter() - start)
                seen = clock_from_point(case.nipples_ras[spec.side], proposal.point_ras, spec.side)
                row["proposal_hour_seen"], row["proposal_distance_seen_mm"] = seen.hour, seen.distance_mm
                row["proposal_depth_error_mm"] = float(proposal.point_ras[1] - case.mass_ras[1])
            row[f"mass_{source}_mm"] = float(np.linalg.norm(proposal.point_ras - case.mass_ras))
            row[f"score_{source}"] = proposal.score
        rows.append(row)
        if args.failures is not None and row["mass_detected_mm"] > MASS_OK_MM and nipples[spec.side].found:
            args.failures.mkdir(parents=True, exist_ok=True)
            if len(list(args.failures.glob("*.png"))) < 8:
                proposal = propose_mass(case.volume, nipples[spec.side].point_ras, position)
                region = candidate_region(case.volume, nipples[spec.side].point_ras, position)
                write_check_figure(case.volume, args.failures / f"{spec.case_id}.png", nipples, proposal.point_ras, region)

    nipple_errors = np.array([row[f"nipple_{side}_mm"] for row in rows for side in ("right", "left")])
    summary = {
        "cases": args.cases, "seed": args.seed,
        "nipples_both_sides": _summary(nipple_errors, NIPPLE_OK_MM),
        "mass_from_detected_nipple": _summary(np.array([row["mass_detected_mm"] for row in rows]), MASS_OK_MM),
        "mass_from_true_nipple": _summary(np.array([row["mass_true_mm"] for row in rows]), MASS_OK_MM),
        "timings_s": {name: {"median": float(np.median(v)), "max": float(np.max(v))} for name, v in timings.items()},
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    print(f"{args.cases} synthetic cases (seed {args.seed}), volume 224 x 184 x 40 voxels of 1.5 x 1.5 x 3 mm")
    print(f"{'quantity':<38}{'median':>9}{'p95':>9}{'max':>9}{'within':>16}{'not found':>11}")
    for name, key, threshold in (("nipple error, both sides (mm)", "nipples_both_sides", NIPPLE_OK_MM),
                                 ("mass error, detected nipple (mm)", "mass_from_detected_nipple", MASS_OK_MM),
                                 ("mass error, true nipple (mm)", "mass_from_true_nipple", MASS_OK_MM)):
        s = summary[key]
        within = f"{100 * s[f'fraction_within_{threshold:g}mm']:.0f}% <= {threshold:g} mm"
        print(f"{name:<38}{s['median_mm']:>9.2f}{s['p95_mm']:>9.2f}{s['max_mm']:>9.2f}{within:>16}{s['not_found']:>11}")
    for name, value in summary["timings_s"].items():
        print(f"{name:<38}{value['median']:>9.3f}{'':>9}{value['max']:>9.3f}")
    misses = [row for row in rows if row["mass_detected_mm"] > MASS_OK_MM]
    for row in sorted(misses, key=lambda r: -r["mass_detected_mm"])[:10]:
        print(f"  miss {row['case_id']}: {row['mass_detected_mm']:.1f} mm off (true nipple: {row['mass_true_mm']:.1f}), "
              f"{row['side']} {row['clock_hour']:g} h, {row['distance_mm']:.0f} mm, mass {row['diameter_mm']:.0f} mm, "
              f"t={row['ct_appearance']:.2f}, score {row['score_detected']:.2f}, depth error {row.get('proposal_depth_error_mm', float('nan')):+.1f} mm")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "cases": rows}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
