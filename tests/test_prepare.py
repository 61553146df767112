"""`vasa prepare`: a tiny synthetic talking clip with a shot cut and a stretch without a face."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import sine
from vasa import media
from vasa.cli import main
from vasa.data.prepare import PrepareConfig, parse_shard, prepare, record_name
from vasa.data.prepare_video import is_cut, main_direction, thumbnail
from vasa.data.records import read_record, record_files
from vasa.errors import VasaError

CONFIG = PrepareConfig(audio_encoder="mel", min_frames=5, audio_schedule=(0.08, 0.04, 0.02))


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory, face, encoded, driver_motions, grace_hopper):
    """12 frames of the talking astronaut, 6 grey frames (no face), 8 frames of Grace Hopper: 26 frames."""
    appearance, _ = encoded
    astronaut = [face.decode(appearance, m) for m in driver_motions]
    grey = [np.full_like(astronaut[0], 90)] * 6
    hopper = face.decode(*face.encode(grace_hopper))
    frames = astronaut + grey + [hopper] * 8
    path = tmp_path_factory.mktemp("clips") / "talk.mp4"
    media.write_video(path, frames, 25.0, sine(220.0, len(frames) / 25.0))
    return path


@pytest.fixture(scope="module")
def prepared(cut_clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    report = prepare([cut_clip], out, CONFIG, progress=False)
    return out, report


def test_segments_split_at_the_cut_and_drop_the_faceless_stretch(prepared):
    out, report = prepared
    (path,) = record_files(out)
    record = read_record(path)
    assert [(s.start_frame, len(s)) for s in record.segments] == [(0, 12), (18, 8)]
    assert any(d["reason"].startswith("no face") and d["frames"] == 6 for d in record.dropped)
    assert report["segments"] == 2 and report["frames"] == 20


def test_per_frame_arrays_are_filled(prepared, face):
    out, _ = prepared
    record = read_record(record_files(out)[0])
    segment = record.segments[0]
    assert record.audio_encoder == "mel:hop=0.08,left=0.04,lookahead=0.02"  # what a model trained on it runs
    assert segment.pose.shape == (12, 6) and segment.dynamics.shape == (12, face.model.dim)
    assert segment.audio.shape == (12, 80) and segment.voice.shape == (12,)
    assert np.allclose(segment.emotion.sum(axis=1), 1, atol=1e-3)
    assert np.ptp(segment.pose[:, 0]) > 10  # the driver's yaw swing (15 degrees each way) is seen
    assert np.all(np.abs(segment.main_gaze) < 30) and 0.5 < segment.mean_distance < 2


def test_records_keep_the_trackers_blendshapes_and_head_matrix(prepared):
    """jawOpen follows the driver's mouth (opened 0.05 + 0.15 |sin(pi i / 4)|) and the tracker's own head
    matrix turns with the project's pose fit."""
    from conftest import DRIVER_FRAMES
    from vasa.face.landmarker import BLENDSHAPE_NAMES

    out, _ = prepared
    segment = read_record(record_files(out)[0]).segments[0]
    assert segment.blendshapes.shape == (12, len(BLENDSHAPE_NAMES)) and segment.head_matrix.shape == (12, 4, 4)
    assert segment.blendshapes.min() >= 0 and segment.blendshapes.max() <= 1
    opening = 0.05 + 0.15 * np.abs(np.sin(np.pi * np.arange(DRIVER_FRAMES) / 4))
    assert np.corrcoef(segment.blendshapes[:, BLENDSHAPE_NAMES.index("jawOpen")], opening)[0, 1] > 0.8
    rotation = segment.head_matrix[:, :3, :3]
    assert np.allclose(rotation @ rotation.transpose(0, 2, 1), np.eye(3), atol=1e-3)  # a rotation
    matrix_yaw = np.degrees(np.arctan2(rotation[:, 0, 2], rotation[:, 2, 2]))
    assert abs(np.corrcoef(matrix_yaw, segment.pose[:, 0])[0, 1]) > 0.9


def test_format_1_records_still_read(tmp_path):
    """Records written before the tracker's arrays were kept read back, with those arrays None."""
    from vasa.data.records import FRAME_ARRAYS, Record, Segment, write_record

    frames = 5
    arrays = {name: np.zeros((frames, 7) if name == "emotion" else (frames, 6) if name == "pose"
                             else (frames, 2) if name == "gaze" else (frames,) if name in ("distance", "voice")
                             else (frames, 4)) for name in FRAME_ARRAYS}
    path = tmp_path / "old.npz"
    write_record(path, Record("old.mp4", 25.0, "mel", "mesh", [Segment(**arrays)]))
    with np.load(path) as data:
        stored = dict(data)
    meta = json.loads(bytes(stored["meta"]).decode())
    assert meta["format"] == 2 and "blendshapes" not in stored  # nothing to keep: none given
    stored["meta"] = np.frombuffer(json.dumps({**meta, "format": 1}).encode(), np.uint8)
    np.savez(path, **stored)
    (segment,) = read_record(path).segments
    assert len(segment) == frames and segment.blendshapes is None and segment.head_matrix is None


def test_resume_skips_prepared_videos_and_settings_must_match(prepared, cut_clip):
    out, _ = prepared
    path = record_files(out)[0]
    stamp = path.stat().st_mtime_ns
    prepare([cut_clip], out, CONFIG, progress=False)
    assert path.stat().st_mtime_ns == stamp
    with pytest.raises(VasaError, match="other settings"):
        prepare([cut_clip], out, PrepareConfig(audio_encoder="mel", min_frames=9), progress=False)


def test_a_bad_audio_schedule_is_refused_before_anything_is_written(tmp_path, cut_clip):
    with pytest.raises(VasaError, match="hop_s > 0"):
        prepare([cut_clip], tmp_path / "out", PrepareConfig(audio_encoder="mel", audio_schedule=(0.0, 1.0, 0.04)),
                progress=False)
    assert not (tmp_path / "out" / "prepare.json").exists()


def test_whisper_layers_go_into_the_records_encoder_spec_and_only_for_whisper():
    assert PrepareConfig(audio_layers=(3,)).encoder_spec == "whisper:layers=3"
    assert PrepareConfig(audio_layers=(2, 4), audio_schedule=(0.08, 1.0, 0.04)).encoder_spec == \
        "whisper:layers=2+4,hop=0.08,left=1,lookahead=0.04"
    with pytest.raises(VasaError, match="whisper encoder only"):
        PrepareConfig(audio_encoder="mel", audio_layers=(3,))


@pytest.mark.slow
def test_shards_split_the_videos_between_runs(tmp_path, cut_clip):
    """Two shard runs into one folder prepare disjoint videos that together cover all of them."""
    videos = []
    for k in range(3):
        videos.append(tmp_path / f"v{k}.mp4")
        os.link(cut_clip, videos[-1])
    out = tmp_path / "out"
    second = prepare(videos, out, CONFIG, shard=(1, 2), progress=False)
    assert [d["source"] for d in second["videos_detail"]] == ["v1.mp4"]
    assert {p.name for p in record_files(out)} == {record_name(videos[1])}
    first = prepare(videos, out, CONFIG, shard=(0, 2), progress=False)
    assert [d["source"] for d in first["videos_detail"]] == ["v0.mp4", "v2.mp4"]
    assert {p.name for p in record_files(out)} == {record_name(v) for v in videos}
    assert parse_shard("1/2") == (1, 2)
    for bad in ("2/2", "x", "1-2"):
        with pytest.raises(VasaError):
            parse_shard(bad)


def test_a_video_without_audio_is_reported_not_fatal(tmp_path, encoded, face):
    appearance, source = encoded
    silent = tmp_path / "silent.mp4"
    media.write_video(silent, [face.decode(appearance, source)] * 8, 25.0)
    report = prepare([silent], tmp_path / "out", CONFIG, progress=False)
    (detail,) = report["videos_detail"]
    assert detail["segments"] == 0 and "no audio" in detail["dropped"][0]["reason"]
    assert json.loads((tmp_path / "out" / "report-0-of-1.json").read_text())["videos"] == 1


def test_audio_beside_the_video_is_used(tmp_path, encoded, face):
    appearance, source = encoded
    video = tmp_path / "mute.mp4"
    media.write_video(video, [face.decode(appearance, source)] * 10, 25.0)
    samples, rate = sine(300.0, 0.4)
    media.write_wav(tmp_path / "mute.wav", samples[0], rate)
    report = prepare([video], tmp_path / "out", CONFIG, progress=False)
    assert report["frames"] == 10


def test_main_direction_is_the_histogram_mode():
    rng = np.random.default_rng(0)
    main = rng.normal([8.0, -3.0], 1.0, (300, 2))
    glances = rng.normal([-20.0, 10.0], 1.0, (100, 2))
    assert np.allclose(main_direction(np.concatenate([main, glances])), [8.0, -3.0], atol=0.5)


def test_cut_detector(astronaut, grace_hopper):
    from vasa.media import read_image

    a, b = thumbnail(astronaut), thumbnail(read_image(grace_hopper))
    assert is_cut(a, b) and not is_cut(a, a) and not is_cut(None, a)
    brighter = np.clip(a.astype(int) + 8, 0, 255).astype(np.uint8)  # a lighting flicker is not a cut
    assert not is_cut(a, brighter)


def test_cli_prepare_reports_and_bad_input_is_one_line(tmp_path, cut_clip, capsys):
    assert main(["prepare", str(cut_clip), str(tmp_path / "out"), "--audio-encoder", "mel", "--min-frames", "5"]) == 0
    assert "2 segments" in capsys.readouterr().out
    assert main(["prepare", str(tmp_path / "missing"), str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().startswith("vasa: error:")


@pytest.mark.slow
def test_a_faceless_video_gets_the_slow_search_once_a_second(tmp_path, monkeypatch):
    from vasa.face import landmarker

    searches = []
    slow = landmarker.LandmarkDetector.detect_small_faces

    def counted(self, image):
        searches.append(1)
        yield from slow(self, image)

    monkeypatch.setattr(landmarker.LandmarkDetector, "detect_small_faces", counted)
    frames = [np.full((128, 128, 3), 90, np.uint8)] * 60
    path = tmp_path / "wall.mp4"
    media.write_video(path, frames, 25.0, sine(220.0, 60 / 25.0))
    report = prepare([path], tmp_path / "out", CONFIG, progress=False)
    assert report["frames"] == 0 and report["dropped_frames"]["no face (lost, turned away or occluded)"] == 60
    assert len(searches) == 3  # frames 0, 25, 50; the others get the detector's quick look only


@pytest.mark.slow
def test_a_video_changed_after_its_record_is_prepared_again(tmp_path, cut_clip):
    import shutil
    import time

    clips = tmp_path / "clips"
    clips.mkdir()
    video = clips / "talk.mp4"
    media.write_video(video, [np.full((128, 128, 3), 90, np.uint8)] * 30, 25.0, sine(220.0, 30 / 25.0))
    out = tmp_path / "out"
    assert prepare([clips], out, CONFIG, progress=False)["frames"] == 0  # no face: a record with no segment
    (record,) = record_files(out)
    made = record.stat().st_mtime_ns
    time.sleep(0.01)
    prepare([clips], out, CONFIG, progress=False)
    assert record.stat().st_mtime_ns == made  # unchanged input: skipped
    assert prepare([clips], out, CONFIG, progress=False, retry_failed=True)["frames"] == 0
    assert record.stat().st_mtime_ns > made  # tried again on request
    time.sleep(0.01)
    shutil.copy(cut_clip, video)  # the user replaces it with a usable take
    os.utime(video)
    assert prepare([clips], out, CONFIG, progress=False)["frames"] == 20
