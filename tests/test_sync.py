"""Audio-visual sync (`vasa.data.sync`): known offsets found, corrected by `vasa prepare`, and reported."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from vasa import media
from vasa.data.prepare import PrepareConfig, prepare
from vasa.data.records import read_record, record_files
from vasa.data.sync import (CORRECT_FROM_FRAMES, MIN_PEAK_R, SyncEstimate, SyncProbe, estimate_offset, fit_probe,
                            shift_pairs, shift_waveform)
from vasa.errors import VasaError
from vasa.face.mesh import edits
from vasa.metrics.landmarks import lagged_correlation

FPS = 25.0


def smooth_noise(rng: np.random.Generator, frames: int, dims: int, width: float = 1.5) -> np.ndarray:
    """(frames, dims) random signals with a few frames of correlation, like speech features."""
    kernel = np.exp(-0.5 * (np.arange(-6, 7) / width) ** 2)
    raw = rng.normal(size=(frames + 12, dims))
    return np.stack([np.convolve(raw[:, d], kernel, "valid") for d in range(dims)], axis=1)


def talking(rng: np.random.Generator, frames: int, delay: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Features (T, 6) and a mouth that follows two of them `delay` frames later (fractions interpolated)."""
    features = smooth_noise(rng, frames, 6)
    drive = features[:, 0] - 0.5 * features[:, 3]
    t = np.arange(frames)
    mouth = np.interp(t - delay, t, drive) + 0.1 * rng.normal(size=frames)
    return features, mouth


@pytest.fixture(scope="module")
def probe() -> SyncProbe:
    rng = np.random.default_rng(0)
    return fit_probe([talking(rng, 400) for _ in range(3)], "test", components=6, names=("a", "b", "c"))


def test_lagged_correlation_peaks_at_a_known_shift():
    rng = np.random.default_rng(1)
    signal = smooth_noise(rng, 200, 1)[:, 0]
    later = np.r_[np.zeros(3), signal[:-3]]  # mouth[t + 3] = predicted[t]
    curve = lagged_correlation(signal, later, max_lag=6)
    assert curve.shape == (13,) and int(np.argmax(curve)) - 6 == 3
    assert curve[6 + 3] == pytest.approx(1.0, abs=1e-6)
    assert np.isnan(lagged_correlation(np.zeros(50), later[:50], 4)).all()  # a constant side has no r


@pytest.mark.parametrize("delay", [0.0, 1.5, 3.5, -5.0])
def test_estimate_finds_the_offset_to_a_fraction_of_a_frame(probe, delay):
    rng = np.random.default_rng(2)
    estimate = estimate_offset(probe, [talking(rng, 300, delay), talking(rng, 120, delay)], FPS)
    assert estimate.offset_frames == pytest.approx(delay, abs=0.35)
    assert estimate.offset_ms == pytest.approx(1000 * estimate.offset_frames / FPS)
    assert estimate.clear and estimate.frames == 420
    assert estimate.needs_correction == (abs(delay) >= CORRECT_FROM_FRAMES)


def test_a_mouth_that_ignores_the_speech_is_not_clear(probe):
    rng = np.random.default_rng(3)
    features, _ = talking(rng, 300)
    estimate = estimate_offset(probe, [(features, smooth_noise(rng, 300, 1)[:, 0])], FPS)
    assert not estimate.clear and not estimate.needs_correction


def test_an_offset_beyond_the_search_is_not_clear(probe):
    """A mouth 12 frames late, searched within 10: the best lag is the edge, where the curve still rises;
    correcting by 10 frames would be wrong, so the estimate is not clear and nothing is corrected."""
    rng = np.random.default_rng(6)
    late = talking(rng, 300, 12.0)
    estimate = estimate_offset(probe, [late], FPS, max_lag=10)
    assert estimate.offset_frames == pytest.approx(10.0) and estimate.peak_r >= MIN_PEAK_R
    assert not estimate.clear and not estimate.needs_correction
    found = estimate_offset(probe, [late], FPS, max_lag=16)  # searched far enough: found
    assert found.clear and found.offset_frames == pytest.approx(12.0, abs=0.35)


def test_the_probe_script_check_counts_known_moves_found(probe):
    """scripts/make_sync_probe.py's held-out check: every move of in-sync talkers' speech is found by a
    probe that reads it, none by a probe fit on speech that does not drive the mouth."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "make_sync_probe.py"
    spec = importlib.util.spec_from_file_location("make_sync_probe", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rng = np.random.default_rng(7)
    clips = {name: [talking(rng, 300, delay)] for name, delay in (("a", 0.0), ("b", 2.0), ("c", -3.0))}
    found = script.check(probe, clips, ["a", "b", "c"])
    assert found == {"clips": 3, "clear": 3, "moves": 3 * len(script.CHECK_SHIFTS),
                     "found": 3 * len(script.CHECK_SHIFTS), "found_share": 1.0}
    deaf = fit_probe([(smooth_noise(rng, 400, 6), smooth_noise(rng, 400, 1)[:, 0]) for _ in range(3)], "test",
                     components=6)
    assert script.check(deaf, clips, ["a", "b", "c"])["found"] == 0


def test_too_short_or_still_segments_give_no_estimate(probe):
    rng = np.random.default_rng(4)
    features, mouth = talking(rng, 20)
    assert estimate_offset(probe, [(features, mouth)], FPS) is None
    features, _ = talking(rng, 100)
    assert estimate_offset(probe, [(features, np.full(100, 0.1))], FPS) is None


def test_fitting_with_a_known_lag_takes_the_offset_out():
    rng = np.random.default_rng(5)
    late = [talking(rng, 400, delay=3) for _ in range(2)]
    aware = fit_probe(late, "test", lags=[3, 3], components=6)
    naive = fit_probe(late, "test", components=6)
    test_features, test_mouth = talking(rng, 300, delay=0)
    assert estimate_offset(aware, [(test_features, test_mouth)], FPS).offset_frames == pytest.approx(0, abs=0.35)
    assert estimate_offset(naive, [(test_features, test_mouth)], FPS).offset_frames < -1.5  # learned the lag
    a, b = shift_pairs(np.arange(10), np.arange(10), 3)
    assert list(a) == list(range(7)) and list(b) == list(range(3, 10))


def test_probe_prediction_is_centred_and_save_load_round_trips(probe, tmp_path):
    rng = np.random.default_rng(6)
    features, mouth = talking(rng, 200)
    predicted = probe.predict(features)
    assert predicted.shape == (200,) and np.corrcoef(predicted, mouth)[0, 1] > 0.8
    assert abs(predicted.mean()) < 0.1 * predicted.std()  # the bias centres it on speech like the training clips
    path = tmp_path / "probe.safetensors"
    probe.save(path)
    loaded = SyncProbe.load(path)
    assert loaded.audio_encoder == "test" and loaded.trained_on == ("a", "b", "c") and loaded.fps == FPS
    assert np.allclose(loaded.predict(features), predicted, atol=1e-4)
    assert not list(tmp_path.glob(".*"))  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not safetensors' private 0o600
    with pytest.raises(VasaError, match="6-d features"):
        loaded.predict(features[:, :4])
    with pytest.raises(VasaError, match="no sync probe"):
        SyncProbe.load(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a probe")
    with pytest.raises(VasaError, match="cannot read"):
        SyncProbe.load(tmp_path / "bad.safetensors")


def test_shipped_probe_reads_whisper_features():
    probe = SyncProbe.load()
    assert probe.audio_encoder == "whisper" and probe.feature_dim == 384 and probe.fps == FPS
    assert probe.trained_on and "retalking_2" not in probe.trained_on  # the held-out clips are not in it


def test_shift_waveform_delays_and_advances_keeping_the_length():
    wave = np.zeros(16000, np.float32)
    wave[5000] = 1.0
    later = shift_waveform(wave, 2.0, FPS, 16000)  # 2 frames = 1280 samples
    earlier = shift_waveform(wave, -1.5, FPS, 16000)
    assert len(later) == len(earlier) == len(wave)
    assert np.flatnonzero(later).tolist() == [6280] and np.flatnonzero(earlier).tolist() == [4040]
    assert np.array_equal(shift_waveform(wave, 0.0, FPS, 16000), wave)


# --- vasa prepare: a synthetic talker whose sound comes 200 ms late ------------------------------------
CLIP_FRAMES = 90
DELAY_FRAMES = 5
CONFIG = PrepareConfig(audio_encoder="mel", min_frames=5, audio_schedule=(0.08, 0.04, 0.02), av_sync="off")


def mouth_envelope(frames: int) -> np.ndarray:
    """Syllable-like mouth openings: one opening every 4-7 frames, of random height, seeded."""
    rng = np.random.default_rng(7)
    envelope, t = np.zeros(frames), 0
    while t < frames:
        length = int(rng.integers(4, 8))
        envelope[t:t + length] = rng.uniform(0.04, 0.2) * np.sin(np.pi * np.arange(min(length, frames - t)) / length)
        t += length
    return envelope


def write_talker(path, frames: list[np.ndarray], envelope: np.ndarray, delay_frames: int) -> None:
    """A tone whose loudness follows `envelope`, `delay_frames` after the pictures."""
    rate = 16000
    t = np.arange(int(len(frames) / FPS * rate)) / rate
    loudness = np.interp(t * FPS - delay_frames, np.arange(len(envelope)), envelope, left=0.0, right=0.0)
    tone = (0.02 + 4 * loudness) * np.sin(2 * np.pi * 180 * t) * (1 + 0.3 * np.sin(2 * np.pi * 730 * t))
    media.write_video(path, frames, FPS, (tone[None].astype(np.float32), rate))


@pytest.fixture(scope="module")
def talkers(tmp_path_factory, face, encoded):
    """(in-sync clip, clip with its sound 5 frames late, a probe fit on the in-sync clip's record)."""
    appearance, source = encoded
    envelope = mouth_envelope(CLIP_FRAMES)
    frames = [face.decode(appearance, edits.open_mouth(face, appearance, source, 0.02 + e)) for e in envelope]
    folder = tmp_path_factory.mktemp("talkers")
    synced, late = folder / "synced.mp4", folder / "late.mp4"
    write_talker(synced, frames, envelope, 0)
    write_talker(late, frames, envelope, DELAY_FRAMES)
    out = tmp_path_factory.mktemp("synced_prepared")
    prepare([synced], out, CONFIG, progress=False)
    (segment,) = read_record(record_files(out)[0]).segments
    mouth = face.model.mouth_opening(face.model.mean_shape + face.model.decode_dynamics(segment.dynamics))
    probe = fit_probe([(segment.audio, mouth)], CONFIG.encoder_spec, components=32)
    probe_path = folder / "probe.safetensors"
    probe.save(probe_path)
    return segment, late, probe_path


@pytest.mark.slow
def test_prepare_finds_and_takes_out_a_late_sound(talkers, tmp_path):
    synced, late, probe_path = talkers
    config = PrepareConfig(**{**CONFIG.__dict__, "av_sync": "correct", "sync_probe": str(probe_path)})
    report = prepare([late], tmp_path / "corrected", config, progress=False)
    record = read_record(record_files(tmp_path / "corrected")[0])
    assert record.sync["corrected"] and record.sync["offset_frames"] == pytest.approx(-DELAY_FRAMES, abs=0.7)
    assert report["sync"]["corrected"] == {"late.mp4": record.sync["offset_ms"]}
    (segment,) = record.segments
    assert (segment.start_frame, len(segment)) == (synced.start_frame, len(synced))
    inside = slice(2, len(segment) - DELAY_FRAMES - 2)  # the end of the advanced sound is silence
    assert np.abs(segment.audio[inside] - synced.audio[inside]).mean() < 0.1 * np.abs(synced.audio[inside]).mean()

    reported = prepare([late], tmp_path / "reported", PrepareConfig(**{**config.__dict__, "av_sync": "report"}),
                       progress=False)
    record = read_record(record_files(tmp_path / "reported")[0])
    assert not record.sync["corrected"] and record.sync["needs_correction"]
    assert list(reported["sync"]["large"]) == ["late.mp4"] and not reported["sync"]["corrected"]


def test_prepare_refuses_a_probe_of_another_frame_rate(talkers, tmp_path):
    _, late, probe_path = talkers
    probe = SyncProbe.load(probe_path)
    other = tmp_path / "probe50.safetensors"
    SyncProbe(probe.weights, probe.bias, probe.audio_encoder, fps=50.0).save(other)
    config = PrepareConfig(**{**CONFIG.__dict__, "av_sync": "correct", "sync_probe": str(other)})
    with pytest.raises(VasaError, match="50 fps"):
        prepare([late], tmp_path / "out", config, progress=False)
    with pytest.raises(VasaError, match="av_sync"):
        PrepareConfig(av_sync="fix")


@pytest.mark.slow
def test_cli_prints_the_correction_and_a_missing_probe_is_one_line(talkers, tmp_path, capsys):
    from vasa.cli import main

    _, late, probe_path = talkers
    common = [str(late), "--audio-encoder", "mel", "--audio-schedule", "0.08", "0.04", "0.02", "--min-frames", "5"]
    assert main(["prepare", *common[:1], str(tmp_path / "out"), *common[1:], "--sync-probe", str(probe_path)]) == 0
    out = capsys.readouterr().out  # the default only reports
    assert re.search(r"late\.mp4: audio-visual offset -(1[6-9]\d|2[0-3]\d) ms \(--av-sync correct", out), out
    assert main(["prepare", *common[:1], str(tmp_path / "fixed"), *common[1:], "--sync-probe", str(probe_path),
                 "--av-sync", "correct"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"corrected: late\.mp4 -(1[6-9]\d|2[0-3]\d) ms", out), out  # about -200 ms
    assert main(["prepare", *common[:1], str(tmp_path / "out2"), *common[1:],
                 "--sync-probe", str(tmp_path / "none.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().startswith("vasa: error:") and "no sync probe" in err
    assert not (tmp_path / "out2").exists()  # refused before anything was written


def test_report_summary_sorts_videos_by_what_their_sync_needs():
    from vasa.data.records import Record, summary

    def record(name, offset_frames, peak_r, corrected=False):
        estimate = SyncEstimate(offset_frames, 40.0 * offset_frames, peak_r, 0.1, 100, peak_r >= 0.3, corrected)
        return Record(name, FPS, "whisper", "mesh", [], [], estimate.as_dict())

    records = [record("fine.mp4", 1.0, 0.6), record("fixed.mp4", -4.0, 0.6, corrected=True),
               record("late.mp4", 3.0, 0.5), record("dub.mp4", 6.0, 0.1),
               Record("old.mp4", FPS, "whisper", "mesh", [], [])]  # written before offsets were measured
    sync = summary(records)["sync"]
    assert sync == {"measured": 4, "corrected": {"fixed.mp4": -160.0}, "large": {"late.mp4": 120.0},
                    "unclear": ["dub.mp4"]}
