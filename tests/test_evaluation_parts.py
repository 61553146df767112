"""The measurements `vasa eval --benchmark` and scripts/eval_generate.py share (`vasa.evaluation`): the
shifted-audio control, frame loudness, silence, the held-out figures over seeds and their targets, the
control requests read back from frames, the pictures, and the ridge yardstick of the mouth; known answers
on small synthetic inputs, then the generating checks on the shipped motion model at a small size."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vasa.data.records import EMOTION_NAMES
from vasa.evaluation import controls, heldout, pictures, ridge, robustness
from vasa.evaluation.measure import SHIFT_S, frame_rms, mouth_energy_r, shifted_waveform
from vasa.face.mesh.model import INNER_LIP_MIDDLE, LEFT_EYE_LIDS, MOUTH_CORNERS, RIGHT_EYE_LIDS
from vasa.metrics.landmarks import Track

RATE, STEP = 16000, 640  # samples per second, per 25 fps frame


def synthetic_track(mouth: np.ndarray, found: np.ndarray | None = None, eyes: np.ndarray | None = None) -> Track:
    """A track whose landmarks are zero except the inner-lip middle (the mouth opening) and the mid lids."""
    canonical = np.zeros((len(mouth), 478, 3))
    canonical[:, INNER_LIP_MIDDLE[1], 1] = mouth
    for upper, lower in (RIGHT_EYE_LIDS, LEFT_EYE_LIDS):
        canonical[:, lower, 1] = 0.3 if eyes is None else eyes
    found = np.ones(len(mouth), bool) if found is None else found
    return Track(canonical, np.zeros((len(mouth), 6)), found)


# --- audio: the shifted control, loudness, silence -----------------------------------------------------------
def test_the_shifted_control_rolls_the_audio_by_exactly_one_second():
    waveform = np.arange(3 * RATE, dtype=np.float32)
    shifted = shifted_waveform(waveform)
    assert SHIFT_S == 1.0 and shifted.shape == waveform.shape and shifted.dtype == waveform.dtype
    assert np.array_equal(shifted[RATE:], waveform[:-RATE])  # every sample one second later ...
    assert np.array_equal(shifted[:RATE], waveform[-RATE:])  # ... the last second wrapped to the front
    assert np.array_equal(shifted_waveform(waveform, 0.5), np.roll(waveform, RATE // 2))


def test_frame_rms_of_known_arrays():
    constant = np.full(2 * STEP, 0.5)
    assert np.allclose(frame_rms(constant, 3), [0.5, 0.5, 0.0])  # past the end: silence
    ramp = np.concatenate([np.full(STEP, 3.0), np.r_[np.full(STEP // 2, 4.0), np.zeros(STEP // 2)]])
    assert np.allclose(frame_rms(ramp, 2), [3.0, np.sqrt(8.0)])
    t = np.arange(25 * STEP) / RATE
    assert np.allclose(frame_rms(0.8 * np.sin(2 * np.pi * 100 * t), 25), 0.8 / np.sqrt(2), atol=1e-3)
    assert frame_rms(np.ones(10 * STEP), 4).shape == (4,)  # longer audio: only the frames asked for


def test_mouth_energy_r_follows_the_loudness_on_frames_with_a_face():
    loudness = np.abs(np.sin(np.arange(40) / 3)) + 0.1
    waveform = np.repeat(loudness, STEP)  # a constant level per frame: its RMS is the level
    mouth = 0.02 + 0.1 * loudness
    found = np.ones(40, bool)
    found[5] = False
    mouth[5] = 9.0  # a frame without a face does not count
    assert mouth_energy_r(synthetic_track(mouth, found), waveform) == pytest.approx(1.0)
    assert mouth_energy_r(synthetic_track(-mouth, found), waveform) == pytest.approx(-1.0)
    assert mouth_energy_r(synthetic_track(mouth), shifted_waveform(waveform)) < 0.9


def test_silent_frames_are_long_quiet_runs_without_their_ends():
    rms = np.ones(60)
    rms[10:30] = 0.01  # 20 quiet frames: judged from 10 + 6 to 30 - 3
    rms[40:51] = 0.01  # 11 quiet frames: too short a pause
    inside = robustness.silent_frames(rms)
    assert np.flatnonzero(inside).tolist() == list(range(16, 27))


def test_an_audio_file_row_reads_the_mouth_in_speech_and_silence():
    level = np.r_[np.full(20, 0.5), np.full(20, 0.0), np.full(20, 0.5)]
    waveform = np.repeat(level, STEP)
    rest = 0.01
    mouth = np.where(level > 0, 0.2, rest + 0.005)
    row = robustness.audio_file_row("x.wav", waveform, [None] * 60, synthetic_track(mouth), rest, 1.5)
    assert (row["frames"], row["expected_frames"], row["audio_s"]) == (60, 60, pytest.approx(2.4))
    assert row["silent_frames"] == 20 - 6 - 3 and row["mouth_closed_in_silence"] is True
    assert row["closed_fraction_in_silence"] == 1.0
    assert row["max_opening_in_silence"] == pytest.approx(rest + 0.005) and row["max_opening_in_speech"] == 0.2
    assert row["mouth_rms_correlation"] == pytest.approx(1.0)
    opened = mouth.copy()
    opened[30] = 0.2  # the mouth opens in the middle of the pause
    row = robustness.audio_file_row("x.wav", waveform, [None] * 60, synthetic_track(opened), rest, 1.5)
    assert row["mouth_closed_in_silence"] is False and row["closed_fraction_in_silence"] == pytest.approx(10 / 11)


# --- held-out figures and targets -------------------------------------------------------------------------
def test_summarise_seeds_gives_mean_population_sd_and_the_seeds():
    summary = heldout.summarise_seeds([{"r": 0.5, "d": np.nan}, {"r": 0.7, "d": 2.0}, {"r": 0.9, "d": np.nan}])
    assert summary["r"]["mean"] == pytest.approx(0.7) and summary["r"]["sd"] == pytest.approx(np.std([0.5, 0.7, 0.9]))
    assert summary["r"]["per_seed"] == [0.5, 0.7, 0.9]
    assert summary["d"]["mean"] == 2.0 and summary["d"]["sd"] == 0.0  # nan seeds left out
    assert np.isnan(heldout.summarise_seeds([{"x": np.nan}])["x"]["mean"])


def held_out_result(paired: float, shifted: float, sd: float, lip: tuple[float, float] = (0.05, 0.06)) -> dict:
    def figures(r, distance):
        return {"mouth_correlation": {"mean": r, "sd": sd}, "lip_distance_centred": {"mean": distance, "sd": 0.0}}
    return {"clip": "c", "paired": figures(paired, lip[0]), "shifted": figures(shifted, lip[1])}


def test_acceptance_needs_a_clear_margin_over_the_shifted_audio():
    verdict = heldout.acceptance({"held_out": [held_out_result(0.65, 0.1, 0.02)]})["c"]
    assert verdict["meets_0.6"] and verdict["paired_clearly_better"] and verdict["sync_margin"] == pytest.approx(0.55)
    assert verdict["lip_distance_centred_paired_below_shifted"]
    assert not heldout.acceptance({"held_out": [held_out_result(0.5, 0.35, 0.0)]})["c"]["paired_clearly_better"]
    noisy = heldout.acceptance({"held_out": [held_out_result(0.65, 0.3, 0.15, (0.07, 0.06))]})["c"]
    assert not noisy["paired_clearly_better"] and not noisy["lip_distance_centred_paired_below_shifted"]
    assert heldout.acceptance({"controls": {"mean_gaze_error_deg": 4.0}})["gaze"]["meets_5_deg"]
    assert not heldout.acceptance({"controls": {"mean_gaze_error_deg": 5.5}})["gaze"]["meets_5_deg"]


# --- controls -------------------------------------------------------------------------------------------------
def test_control_requests_set_one_control_each():
    requests = controls.control_requests([(15.0, 0.0)], [0.8], ["happy"])
    assert [(k, v) for k, v, _ in requests] == [("gaze", (15.0, 0.0)), ("distance", 0.8), ("emotion", "happy")]
    gaze, distance, emotion = (c for _, _, c in requests)
    assert gaze.gaze == (15.0, 0.0) and distance.distance == 0.8 and emotion.emotion == {"happy": 1.0}
    assert (distance.gaze, emotion.distance, gaze.emotion) == (None, None, None)  # the rest are the defaults


def test_reading_back_the_unmoved_portrait(astronaut):
    """The portrait itself as every generated frame: distance 1 exactly, and the gaze error is the distance
    of the portrait's own gaze from the request."""
    from vasa.face.mesh.model import FaceModel

    model = FaceModel.load()
    frames = [astronaut] * 3
    reading = controls.read_request(model, astronaut, frames, "distance", 1.25)
    assert reading.rest.canonical.shape == (478, 3) and len(reading.track) == 3 and reading.track.found.all()
    assert reading.measured == pytest.approx(1.0) and reading.error == pytest.approx(0.25)
    straight = controls.read_request(model, astronaut, frames, "gaze", (0.0, 0.0))
    aside = controls.read_request(model, astronaut, frames, "gaze", (15.0, 0.0))
    assert np.allclose(straight.measured, aside.measured)
    assert straight.error == pytest.approx(np.linalg.norm(straight.measured))
    assert aside.error == pytest.approx(np.linalg.norm(aside.measured - np.array([15.0, 0.0])))
    assert controls.read_request(model, astronaut, frames, "emotion", "happy").error is None


def test_the_representative_frame_has_open_eyes_and_is_nearest_the_middle():
    eyes = np.full(9, 0.3)
    eyes[3:6] = 0.02  # closed around the middle
    found = np.ones(9, bool)
    found[6] = False
    assert controls.representative(synthetic_track(np.zeros(9), found, eyes)) == 2


def test_mouth_shape_change_of_a_wider_lifted_mouth():
    rest = np.zeros((1, 478, 3))
    rest[0, MOUTH_CORNERS[0], :2] = (-0.2, 0.5)
    rest[0, MOUTH_CORNERS[1], :2] = (0.2, 0.5)
    frames = np.repeat(rest, 4, axis=0)
    frames[:, MOUTH_CORNERS[0], :2] = (-0.25, 0.45)  # 0.1 wider, corners 0.05 up (y points down)
    frames[:, MOUTH_CORNERS[1], :2] = (0.25, 0.45)
    frames[:, INNER_LIP_MIDDLE[1], 1] = 0.07
    found = np.array([True, True, True, False])
    frames[3] = 9.0  # no face: not counted
    change = controls.mouth_shape_change(Track(rest, np.zeros((1, 6)), np.ones(1, bool))[0],
                                         Track(frames, np.zeros((4, 6)), found))
    assert change == pytest.approx({"mouth_width_change": 0.1, "mouth_corner_lift": 0.05, "mouth_opening_mean": 0.07})


def test_emotion_gain_and_the_controls_summary():
    def fer(**probabilities):
        return [probabilities.get(name, 0.0) for name in EMOTION_NAMES]

    rows = [{"portrait": p, "kind": "emotion", "request": "neutral", "fer": fer(happy=0.1, sad=0.2)} for p in "ab"]
    rows += [{"portrait": "a", "kind": "emotion", "request": "happy", "fer": fer(happy=0.9)},
             {"portrait": "b", "kind": "emotion", "request": "happy", "fer": fer(happy=0.5)},
             {"portrait": "a", "kind": "emotion", "request": "sad", "fer": fer(sad=0.1)}]
    assert controls.emotion_gain(rows) == pytest.approx({"happy": 0.6, "sad": -0.1})
    rows += [{"kind": "gaze", "error_deg": 2.0, "error_in_motion_deg": 1.0},
             {"kind": "gaze", "error_deg": 4.0, "error_in_motion_deg": 3.0},
             {"kind": "distance", "error": 0.02, "error_in_motion": 0.04}]
    summary = controls.controls_summary(rows)
    assert summary.pop("emotion_fer_gain") == pytest.approx({"happy": 0.6, "sad": -0.1})
    assert summary == pytest.approx({"mean_gaze_error_deg": 3.0, "mean_gaze_error_in_motion_deg": 2.0,
                                     "mean_distance_error": 0.02, "mean_distance_error_in_motion": 0.04})


# --- pictures and the ridge yardstick -------------------------------------------------------------------------
def test_pictures_tile_label_header_and_png(tmp_path):
    import cv2

    image = np.full((100, 100, 3), 200, np.uint8)
    assert pictures.tile(image, 100) is image and pictures.tile(image, 40).shape == (40, 40, 3)
    labelled = pictures.label(image, "one\ntwo")
    assert (image == 200).all() and (labelled[2, 2] == 0).all() and (labelled[90, 90] == 200).all()
    bar = pictures.header(["a", "b"], [50, 70])
    assert bar.shape == (30, 120, 3) and (bar < 255).any()
    path = pictures.save_png(tmp_path / "x.png", labelled)
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), labelled)


def test_the_ridge_yardstick_finds_a_mouth_the_features_carry():
    rng = np.random.default_rng(0)

    def part(clip: str, carried: bool) -> ridge.Part:
        features = rng.normal(size=(200, 6))
        mouth = features[:, 0] + 0.5 * features[:, 1] + 0.1 * rng.normal(size=200) if carried else rng.normal(size=200)
        return ridge.Part(clip, features, mouth)

    train = [part(f"t{k}", True) for k in range(3)]
    scores = ridge.held_out_r(train, [part("h", True), part("h", True), part("noise", False)])
    assert scores["h"] > 0.9 and abs(scores["noise"]) < 0.2
    assert ridge.left_out_r(train) > 0.9


# --- generating: the shipped motion model at 128 px ----------------------------------------------------------
ASSETS = Path(__file__).resolve().parents[1] / "vasa" / "assets"


@pytest.fixture(scope="module")
def head():
    from vasa.pipeline import TalkingHead

    return TalkingHead.from_pretrained(ASSETS / "motion_default.safetensors", size=128)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    from vasa.audio import load_audio

    return load_audio(ASSETS / "demo_speech.wav")[:RATE]


def test_portrait_controls_read_each_request_back(head, speech, astronaut):
    rows = list(controls.portrait_controls(head, "astronaut", astronaut, speech, [(15.0, 0.0)], [1.25], ["happy"]))
    (gaze, gaze_frame), (distance, _), (emotion, _) = rows
    assert gaze_frame.shape == (128, 128, 3) and gaze["frames_found"] == 25
    assert gaze["measured_deg"][0] > 5 and gaze["error_deg"] == pytest.approx(
        np.linalg.norm(np.array(gaze["measured_deg"]) - [15.0, 0.0]))
    assert 1.1 < distance["measured"] < 1.4 and distance["error"] == pytest.approx(abs(distance["measured"] - 1.25))
    assert len(emotion["fer"]) == len(EMOTION_NAMES) and emotion["mouth_width_change"] > 0


@pytest.mark.slow
def test_the_benchmark_control_errors(head, speech, astronaut, tmp_path):
    from vasa.face.mesh.model import FaceModel
    from vasa.media import write_wav

    write_wav(tmp_path / "speech.wav", speech)
    head.set_source(astronaut)
    found = controls.control_errors(head, SimpleNamespace(face_model=FaceModel.load()),
                                    {"name": "astronaut", "audio": tmp_path / "speech.wav"})
    assert [r["kind"] for r in found["rows"]] == ["gaze"] * 4 + ["distance"] * 2
    assert found["mean_distance_error"] < 0.15 and found["mean_gaze_error_deg"] < 15
    assert found["mean_gaze_error_deg"] == pytest.approx(np.mean([r["error"] for r in found["rows"][:4]]))


def test_held_out_clip_measures_paired_and_shifted_runs(head, driver_clip):
    result, keep = heldout.held_out_clip(head, driver_clip, 128, [0], tile=64)
    assert result["frames_real"] == 12 and result["frames_generated"] == len(keep["generated"])
    assert abs(result["frames_generated"] - 12) <= 1  # the soundtrack's length (AAC pads it a little)
    assert result["audio_s"] == pytest.approx(result["frames_generated"] / 25, abs=0.04)
    for pairing in ("paired", "shifted"):
        assert len(result[pairing]["mouth_correlation"]["per_seed"]) == 1
    assert result["real"]["head_motion_deg"] > 1  # the driver clip swings its head
    assert result["still_portrait"]["lip_distance_centred"] > 0  # its mouth moves
    assert keep["real"][0].shape == (64, 64, 3) and len(keep["real_track"]) == 12


def test_generate_and_measure_keeps_silence_closed(head, grace_hopper):
    from vasa.media import read_image

    head.set_source(read_image(grace_hopper))
    frames, track, rest, _ = robustness.generate_and_measure(head, np.zeros(RATE, np.float32))
    assert len(frames) == len(track) == 25 and track.found.all()
    assert track.mouth().max() <= rest + robustness.MOUTH_CLOSED_TOLERANCE
