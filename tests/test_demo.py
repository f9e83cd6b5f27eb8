"""The main job end to end on a tiny cohort: cohort -> splits -> crops -> three models -> Table 1."""

import argparse
import json

import pytest

from BreastFusionLib.demo import _bundle_setting, run_demo


def test_demo_writes_the_comparison_report(tmp_path, capsys):
    report = run_demo(tmp_path / "demo", cases=40, seed=1, epochs=1, overrides={"spatial_size": 32})
    table = (report / "table1.md").read_text()
    for row in ("| us |", "| ct |", "| fusion |", "| late_fusion |", "| reader_us |", "| fusion vs us |"):
        assert row in table, row
    comparison = json.loads((report / "comparison.json").read_text())
    assert set(comparison["metrics"]) >= {"us", "ct", "fusion", "late_fusion", "reader_us", "reader_ct"}
    assert (report / "roc_all.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "epoch 1: validation AUC" in out and "Report:" in out


def test_demo_bundle_settings_parse_and_bad_ones_are_named():
    assert _bundle_setting("spatial_size=224") == ("spatial_size", "224")
    assert _bundle_setting(" backbone = cbam_efficientnet_lite0 ") == ("backbone", "cbam_efficientnet_lite0")
    with pytest.raises(argparse.ArgumentTypeError, match="'spatial_size'"):
        _bundle_setting("spatial_size")
