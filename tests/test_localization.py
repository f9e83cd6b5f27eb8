"""Clock/distance parsing, nipple detection and mass proposal on a supine-chest phantom and on real CT."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import real_data
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from BreastFusionLib.ct.volume import CTVolume, from_sitk, to_sitk
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.localization.clock import ClockPosition, clock_from_point, point_from_clock
from BreastFusionLib.localization.body import body_mask
from BreastFusionLib.localization.mass import candidate_region, propose_mass
from BreastFusionLib.localization.nipples import find_nipples
from BreastFusionLib.localization.parsing import parse_clock, parse_distance_mm, parse_side


# Phantom anatomy, RAS mm: body ellipse, breasts as spheres on the chest wall, nipple bumps on their apex.
BODY_SEMI_AXES = (140.0, 90.0)  # x, y
FAT_MM = 15.0
LUNGS = ((65.0, -5.0), (45.0, 60.0))  # centre x (mirrored), centre y; semi-axes x, y
BREAST_X, BREAST_RADIUS, NIPPLE_RADIUS = 80.0, 45.0, 4.0


def phantom_nipple(side: str, breast_z: float = 0.0) -> np.ndarray:
    """RAS nipple tip of the phantom: on the breast sphere sitting on the body ellipse."""
    a, b = BODY_SEMI_AXES
    chest_y = b * np.sqrt(1 - (BREAST_X / a) ** 2)
    return np.array([BREAST_X if side == "right" else -BREAST_X, chest_y + BREAST_RADIUS + NIPPLE_RADIUS, breast_z])


def chest_phantom(
    shape_ijk: tuple[int, int, int] = (320, 240, 64),
    spacing: tuple[float, float, float] = (1.0, 1.0, 2.5),
    z_start: float = -80.0,
    breast_z: float = 0.0,
    masses: tuple[tuple[np.ndarray, float], ...] = (),
    noise_hu: float = 8.0,
) -> tuple[CTVolume, dict[str, np.ndarray]]:
    """Supine chest CT in the canonical orientation, and the RAS nipple tips by side.

    ``masses`` holds (centre RAS, radius mm) balls of 40 HU. Voxel (i, j, k) lies at
    x = x0 - i sx, y = y0 - j sy, z = z_start + k sz: i toward the patient's left, j posterior, k superior.
    """
    ni, nj, nk = shape_ijk
    sx, sy, sz = spacing
    x0, y0 = (ni - 1) / 2 * sx, 135.0
    x = (x0 - np.arange(ni) * sx)[None, None, :]
    y = (y0 - np.arange(nj) * sy)[None, :, None]
    z = (z_start + np.arange(nk) * sz)[:, None, None]
    a, b = BODY_SEMI_AXES
    section = np.full((1, nj, ni), -1000, np.int16)
    section[(x / a) ** 2 + (y / b) ** 2 <= 1] = -100
    section[(x / (a - FAT_MM)) ** 2 + (y / (b - FAT_MM)) ** 2 <= 1] = 40
    (lung_x, lung_y), (lung_a, lung_b) = LUNGS
    section[((np.abs(x) - lung_x) / lung_a) ** 2 + ((y - lung_y) / lung_b) ** 2 <= 1] = -850
    hu = np.repeat(section, nk, axis=0)
    nipples = {side: phantom_nipple(side, breast_z) for side in ("right", "left")}
    for side, sign in (("right", 1.0), ("left", -1.0)):
        apex = nipples[side] - [0.0, NIPPLE_RADIUS, 0.0]
        balls = [(apex - [0.0, BREAST_RADIUS, 0.0], BREAST_RADIUS, -100), (apex, NIPPLE_RADIUS, 40)]
        for ball_centre, radius, value in balls + [(m, r, 40) for m, r in masses if np.sign(m[0]) == sign]:
            inside = ((x - ball_centre[0]) ** 2 + (y - ball_centre[1]) ** 2 + (z - ball_centre[2]) ** 2) <= radius**2
            hu[inside] = value
    rng = np.random.default_rng(0)
    hu = (hu + rng.normal(0.0, noise_hu, hu.shape)).astype(np.int16) if noise_hu else hu
    matrix = np.diag([-sx, -sy, sz, 1.0])
    matrix[:3, 3] = (x0, y0, z_start)
    return CTVolume(hu=hu, ijk_to_ras=matrix), nipples


# ---- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hour"),
    [
        ("2", 2.0), ("2:30", 2.5), ("2 o'clock", 2.0), ("2 o\u2019clock", 2.0), ("230", 2.5),
        ("11:45", 11.75), ("12", 12.0), ("12:30", 0.5), (" 10 O'Clock ", 10.0),
    ],
)
def test_parse_clock_accepts_the_usual_forms(text, hour):
    assert parse_clock(text) == pytest.approx(hour)


@pytest.mark.parametrize("text", ["13 o'clock", "0:75", "", "abc", "0", "2:60", "-3"])
def test_parse_clock_rejects_with_the_value_and_the_accepted_forms(text):
    with pytest.raises(UserInputError) as error:
        parse_clock(text)
    assert repr(text) in str(error.value) and "1 to 12" in str(error.value) and "2:30" in str(error.value)


@pytest.mark.parametrize(("text", "mm"), [("30", 30.0), ("30mm", 30.0), ("30 mm", 30.0), ("3cm", 30.0), ("3.5 cm", 35.0), ("0", 0.0)])
def test_parse_distance_accepts_mm_and_cm(text, mm):
    assert parse_distance_mm(text) == pytest.approx(mm)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("-5", "negative"), ("-2 cm", "negative"), ("abc", "not a number"), ("", "not a number"),
        ("30 km", "not a number"), ("300", "at most 250"), ("26 cm", "at most 250"),
    ],
)
def test_parse_distance_rejects_negative_non_numeric_and_absurd(text, why):
    with pytest.raises(UserInputError, match=why) as error:
        parse_distance_mm(text)
    assert repr(text) in str(error.value)


def test_parse_side():
    assert [parse_side(t) for t in ("left", "L", "r", " Right ", "RT")] == ["left", "left", "right", "right", "right"]
    with pytest.raises(UserInputError, match="'middle'.*left.*right"):
        parse_side("middle")


@settings(max_examples=200, deadline=None)
@given(
    side=st.sampled_from(["right", "left"]),
    hours=st.integers(1, 12),
    minutes=st.integers(0, 59),
    distance=st.floats(0.5, 200.0),
    depth=st.floats(-50.0, 0.0),
)
def test_typed_clock_round_trips_through_a_point(side, hours, minutes, distance, depth):
    nipple = np.array([80.0 if side == "right" else -80.0, 120.0, -10.0])
    hour = parse_clock(f"{hours}:{minutes:02d}")
    position = ClockPosition(side, hour, parse_distance_mm(f"{distance / 10:.6f} cm"))
    back = clock_from_point(nipple, point_from_clock(nipple, position, depth_y=nipple[1] + depth), side)
    assert back.side == side
    assert abs((back.hour - hour + 6) % 12 - 6) < 1e-6
    assert back.distance_mm == pytest.approx(position.distance_mm, abs=1e-6)


# ---- phantom -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantom():
    return chest_phantom()


def test_phantom_geometry_is_the_canonical_one_from_sitk(phantom):
    volume, nipples = phantom
    again = from_sitk(to_sitk(volume))
    np.testing.assert_allclose(again.ijk_to_ras, volume.ijk_to_ras)
    np.testing.assert_array_equal(again.hu, volume.hu)
    ijk = np.rint(volume.ras_to_ijk(nipples["right"] - [0, 1.0, 0])).astype(int)
    assert ijk[0] < volume.hu.shape[2] / 2  # patient right (+x) is low i
    assert volume.hu[ijk[2], ijk[1], ijk[0]] > 0  # just behind the right nipple tip: soft tissue


def test_body_mask_fills_the_lungs_and_leaves_out_air_and_table():
    volume, _ = chest_phantom(shape_ijk=(320, 240, 8))
    volume.hu[:, 235:238, 40:280] = 200  # a table under the patient, not touching the body
    volume.hu[:, 40:43, 150:153] = 500  # a skin marker floating in front of the chest
    body = body_mask(volume)
    assert body[4, 120, 95]  # inside the right lung (x = +64.5, y = 15)
    assert not body[4, 236, 100] and not body[4, 41, 151] and not body[4, 5, 5]
    assert body.sum() == pytest.approx(8 * np.pi * 140 * 90, rel=0.02)


def test_nipples_found_within_3_mm_on_both_sides(phantom):
    volume, nipples = phantom
    found = find_nipples(volume)
    for side in ("right", "left"):
        result = found[side]
        assert result.found and result.side == side, result.message
        assert np.linalg.norm(result.point_ras - nipples[side]) < 3.0
        np.testing.assert_allclose(volume.ijk_to_ras_points(result.ijk), result.point_ras)
        assert result.confidence > 0.8


def test_nipples_do_not_depend_on_the_array_orientation(phantom):
    volume, nipples = phantom
    matrix = volume.ijk_to_ras.copy()
    matrix[:3, 3] = volume.ijk_to_ras_points([volume.hu.shape[2] - 1, 0, volume.hu.shape[0] - 1])
    matrix[:3, 0] *= -1  # i now runs toward the patient's right
    matrix[:3, 2] *= -1  # k now runs inferior
    flipped = CTVolume(hu=volume.hu[::-1, :, ::-1], ijk_to_ras=matrix)
    found = find_nipples(flipped)
    for side in ("right", "left"):
        assert np.linalg.norm(found[side].point_ras - nipples[side]) < 3.0


def test_breasts_cut_by_the_lower_edge_are_reported_not_guessed():
    volume, _ = chest_phantom(z_start=10.0)  # the volume starts 10 mm above the nipples
    for side, result in find_nipples(volume).items():
        assert not result.found and result.point_ras is None and result.confidence == 0.0
        assert "outside the field of view" in result.message and "lower edge" in result.message


def test_an_empty_volume_reports_no_body():
    volume = CTVolume(hu=np.full((10, 50, 50), -1000, np.int16), ijk_to_ras=np.diag([-1.0, -1.0, 2.0, 1.0]))
    for result in find_nipples(volume).values():
        assert not result.found and "no body" in result.message


@pytest.mark.parametrize(
    ("side", "hour", "distance", "depth"), [("right", 10.0, 25.0, 22.0), ("left", 2.0, 30.0, 28.0), ("right", 5.5, 20.0, 15.0)]
)
def test_mass_at_a_reported_clock_position_is_proposed_within_5_mm(side, hour, distance, depth):
    position = ClockPosition(side, hour, distance)
    tip = phantom_nipple(side)
    mass = point_from_clock(tip, position, depth_y=tip[1] - depth)
    volume, _ = chest_phantom(masses=((mass, 5.0),))
    nipple = find_nipples(volume)[side].point_ras
    region = candidate_region(volume, nipple, position)
    assert region.any() and region.sum() < 0.02 * region.size
    proposal = propose_mass(volume, nipple, position)
    assert np.linalg.norm(proposal.point_ras - mass) < 5.0, proposal.message
    assert proposal.score > 0.5 and "clock position" in proposal.message
    np.testing.assert_allclose(volume.ijk_to_ras_points(proposal.ijk), proposal.point_ras)


def test_a_breast_without_a_mass_gets_a_low_score(phantom):
    volume, nipples = phantom
    position = ClockPosition("right", 10.0, 25.0)
    assert 0.0 <= propose_mass(volume, nipples["right"], position).score < 0.2
    uniform, _ = chest_phantom(shape_ijk=(320, 240, 40), z_start=-50.0, noise_hu=0.0)
    proposal = propose_mass(uniform, nipples["right"], position)
    assert proposal.score == 0.0 and "no soft-tissue blob" in proposal.message
    assert uniform.hu[tuple(np.rint(proposal.ijk).astype(int)[::-1])] == -100  # a point in the fatty breast


def test_clock_sides_match_the_anatomy(phantom):
    """3 o'clock is medial in the right breast and lateral in the left; 12 o'clock is superior."""
    volume, nipples = phantom
    right_3 = candidate_region(volume, nipples["right"], ClockPosition("right", 3.0, 30.0))
    left_3 = candidate_region(volume, nipples["left"], ClockPosition("left", 3.0, 30.0))
    twelve = candidate_region(volume, nipples["right"], ClockPosition("right", 12.0, 30.0))
    mean_ras = lambda mask: volume.ijk_to_ras_points(np.argwhere(mask)[:, ::-1].mean(axis=0))  # noqa: E731
    assert abs(mean_ras(right_3)[0]) < BREAST_X - 20  # toward the midline
    assert abs(mean_ras(left_3)[0]) > BREAST_X + 20  # away from the midline
    assert mean_ras(twelve)[2] > nipples["right"][2] + 20


@pytest.mark.parametrize("position", [ClockPosition("right", 9.0, 150.0), ClockPosition("left", 12.0, 200.0)])
def test_region_outside_the_body_or_volume_is_a_user_error(phantom, position):
    volume, nipples = phantom
    with pytest.raises(UserInputError, match="outside the body"):
        propose_mass(volume, nipples[position.side], position)


# ---- real CT ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_acrin_013_nipples_match_the_reference_apex():
    folder = real_data("CT-ACRIN-FLT-Breast_013")
    reference = json.loads((folder / "breast_apex_approx.json").read_text())
    assert reference["coordinate_system"].startswith("LPS")
    found = find_nipples(from_sitk(sitk.ReadImage(str(folder / "ct.nii.gz"))))
    for side in ("right", "left"):
        expected_ras = np.array(reference[f"{side}_breast"]["physical_LPS_mm"]) * [-1, -1, 1]
        assert found[side].found, found[side].message
        assert np.linalg.norm(found[side].point_ras - expected_ras) < 10.0
        assert found[side].confidence > 0.5


@pytest.mark.slow
def test_acrin_013_mass_proposal_stays_in_the_reported_sector():
    volume = from_sitk(sitk.ReadImage(str(real_data("CT-ACRIN-FLT-Breast_013") / "ct.nii.gz")))
    nipple = find_nipples(volume)["left"].point_ras
    position = ClockPosition("left", 2.0, 20.0)
    proposal = propose_mass(volume, nipple, position)
    assert 0.0 <= proposal.score <= 1.0
    assert candidate_region(volume, nipple, position)[tuple(np.rint(proposal.ijk).astype(int)[::-1])]
    seen = clock_from_point(nipple, proposal.point_ras, "left")
    assert abs(seen.hour - 2.0) <= 0.5 and abs(seen.distance_mm - 20.0) <= 10.0
    assert 5.0 < nipple[1] - proposal.point_ras[1] < 80.0  # under the skin, in front of the chest wall


@pytest.mark.slow
def test_acrin_001_breasts_below_the_field_of_view_are_reported():
    volume = from_sitk(sitk.ReadImage(str(real_data("CT-ACRIN-FLT-Breast_001") / "ct_thorax.nii.gz")))
    lowest_z = volume.ijk_to_ras[2, 3]
    for result in find_nipples(volume).values():
        if result.found:
            assert result.point_ras[2] < lowest_z + 15.0 and result.confidence < 0.5
        else:
            assert "lower edge" in result.message and result.point_ras is None


def test_one_rule_gives_side_clock_distance_and_depth_of_a_point():
    """describe_point: what locate, predict and the Slicer panel all say about a CT point."""
    from BreastFusionLib.localization.points import describe_point, side_of_point

    right, left = np.array([80.0, 100.0, 0.0]), np.array([-80.0, 100.0, 0.0])
    mass = np.array([-110.0, 80.0, 0.0])  # 30 mm lateral of the left nipple, 20 mm deep
    location = describe_point(mass, {"right": right, "left": left})
    assert (location.side, round(location.clock_hour, 6), location.distance_mm, location.depth_mm) == ("left", 3.0, 30.0, 20.0)
    assert location.describe() == "Left breast, 3:00 o'clock, 30 mm from the nipple, 20 mm deep"
    assert side_of_point(np.array([-5.0, 0, 0]), {"right": right, "left": left}) == ("left", "nearer nipple")
    # one nipple missing: the side comes from the sign of x, as the nearer nipple may be the other breast's
    assert side_of_point(np.array([5.0, 0, 0]), {"right": right, "left": None}) == ("right", "sign of x, +x = patient right")
    lost = describe_point(mass, {"right": right, "left": None})
    assert (lost.side, lost.clock_hour) == ("left", None) and "no left nipple" in lost.describe()
    assert describe_point(mass, {"right": right, "left": None}, side="right").side == "right"  # a given side wins
