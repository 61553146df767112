"""The painted mouth interior (`vasa.face.mesh.mouth`): teeth that read as separate teeth, a cavity that
darkens toward the corners, and teeth colours sampled only from what looks like teeth."""

import cv2
import numpy as np
import pytest

from vasa.face.mesh import mouth
from vasa.face.mesh.model import INNER_LIPS_LOWER, INNER_LIPS_UPPER, OUTER_LIPS

SIZE = 512
SKIN = np.array([200, 150, 120], np.uint8)
CENTRE, HALF_WIDTH, GAP = np.array([0.5, 0.7]), 0.1, 0.07  # crop units


def open_mouth_points(gap: float = GAP) -> np.ndarray:
    """478 landmarks, all at the mouth centre except the inner and outer lips: an open mouth whose
    inner contour is two arcs `gap` apart in the middle, meeting at the corners."""
    points = np.tile(CENTRE, (478, 1))
    upper = np.linspace(-1, 1, len(INNER_LIPS_UPPER))  # left to right
    lower = np.linspace(1, -1, len(INNER_LIPS_LOWER))  # right to left
    for indices, u, side in ((INNER_LIPS_UPPER, upper, -1), (INNER_LIPS_LOWER, lower, 1)):
        for k, a in zip(indices, u):
            points[k] = CENTRE + [a * HALF_WIDTH, side * gap / 2 * np.sqrt(1 - a**2)]
    angles = np.linspace(0, 2 * np.pi, len(OUTER_LIPS), endpoint=False)
    for k, a in zip(OUTER_LIPS, angles):
        points[k] = CENTRE + [-1.3 * HALF_WIDTH * np.cos(a), -1.3 * gap * np.sin(a)]
    return points


def luma(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ [0.299, 0.587, 0.114]


@pytest.fixture(scope="module")
def painted():
    style = mouth.MouthStyle(lip_rgb=np.array([190.0, 90.0, 90.0]), teeth_rgb=mouth.DEFAULT_TEETH_RGB, source_area=0.0)
    frame = np.tile(SKIN, (SIZE, SIZE, 1))
    return luma(mouth.paint_interior(frame, open_mouth_points(), style))


def column(x_units: float) -> int:
    return int(round((CENTRE[0] + x_units) * SIZE))


def test_upper_teeth_are_separate_teeth(painted):
    # A row through the upper teeth, across the middle 70 % of the mouth: the seams between teeth
    # are darker than the teeth beside them, at least two on each side of the midline and the midline's.
    y = int(round((CENTRE[1] - GAP / 2 + 0.25 * mouth.UPPER_TEETH_PER_WIDTH * 2 * HALF_WIDTH) * SIZE))
    row = painted[y, column(-0.7 * HALF_WIDTH):column(0.7 * HALF_WIDTH)]
    seams = [k for k in range(3, len(row) - 3) if row[k] == row[k - 3:k + 4].min() and row[k] < 0.9 * row[k - 3:k + 4].max()]
    assert len(seams) >= 5
    assert row.max() > 1.1 * luma(SKIN[None])[0]  # teeth brighter than the skin around the mouth


def visible_teeth_length(painted: np.ndarray, x_units: float) -> int:
    """Pixels below the upper lip that are far brighter than the dark cavity, in one column."""
    x = column(x_units)
    top = int(round((CENTRE[1] - GAP / 2 * np.sqrt(1 - (x_units / HALF_WIDTH) ** 2)) * SIZE))
    bright = painted[top:top + int(GAP * SIZE), x] > 0.6 * luma(SKIN[None])[0]
    return int(np.argmin(bright)) if not bright.all() else len(bright)


def test_teeth_shorten_and_darken_toward_the_corners(painted):
    middle, side = visible_teeth_length(painted, 0.02 * HALF_WIDTH), visible_teeth_length(painted, 0.75 * HALF_WIDTH)
    assert middle > 1.3 * side > 0
    y = int(round(CENTRE[1] * SIZE + 0.25 * GAP * SIZE))  # below the teeth, in the cavity
    assert painted[y, column(0.8 * HALF_WIDTH)] < painted[y, column(0.3 * HALF_WIDTH)]


def test_pink_inside_an_open_mouth_is_not_taken_for_teeth():
    points = open_mouth_points(gap=0.05)
    image = np.tile(SKIN, (SIZE, SIZE, 1))
    inner = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(inner, [np.round(mouth.inner_lip_polygon(points) * SIZE).astype(np.int32)], 1)
    for colour, teeth in (((235, 165, 185), False), ((235, 232, 222), True)):  # gums, then teeth
        image[inner > 0] = colour
        style = mouth.mouth_style(image, points)
        if teeth:
            np.testing.assert_allclose(style.teeth_rgb, colour, atol=20)
        else:
            assert np.ptp(style.teeth_rgb) < mouth.TEETH_MAX_CHROMA


def test_closing_an_open_mouthed_portrait_paints_over_squeezed_teeth():
    # The warp squeezes an open-mouthed portrait's teeth into the sliver between closing lips; the
    # painter covers it with what lies beyond the sliver, and a dark line where the lips meet.
    points = open_mouth_points(gap=0.004)  # ~2 px apart at 512
    sliver = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(sliver, [np.round(mouth.inner_lip_polygon(points) * SIZE).astype(np.int32)], 1)
    lip = np.array([180.0, 90.0, 90.0])
    frame = np.tile(SKIN, (SIZE, SIZE, 1))
    frame[sliver > 0] = 245  # white teeth, squeezed
    style = mouth.MouthStyle(lip_rgb=lip, teeth_rgb=mouth.DEFAULT_TEETH_RGB, source_area=0.01)
    out = luma(mouth.paint_interior(frame.copy(), points, style))[sliver > 0]
    assert out.max() < luma(SKIN[None])[0] + 2  # no teeth left on the line: the surroundings' tones
    assert out.min() < 0.6 * luma(lip[None])[0]  # the dark line where the lips meet


def test_lips_pressed_together_on_a_closed_mouthed_portrait_are_left_alone():
    points = open_mouth_points(gap=-0.004)  # upper lip below the lower: crossed
    assert mouth.polygon_area(mouth.inner_lip_polygon(points)) < 0
    style = mouth.MouthStyle(lip_rgb=np.array([180.0, 90.0, 90.0]), teeth_rgb=mouth.DEFAULT_TEETH_RGB, source_area=0.0)
    frame = np.tile(SKIN, (SIZE, SIZE, 1))
    np.testing.assert_array_equal(mouth.paint_interior(frame.copy(), points, style), frame)


def test_opening_less_than_an_open_portrait_keeps_its_own_interior():
    points = open_mouth_points(gap=0.05)
    style = mouth.MouthStyle(lip_rgb=np.array([180.0, 90.0, 90.0]), teeth_rgb=mouth.DEFAULT_TEETH_RGB,
                             source_area=1.2 * mouth.polygon_area(mouth.inner_lip_polygon(points)))
    frame = np.tile(SKIN, (SIZE, SIZE, 1))
    np.testing.assert_array_equal(mouth.paint_interior(frame.copy(), points, style), frame)


def portrait_showing_teeth(gap: float = 0.04, teeth_px: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A portrait whose open mouth shows upper teeth `teeth_px` tall under the upper lip, brightening
    from left to right (a pattern the drawn teeth do not have), dark below them."""
    points = open_mouth_points(gap=gap)
    image = np.tile(SKIN, (SIZE, SIZE, 1))
    inner = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(inner, [np.round(mouth.inner_lip_polygon(points) * SIZE).astype(np.int32)], 1)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    left = (CENTRE[0] - HALF_WIDTH) * SIZE
    upper_lip = (CENTRE[1] - gap / 2 * np.sqrt(np.clip(1 - ((xs + 0.5) / SIZE - CENTRE[0]) ** 2 / HALF_WIDTH**2, 0, 1))) * SIZE
    ramp = 205 + 45 * np.clip((xs - left) / (2 * HALF_WIDTH * SIZE), 0, 1)
    teeth = (inner > 0) & (ys < upper_lip + teeth_px)
    image[inner > 0] = 30
    image[teeth] = np.stack([ramp[teeth]] * 3, axis=-1).astype(np.uint8)
    return image, points


def test_a_portrait_that_shows_its_teeth_keeps_them_when_the_mouth_opens_wider():
    image, points = portrait_showing_teeth()
    style = mouth.mouth_style(image, points)
    assert style.teeth_strip is not None
    wide = open_mouth_points(gap=0.09)
    painted = luma(mouth.paint_interior(np.tile(SKIN, (SIZE, SIZE, 1)), wide, style))
    # Just under the upper lip, across the middle of the mouth: the portrait's left-to-right ramp.
    y = int(round((CENTRE[1] - 0.09 / 2) * SIZE)) + 5
    columns = np.arange(column(-0.4 * HALF_WIDTH), column(0.4 * HALF_WIDTH))
    assert np.corrcoef(painted[y, columns], columns)[0, 1] > 0.95
    # Teeth the size they are in the photo (10 px), not stretched with the opening.
    x = column(0.0)
    top = int(round((CENTRE[1] - 0.09 / 2) * SIZE))
    shown = np.flatnonzero(painted[top:top + 40, x] > 150)
    assert 7 <= shown.max() - shown.min() + 1 <= 13
