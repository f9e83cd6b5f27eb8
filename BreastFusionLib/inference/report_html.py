"""A one-page, self-contained HTML report of one prediction (images embedded as base64 PNG)."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from BreastFusionLib.display import ensemble_text, hit_rate_text
from BreastFusionLib.inference.loaded_bundle import ARCHITECTURES

NAMES = {"us": "Ultrasound (US)", "ct": "Chest CT", "fusion": "US + CT fusion"}


def _image(path: Path, alt: str, width: int | None = None) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    size = f' width="{width}"' if width else ""
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}"{size}>'


def _map_table(info: dict, key: str) -> str:
    """What each map of crop ``key`` shows, whether it is flat, and its measured pointing-game hit rate."""
    rows = []
    for model, branches in info.items():
        for kind, entry in branches.get(key, {}).items():
            flat = "<b>flat: no evidence for this class</b>" if entry["flat"] and entry["explains"] else ""
            rows.append(f"<tr><td>{NAMES[model]}</td><td>{escape(entry['map'])} {flat}</td>"
                        f"<td>{escape(hit_rate_text(entry['hit_rate']))}</td></tr>")
    return ("<table><tr><th>Model</th><th>Map</th><th>Peak on the lesion (pointing game)</th></tr>"
            + "".join(rows) + "</table>")


def write_report_html(path: Path, record: dict, result, bundle, out: Path) -> None:
    """Write ``report.html`` from the result.json ``record`` and the image files already in ``out``."""
    rows = []
    for name, entry in record["models"].items():
        model = result.models[name]
        missing = entry["missing_modality"]
        rows.append(
            f"<tr><td>{NAMES[name]}</td><td><b>{entry['probability']:.3f}</b></td><td>{entry['threshold']:.3f}</td>"
            f"<td class='{entry['decision']}'>{entry['decision']}</td>"
            f"<td>{'none' if missing is None else escape(NAMES[missing]) + ' missing: answered from the other modality'}</td>"
            f"<td>{escape(ensemble_text(entry.get('ensemble')) or 'one model')}</td>"
            f"<td>{model.raw_probability:.3f} / {model.raw_threshold:.3f}, T = {model.temperature:.2f}</td></tr>")
    location = record["localization"]
    if location:
        where = (f"{escape(str(location['side']))} breast, {escape(str(location['clock'] or 'clock unknown'))}, "
                 f"{location['distance_mm'] if location['distance_mm'] is not None else '?'} mm from the nipple; "
                 f"lesion point RAS {location['point_ras']} mm, nipple RAS {location['nipple_ras']}, "
                 f"axial slice k = {location['ct_slice_index']}")
    else:
        where = "no CT given"
    crops = " ".join(f"<figure>{_image(out / file, key + ' crop', 240)}<figcaption>{NAMES[key]} crop</figcaption></figure>"
                     for key, file in record["crops"].items())
    overlays = "".join(f"<h3>{NAMES[key]}</h3>{_image(out / file, key + ' heat maps over the crop')}"
                       f"{_map_table(record['heatmap_info'], key)}" for key, file in record["overlays"].items())
    checkpoints = "".join(f"<li>{name}: {ARCHITECTURES[c['backbone']]}, {escape(c['file'])}, "
                          f"sha256 {c['sha256'][:16]}…</li>" for name, c in record["model"]["checkpoints"].items())
    notes = "".join(f"<li>{escape(note)}</li>" for note in result.notes)
    timings = ", ".join(f"{escape(k)} {v:.2f} s" for k, v in record["timings_s"].items())
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>BreastFusion prediction</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:1em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:4px 8px}}
.malignant{{color:#b00;font-weight:bold}}.benign{{color:#060;font-weight:bold}}
.warn{{background:#fee;border:2px solid #b00;padding:8px;font-weight:bold}}
figure{{display:inline-block;margin:4px}}img{{max-width:100%}}</style></head><body>
<h1>BreastFusion prediction</h1>
<p class="warn">{escape(record['disclaimer'])}</p>
<h2>Probability of malignancy</h2>
<table><tr><th>Model</th><th>Probability (calibrated)</th><th>Threshold</th><th>Decision</th><th>Missing modality</th>
<th>Ensemble members (uncertainty)</th><th>Uncalibrated probability / threshold</th></tr>{''.join(rows)}</table>
<p>Decision: malignant when the probability is at least the threshold, which was chosen on validation data
(Youden's J). Probabilities are temperature-scaled on the validation predictions; this does not change any decision.
An ensemble's probability is the mean of its members' calibrated probabilities; their range and spread show how
much the members disagree (a wide range or a split vote: read the answer with more caution).</p>
<h2>Localization</h2><p>{where}</p>
<h2>Crops</h2>{crops}
<h2>Heat maps</h2><p>Each map is drawn over the crop the model saw; the small view on the left shows the
whole image with that crop in yellow. A map marks where the model found evidence; it is not a segmentation,
and how often its peak falls on the lesion is measured (the "pointing game" below each set of maps).</p>{overlays}
<h2>Model</h2><p>Bundle version {escape(str(record['model']['bundle_version']))}</p><ul>{checkpoints}</ul>
{f'<h2>Notes</h2><ul>{notes}</ul>' if notes else ''}
<p><small>Timings: {timings}</small></p>
<p class="warn">{escape(record['disclaimer'])}</p>
</body></html>
"""
    path.write_text(html, encoding="utf-8")
