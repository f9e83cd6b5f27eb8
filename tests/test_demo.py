"""The main job end to end on a tiny cohort: cohort -> splits -> crops -> three models -> Table 1."""

import json

from BreastFusionLib.demo import run_demo


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
