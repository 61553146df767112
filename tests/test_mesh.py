"""The mesh face backend: exact reconstruction, disentangled pose and dynamics, and renders whose
re-extracted landmarks show the requested edit."""

import cv2
import numpy as np
import pytest

from vasa.errors import VasaError
from vasa.face.mesh import MeshFace, edits, mouth
from vasa.face.mesh.backend import FACE_OVAL
from vasa.face.mesh.model import IRIS_CENTERS, OUTER_LIPS
from vasa.latents import Motion


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return np.inf if mse == 0 else 10 * np.log10(255.0**2 / mse)


def polygon_mask(points_2d, size):
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(points_2d * size).astype(np.int32)], 1)
    return mask > 0


def luma(image):
    return image.astype(np.float64) @ [0.299, 0.587, 0.114]


# --- encode / decode -----------------------------------------------------------------------

def test_encode_gives_a_square_crop_and_matching_latents(face, encoded):
    appearance, motion = encoded
    assert appearance.image.shape == (face.size, face.size, 3) and appearance.image.dtype == np.uint8
    assert motion.pose.shape == (6,) and motion.dynamics.shape == (face.dynamics_dim,)
    assert appearance.source is motion
    assert 0.0 < motion.pose[5] < 1.0  # the face spans part of the crop


def test_decode_of_the_source_motion_reproduces_the_portrait(face, encoded):
    appearance, motion = encoded
    assert psnr(face.decode(appearance, motion), appearance.image) > 40.0


def test_target_points_of_the_source_motion_are_the_source_landmarks(face, encoded):
    appearance, motion = encoded
    np.testing.assert_allclose(face.target_points(appearance, motion)[:, :2],
                               appearance.texture.source_points, atol=1e-9)


def test_batch_decode_equals_single_decodes(face, encoded):
    appearance, motion = encoded
    batch = Motion.stack([motion, edits.turn(motion, yaw=10), edits.open_mouth(face, appearance, motion, 0.15)])
    frames = face.decode(appearance, batch)
    assert frames.shape == (3, face.size, face.size, 3) and frames.dtype == np.uint8
    for i in range(3):
        np.testing.assert_array_equal(frames[i], face.decode(appearance, batch[i]))


def test_decode_is_deterministic(face, encoded):
    appearance, motion = encoded
    turned = edits.turn(motion, yaw=-12, roll=4)
    np.testing.assert_array_equal(face.decode(appearance, turned), face.decode(appearance, turned))


def test_decode_rejects_dynamics_of_the_wrong_size(face, encoded):
    appearance, motion = encoded
    with pytest.raises(VasaError, match="dynamics"):
        face.decode(appearance, Motion(motion.pose, np.zeros(face.dynamics_dim + 1)))


@pytest.mark.parametrize("size", [128, 256])
def test_output_size_follows_the_backend_size(astronaut, size):
    face = MeshFace(size=size)
    appearance, motion = face.encode(astronaut)
    assert appearance.size == size
    assert face.decode(appearance, edits.turn(motion, yaw=10)).shape == (size, size, 3)


def test_too_small_size_is_rejected():
    with pytest.raises(VasaError, match="at least"):
        MeshFace(size=32)


@pytest.mark.parametrize("make", [
    lambda: np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3)),  # gradient
    lambda: np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8),  # noise
])
def test_image_without_a_face_raises(face, make):
    with pytest.raises(VasaError, match="no face"):
        face.encode(make())


# --- disentanglement ---------------------------------------------------------------------------

def test_pose_change_leaves_the_dynamics_unchanged(face, encoded):
    # Exact: Procrustes is equivariant, so the canonical shape of a re-posed face is the same shape.
    appearance, motion = encoded
    pose = motion.pose + [20.0, -10.0, 5.0, 0.03, -0.02, 0.0]
    pose[5] *= 1.1
    canonical, recovered, _ = face.model.canonicalize(face.target_points(appearance, motion.replace(pose=pose)))
    np.testing.assert_allclose(recovered, pose, atol=1e-6)
    np.testing.assert_allclose(face.model.encode_dynamics(canonical), motion.dynamics, atol=1e-6)


def test_dynamics_change_leaves_the_pose_unchanged(face, encoded):
    # Not exact: the mouth and eye components move the rigid points a little (they are only the
    # stillest landmarks), so the fitted pose drifts. Measured on the astronaut for a wide-open mouth,
    # a blink and a 25 deg glance: < 0.1 deg, < 0.001 crop units, 0.4% scale; bounds 5x, 10x, 2.5x that.
    appearance, motion = encoded
    edited = edits.open_mouth(face, appearance, motion, 0.2)
    edited = edits.blink(face, appearance, edited)
    edited = edits.look(face, appearance, edited, theta=25, phi=10)
    assert np.abs(edited.dynamics - motion.dynamics).max() > 0.1  # the edit did change z
    _, pose, _ = face.model.canonicalize(face.target_points(appearance, edited))
    np.testing.assert_allclose(pose[:3], motion.pose[:3], atol=0.5)
    np.testing.assert_allclose(pose[3:5], motion.pose[3:5], atol=0.01)
    assert pose[5] == pytest.approx(motion.pose[5], rel=0.01)


# --- edits reach their targets in the latent -----------------------------------------------------

def edited_canonical(face, appearance, motion):
    return appearance.identity + face.model.decode_dynamics(motion.dynamics - appearance.source.dynamics)


@pytest.mark.parametrize("opening", [0.0, 0.1, 0.2])
def test_open_mouth_sets_the_lip_gap(face, encoded, opening):
    appearance, motion = encoded
    edited = edits.open_mouth(face, appearance, motion, opening)
    assert face.model.mouth_opening(edited_canonical(face, appearance, edited)) == pytest.approx(opening, abs=0.005)


def test_blink_closes_the_lids_in_the_latent(face, encoded):
    appearance, motion = encoded
    closed = edits.blink(face, appearance, motion)
    np.testing.assert_allclose(face.model.eye_opening(edited_canonical(face, appearance, closed)), 0.0, atol=0.01)


@pytest.mark.parametrize("theta, phi", [(25, 0), (-25, 0), (0, 15), (20, -10)])
def test_look_sets_the_gaze_in_the_latent(face, encoded, theta, phi):
    appearance, motion = encoded
    edited = edits.look(face, appearance, motion, theta=theta, phi=phi)
    np.testing.assert_allclose(face.model.eye_gaze(edited_canonical(face, appearance, edited)), [theta, phi], atol=1.0)


def test_lids_follow_the_eyes_up_and_down(face, encoded):
    from vasa.face.mesh.model import RIGHT_EYE_LIDS

    appearance, motion = encoded
    lid = {phi: edited_canonical(face, appearance, edits.look(face, appearance, motion, theta=0, phi=phi))
           [RIGHT_EYE_LIDS[0], 1] for phi in (-15, 0, 15)}
    assert lid[15] < lid[0] - 0.01 and lid[-15] > lid[0] + 0.01  # canonical y points down


# --- rendering -------------------------------------------------------------------------------

def test_turning_the_head_changes_the_face(face, encoded):
    appearance, motion = encoded
    frame = face.decode(appearance, edits.turn(motion, yaw=20))
    inside = polygon_mask(appearance.texture.source_points[list(FACE_OVAL)], face.size)
    difference = np.abs(frame.astype(int) - appearance.image).max(axis=2)
    assert difference[inside].mean() > 5.0


@pytest.mark.parametrize("yaw", [20, -20])
def test_turning_the_head_holds_the_crop_border(face, encoded, yaw):
    appearance, motion = encoded
    frame = face.decode(appearance, edits.turn(motion, yaw=yaw))
    border = np.ones((face.size, face.size), bool)
    border[1:-1, 1:-1] = False
    np.testing.assert_array_equal(frame[border], appearance.image[border])


def test_turning_the_head_turns_the_rendered_face(face, encoded, remeasure):
    # The renderer is a 2D warp, so the re-extracted turn is smaller than asked; it must go the same way.
    appearance, motion = encoded
    _, left, _ = remeasure(face.decode(appearance, edits.turn(motion, yaw=-20)))
    _, right, _ = remeasure(face.decode(appearance, edits.turn(motion, yaw=20)))
    assert right[0] - left[0] > 15.0


def test_open_mouth_renders_a_dark_interior(face, encoded):
    appearance, motion = encoded
    edited = edits.open_mouth(face, appearance, motion, 0.2)
    frame = face.decode(appearance, edited)
    points = face.target_points(appearance, edited)[:, :2]
    inner = polygon_mask(mouth.inner_lip_polygon(points), face.size)
    lips = polygon_mask(points[list(OUTER_LIPS)], face.size) & ~inner
    brightness = luma(frame)
    assert brightness[inner].mean() < 0.85 * brightness[lips].mean()


def test_crossed_lips_get_only_the_line_where_they_meet(face, encoded):
    # Lips pushed past closed: no cavity is painted. The astronaut smiles with her teeth, so the
    # warp squeezes them toward the lip line; only a thin band along the inner-lip contour is
    # painted over, in lip tones (a closed-mouthed portrait is left alone: tests/test_mouth.py).
    appearance, motion = encoded
    crossed = edits.open_mouth(face, appearance, motion, -0.25)  # lips crossed by more than the portrait's gap
    points = face.target_points(appearance, crossed)[:, :2]
    assert face.model.mouth_opening(edited_canonical(face, appearance, crossed)) < 0
    frame = appearance.image.copy()
    painted = mouth.paint_interior(frame.copy(), points, appearance.texture.mouth)
    changed = np.any(painted != frame, axis=-1)
    line = np.zeros(changed.shape, np.uint8)
    cv2.polylines(line, [np.round(mouth.inner_lip_polygon(points) * face.size).astype(np.int32)], True, 1, 1)
    near_line = cv2.dilate(line, np.ones((9, 9), np.uint8)) > 0
    assert changed.any() and not (changed & ~near_line).any()
    lip_luma = luma(appearance.texture.mouth.lip_rgb[None])[0]
    assert luma(painted)[changed].min() > 0.9 * mouth.SEAM_SHADE * lip_luma  # a lip-toned line, no black cavity


def test_open_mouth_opens_the_rendered_mouth(face, encoded, remeasure):
    appearance, motion = encoded
    closed, _, _ = remeasure(face.decode(appearance, edits.open_mouth(face, appearance, motion, 0.0)))
    wide, _, _ = remeasure(face.decode(appearance, edits.open_mouth(face, appearance, motion, 0.2)))
    assert face.model.mouth_opening(wide) - face.model.mouth_opening(closed) > 0.08


def test_blink_closes_the_rendered_eyes(face, encoded, remeasure):
    appearance, motion = encoded
    open_eyes, _, _ = remeasure(face.decode(appearance, motion))
    closed_eyes, _, _ = remeasure(face.decode(appearance, edits.blink(face, appearance, motion)))
    assert (face.model.eye_opening(closed_eyes) < 0.5 * face.model.eye_opening(open_eyes)).all()


def test_look_moves_the_target_irises_apart(face, encoded):
    appearance, motion = encoded
    right = face.target_points(appearance, edits.look(face, appearance, motion, theta=25, phi=0))
    left = face.target_points(appearance, edits.look(face, appearance, motion, theta=-25, phi=0))
    source = appearance.texture.source_points
    iris = list(IRIS_CENTERS)
    assert (right[iris, 0] > source[iris, 0]).all() and (left[iris, 0] < source[iris, 0]).all()


def test_look_moves_the_rendered_irises(face, encoded, remeasure):
    # Glancing right then left: each re-extracted iris centre must follow at least half of the way
    # the tracker is meant to read (~8 px apart at 256 px for +-25 deg).
    appearance, motion = encoded
    iris = list(IRIS_CENTERS)
    asked, seen = [], []
    for theta in (25, -25):
        edited = edits.look(face, appearance, motion, theta=theta, phi=0)
        asked.append(face.target_points(appearance, edited)[iris, 0])
        seen.append(remeasure(face.decode(appearance, edited))[2][iris, 0])
    assert (asked[0] - asked[1] > 0).all()
    assert (seen[0] - seen[1] > 0.5 * (asked[0] - asked[1])).all()


@pytest.mark.parametrize("theta, phi", [(15, 0), (-15, 0), (0, 10), (0, -10)])
def test_a_rendered_look_reads_back_most_of_the_asked_gaze(face, encoded, remeasure, theta, phi):
    """The renderer paints the iris move divided by the tracker's gain on real eyes (`GAZE_READ_GAIN`).
    The tracker reads renders a little shorter still: on the astronaut ~80 % of the asked yaw and 55-65 %
    of the pitch come back (without the division ~60 % and ~30 %)."""
    appearance, motion = encoded
    before = face.model.eye_gaze(remeasure(face.decode(appearance, motion))[0])
    after = face.model.eye_gaze(remeasure(face.decode(appearance, edits.look(face, appearance, motion, theta, phi)))[0])
    asked = np.array([theta, phi]) - face.model.eye_gaze(appearance.identity)
    along, least = (0, 0.7) if theta else (1, 0.45)
    assert least * abs(asked[along]) < abs(after - before)[along] < 1.3 * abs(asked[along])
    assert np.sign((after - before)[along]) == np.sign(asked[along])


def test_opening_a_closed_mouth_folds_no_warp_triangle(face, grace_hopper):
    """Grace Hopper's closed lips meet on one seam; the warp mesh holds them apart (SEAM_GAP_PX), so no
    triangle across the seam turns over as the mouth opens (a turned triangle drew a dark loop)."""
    from vasa.face.mesh.backend import NUM_MESH

    appearance, motion = face.encode(grace_hopper)
    mesh = appearance.texture.warp
    lips = set(mouth.INNER_LIPS_UPPER) | set(mouth.INNER_LIPS_LOWER)
    triangles = mesh.triangles[(mesh.triangles < NUM_MESH).all(axis=1) & np.isin(mesh.triangles, list(lips)).any(axis=1)]

    def winding(points: np.ndarray) -> np.ndarray:
        a, b, c = (points[triangles[:, k]] for k in range(3))
        return np.sign((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))

    opened = face.target_points(appearance, edits.open_mouth(face, appearance, motion, opening=0.08))[:, :2]
    assert len(triangles) > 20 and np.array_equal(winding(opened), winding(mesh.vertices))
    assert np.array_equal(face.decode(appearance, motion), appearance.image)  # the source is still exact


def test_a_shutting_eyelid_samples_nothing_far_away():
    """Lids closing on a synthetic eye: the thin triangles between them must not extrapolate (a grid cell
    on the edge of a nearly collapsed triangle sampled cheek 70 px away: specks in a shut eye). No cell
    may move further than the vertices do, give or take the two cells the clamp allows."""
    from vasa.face.mesh import warp

    grid = 128
    eye = np.array([[0.4, 0.5], [0.6, 0.5], [0.5, 0.45], [0.5, 0.55], [0.45, 0.47], [0.55, 0.47], [0.45, 0.53],
                    [0.55, 0.53], [0.5, 0.35], [0.5, 0.65], [0.3, 0.5], [0.7, 0.5]])  # corners, 3 upper, 3 lower, ring
    vertices = np.concatenate([eye, warp.border_points()])
    mesh = warp.build_warp_mesh(vertices, grid, np.array([[0.3, 0.3], [0.7, 0.3], [0.7, 0.7], [0.3, 0.7]]),
                                np.array([], int))
    for shut in np.linspace(0.99, 1.0, 21):
        target = vertices.copy()
        for upper, lower in ((2, 3), (4, 6), (5, 7)):
            target[upper, 1] += shut * (vertices[lower, 1] - vertices[upper, 1])
        moved = np.abs(target - vertices).max()
        positions, _ = warp.rasterize(mesh, target, np.zeros(len(target)))
        assert np.abs(positions - warp.grid_centres(grid)).max() <= moved + 2 / grid + 1e-6


def test_a_small_face_in_a_large_photo_is_found_with_a_warning(face, astronaut, caplog):
    """The detectors see a photo at 128-192 px: a face of a few percent of it is found in tiles."""
    import logging

    import cv2

    small = cv2.resize(astronaut, (160, 160), interpolation=cv2.INTER_AREA)  # a face of ~40 px
    photo = np.full((1200, 1600, 3), 200, np.uint8)
    photo[700:860, 1100:1260] = small
    with caplog.at_level(logging.WARNING):
        appearance, _ = face.encode(photo)
    x, y = appearance.crop.center
    assert 1100 < x < 1260 and 700 < y < 860
    assert "the face is small" in caplog.text


@pytest.mark.parametrize("length,side", [(1200, 400), (1600, 534), (500, 500), (300, 800), (1000, 251)])
def test_detection_tiles_hold_every_face_of_under_half_a_tile(length, side):
    from vasa.face.landmarker import _tile_starts

    starts = _tile_starts(length, side)
    assert starts[0] == 0 and starts[-1] + min(side, length) == length
    for begin in range(0, max(length - side // 2, 0) + 1):  # every span of half a tile
        assert any(s <= begin and begin + side // 2 <= s + side for s in starts)
