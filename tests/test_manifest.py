"""The manifest loader: parsed values, and every problem reported at once with line, column and value."""

from pathlib import Path

import pytest
from PIL import Image

from BreastFusionLib.cohort.manifest import load_manifest, write_manifest
from BreastFusionLib.errors import UserInputError

HEADER = "case_id,patient_id,label,us_image,us_box,ct_image,ct_point_ras,split,fold\n"


@pytest.fixture()
def folder(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "us.png")
    return tmp_path


def test_good_manifest_is_parsed_and_round_trips(folder):
    (folder / "m.csv").write_text(HEADER + "c1,p1,Malignant,us.png,\"1,2,5,6\",,,train,0\nc2,p2,benign,us.png,\"0,0,3,3\",,,test,1\n")
    cases = load_manifest(folder / "m.csv")
    assert cases[0]["label"] == 1 and cases[0]["label_name"] == "malignant"
    assert cases[0]["us_box"] == (1, 2, 5, 6) and cases[0]["fold"] == 0
    assert cases[0]["us_image"] == str(folder / "us.png")
    write_manifest(cases, folder / "again.csv")
    assert load_manifest(folder / "again.csv") == cases


def test_all_problems_are_reported_with_line_column_and_value(folder):
    rows = [
        "c1,p1,maybe,us.png,,,,,",          # unknown label
        "c1,p2,benign,missing.png,,,,,",    # duplicate id, missing file
        "c3,,benign,,,,,,",                 # empty patient, no image
        "c4,p4,benign,us.png,\"5,5,1,1\",,\"1,2\",later,-1",  # bad box, point, split, fold
    ]
    (folder / "m.csv").write_text(HEADER + "\n".join(rows) + "\n")
    with pytest.raises(UserInputError) as error:
        load_manifest(folder / "m.csv")
    message = str(error.value)
    for expected in ("line 2, column label = 'maybe'", "line 3, column us_image", "file not found",
                     "line 3, column case_id = 'c1': duplicate of line 2", "line 4, column patient_id",
                     "neither us_image nor ct_image", "line 5, column us_box", "line 5, column ct_point_ras",
                     "line 5, column split = 'later'", "line 5, column fold = -1"):
        assert expected in message


def test_missing_columns_and_missing_file(folder):
    (folder / "m.csv").write_text("case_id,label\nc1,benign\n")
    with pytest.raises(UserInputError, match=r"missing required column\(s\) \['patient_id'\]"):
        load_manifest(folder / "m.csv")
    with pytest.raises(UserInputError, match="manifest not found"):
        load_manifest(folder / "absent.csv")


def test_validate_command_summarises_or_lists_problems(folder, capsys):
    from BreastFusionLib.cli import main

    (folder / "m.csv").write_text(HEADER + "c1,p1,malignant,us.png,\"1,1,4,4\",,,train,\nc2,p2,benign,us.png,\"1,1,4,4\",,,,\n")
    assert main(["validate", str(folder / "m.csv")]) == 0
    assert "OK: 2 cases (1 benign, 1 malignant), US: 2, CT: 0" in capsys.readouterr().out
    (folder / "bad.csv").write_text(HEADER + "c1,p1,maybe,us.png,,,,,\n")
    assert main(["validate", str(folder / "bad.csv")]) == 1
    error = capsys.readouterr().err
    assert "line 2, column label = 'maybe'" in error and "Traceback" not in error


def test_locations_readers_conflicts_and_unreadable_files(folder):
    (folder / "broken.png").write_bytes(b"not a png at all")
    (folder / "ct.nii.gz").write_bytes(b"")
    header = "case_id,patient_id,label,us_image,us_box,ct_image,ct_side,ct_clock,ct_distance_mm,reader_us,reader_ct,lesion_id\n"
    rows = [
        "c1,p1,benign,us.png,,,,,,3,0.2,L1",                      # no US location
        "c2,p1,malignant,us.png,\"1,1,4,4\",,,,,4a,0.9,L1",     # same lesion as c1, other label
        "c3,p3,benign,broken.png,\"1,1,4,4\",,,,,7,1.5,L3",     # unreadable image, BI-RADS 7, probability > 1
        "c4,p4,benign,us.png,\"1,1,4,4\",ct.nii.gz,left,13 o'clock,-3 cm,2,0.1,L4",  # empty CT, bad clock/distance
        "c5,p5,benign,us.png,\"1,1,4,4\",us.png,right,2:30,,2,0.1,L5",  # incomplete clock location
    ]
    (folder / "m.csv").write_text(header + "\n".join(rows) + "\n")
    with pytest.raises(UserInputError) as error:
        load_manifest(folder / "m.csv")
    message = str(error.value)
    for expected in ("line 2, column us_box = '': a raw US image needs a lesion location",
                     "line 3, column label = 'malignant': conflicts with line 2 (benign)",
                     "line 4, column us_image", "not a readable image",
                     "line 4, column reader_us = '7': not a BI-RADS category",
                     "line 4, column reader_ct = '1.5': a malignancy probability must be in [0, 1]",
                     "line 5, column ct_image", "the file is empty",
                     "line 5, column ct_clock = \"13 o'clock\"", "line 5, column ct_distance_mm = '-3 cm'",
                     "line 6, column ct_side = 'right': a clock location needs all of"):
        assert expected in message, expected


def test_clock_location_is_parsed(folder):
    header = "case_id,patient_id,label,ct_image,ct_side,ct_clock,ct_distance_mm,reader_us\n"
    (folder / "m.csv").write_text(header + "c1,p1,benign,us.png,L,2 o'clock,3.5 cm,4b\nc2,p2,benign,us.png,R,12:30,5,3\n")
    cases = load_manifest(folder / "m.csv")
    assert (cases[0]["ct_side"], cases[0]["ct_clock"], cases[0]["ct_distance_mm"]) == ("left", 2.0, 35.0)
    assert cases[1]["ct_clock"] == 0.5
    write_manifest(cases, folder / "again.csv")
    assert "12:30" in (folder / "again.csv").read_text() and load_manifest(folder / "again.csv") == cases


def test_relative_manifest_paths_survive_a_round_trip(folder, monkeypatch):
    monkeypatch.chdir(folder.parent)
    (folder / "m.csv").write_text("case_id,patient_id,label,us_image,us_box\nc1,p1,benign,us.png,\"0,0,3,3\"\n")
    cases = load_manifest(Path(folder.name) / "m.csv")  # a relative manifest path, as the demo's default
    assert Path(cases[0]["us_image"]).is_absolute()
    write_manifest(cases, Path(folder.name) / "sub" / "again.csv")
    assert load_manifest(Path(folder.name) / "sub" / "again.csv")[0]["us_image"] == cases[0]["us_image"]
