"""`StreamingSession`: equals offline for any chunking, audio-clock timestamps, bounded queues, clean stops."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from conftest import voiced_bursts
from test_motion_dit import randomized
from vasa.audio import WindowSchedule
from vasa.errors import VasaError
from vasa.motion import PRESETS, MotionStream, save_motion_model
from vasa.pipeline import EMOTION_BLEND_S, SILENCE_OPEN_FRAMES, Controls, TalkingHead, gate_open_frames
from vasa.streaming import StreamingSession, design_latency_s

TINY_MEL = dataclasses.replace(PRESETS["tiny"], audio_dim=80)  # window 8 frames, context 3
FAST = Controls(steps=2, seed=0, smoothing=0.3)
RATE = 16000


@pytest.fixture(scope="module")
def head(tmp_path_factory, astronaut):
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_motion_model(path, randomized(TINY_MEL, seed=0), {"audio_encoder": "mel"})
    head = TalkingHead.from_pretrained(path, size=96)  # with voice activity: the mouth gate is exercised
    head.set_source(astronaut)
    return head


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """1.9 s: 4 Hz bursts of harmonics, then 0.5 s of silence (the gate closes the mouth there)."""
    return voiced_bursts(1.9, voiced_until=1.4, rate=RATE)


def stream(head, waveform, chunk, **options) -> list:
    with StreamingSession(head, **options) as session:
        for start in range(0, len(waveform), chunk):
            session.push(waveform[start:start + chunk])
        session.end()
        return list(session.frames())


@pytest.mark.parametrize("chunk,step_frames,blinks,emotion", [(333, None, None, None), (5000, None, None, None),
                                                              (RATE * 3, None, None, None), (777, 3, None, None),
                                                              (777, None, 60, None), (777, None, None, {"sad": 1.0})])
def test_streaming_equals_offline(head, speech, chunk, step_frames, blinks, emotion):
    """Chunk sizes that do not line up with feature hops (0.2 s), windows (8 frames) or each other;
    with a blink rate, whose stage holds frames back for its own lookahead; with an emotion."""
    controls = dataclasses.replace(FAST, blinks=blinks, emotion=emotion)
    offline = list(head.frames(speech, controls, step_frames=step_frames))
    frames = stream(head, speech, chunk, controls=controls, step_frames=step_frames)
    assert len(frames) == len(offline) == round(len(speech) / RATE * 25)
    for frame, expected in zip(frames, offline):
        assert np.array_equal(frame.image, expected)


def test_shorter_windows_change_motion_but_stay_seeded(head, speech):
    a = np.concatenate(list(head.motion(speech, FAST, step_frames=3)))
    b = np.concatenate(list(head.motion(speech, FAST)))
    assert a.shape == b.shape and not np.allclose(a, b)
    assert np.array_equal(a, np.concatenate(list(head.motion(speech, FAST, step_frames=3))))


@pytest.mark.parametrize("fps", [25.0, 30.0])
def test_timestamps_follow_the_audio_clock(head, speech, fps):
    frames = stream(head, speech, 4000, controls=FAST, fps=fps, encode=lambda image: image[:2].tobytes())
    assert [f.index for f in frames] == list(range(len(frames)))
    assert np.allclose([f.time_s for f in frames], np.arange(len(frames)) / fps)
    assert frames[-1].time_s < len(speech) / RATE <= frames[-1].time_s + 2 / fps
    assert all(f.data == f.image[:2].tobytes() for f in frames)  # the encode stage ran on every frame


def test_design_latency_shrinks_with_the_window(head):
    # mel features: hops of one frame + 20 ms lookahead; voice activity in 32 ms blocks; tiny windows of 8
    # frames: frame 8k waits for frame 8k + 7, final 0.32 s + 0.02 s after frame 8k starts
    assert design_latency_s(head, None, gate=False) == pytest.approx(8 / 25 + 0.02)
    assert design_latency_s(head, None, first=True) == pytest.approx(8 / 25 + 0.02)
    # windows of 5: frame 0 waits for frame 4, whose last voice block ends at 7 x 32 ms (after its features)
    assert design_latency_s(head, 5, gate=False) == pytest.approx(7 * 0.032)
    # the gate looks no further ahead than a window's last frame already does: it adds no wait
    assert design_latency_s(head, 5, gate=True) == pytest.approx(design_latency_s(head, 5, gate=False))


def test_a_blink_rate_adds_the_frames_its_stage_holds_to_the_latency(head):
    with StreamingSession(head, controls=FAST) as plain, \
            StreamingSession(head, controls=dataclasses.replace(FAST, blinks=20)) as blinking:
        assert blinking.algorithmic_latency_s == pytest.approx(plain.algorithmic_latency_s + 4 / 25)
        assert blinking.first_frame_wait_s == pytest.approx(plain.first_frame_wait_s + 4 / 25)


def test_the_live_window_design_waits_a_fifth_of_a_second(tmp_path):
    """The shipped live model's shape: 4-frame windows, features in hops of 2 frames with 40 ms lookahead
    (stored in the model, so the head runs the schedule it was trained on). Frame 0 waits for frame 3's
    features (0.16 + 0.04 s); with the gate's 3 frames of voice lookahead frames 4k + 1 and 4k + 3 wait
    for the next hop (0.24 s)."""
    live = dataclasses.replace(PRESETS["live"], width=32, depth=1, heads=2, audio_dim=80)
    spec = "mel:hop=0.08,left=1,lookahead=0.04"
    save_motion_model(tmp_path / "live.safetensors", randomized(live, seed=0), {"audio_encoder": spec})
    head = TalkingHead.from_pretrained(tmp_path / "live.safetensors", size=96)
    assert head.encoder.schedule == WindowSchedule(hop_s=0.08, left_context_s=1.0, lookahead_s=0.04)
    assert design_latency_s(head, first=True) == pytest.approx(4 / 25 + 0.04)
    assert design_latency_s(head) == pytest.approx(6 / 25)


def test_the_gate_lookahead_stays_within_the_window():
    assert [gate_open_frames(s) for s in (1, 2, 4, 7, 10, 50)] == [0, 1, 3, SILENCE_OPEN_FRAMES, SILENCE_OPEN_FRAMES,
                                                                    SILENCE_OPEN_FRAMES]


def test_a_reader_that_stops_reading_blocks_the_writer_instead_of_growing_memory(head):
    session = StreamingSession(head, controls=FAST)
    noise = np.random.default_rng(0).normal(0, 0.1, RATE // 10).astype(np.float32)
    pushed = 0
    with pytest.raises(TimeoutError):
        for _ in range(3000):  # 300 s of audio: far more than the queues hold
            session.push(noise, timeout=2.0)
            pushed += 1
    assert pushed < 1000  # bounded: at most the queues' worth was taken
    session.close()  # cannot hang: it joins each stage with a timeout; how long it takes: `vasa bench`
    assert not any(t.name.startswith("vasa-") and t.is_alive() for t in threading.enumerate())


def test_stage_failures_reach_the_reader(head, speech):
    def broken(image):
        raise RuntimeError("encoder broke")

    with StreamingSession(head, controls=FAST, encode=broken) as session:
        session.push(speech)
        session.end()
        with pytest.raises(RuntimeError, match="encoder broke"):
            for _ in session.frames():
                pass


def test_an_emotion_set_mid_stream_eases_in(head, speech):
    """Frames read before the change are the plain ones; the last frames (their audio pushed after the
    change, and past its EMOTION_BLEND_S) wear the expression fully, as in a session that set it before
    any audio; in between, the face turns. The motion stays the plain session's (the generator keeps its
    starting condition)."""
    happy = {"happy": 1.0}
    plain = [f.image for f in stream(head, speech, 777, controls=FAST)]
    with StreamingSession(head, controls=FAST) as session:
        session.set_emotion(happy)
        session.push(speech)
        session.end()
        early = [f.image for f in session.frames()]
    first = int(0.8 * RATE)  # frames of later audio (+ the encoder's lookahead) wait for the rest to come
    with StreamingSession(head, controls=FAST) as session:
        session.push(speech[:first])
        images = [session.next_frame(timeout=30).image for _ in range(10)]
        session.set_emotion(happy)
        session.push(speech[first:])
        session.end()
        images += [f.image for f in session.frames()]
    tail = 10
    assert len(images) == len(plain) == len(early) > 0.8 * 25 + 2 + round(EMOTION_BLEND_S * 25) + tail
    assert all(np.array_equal(a, b) for a, b in zip(images[:10], plain))
    assert all(np.array_equal(a, b) for a, b in zip(images[-tail:], early[-tail:]))
    assert not any(np.array_equal(a, b) for a, b in zip(early[-tail:], plain[-tail:]))  # the expression shows
    assert any(not np.array_equal(a, p) and not np.array_equal(a, q)
               for a, p, q in zip(images[10:-tail], plain[10:-tail], early[10:-tail]))  # a blend in between


def test_bad_input_is_refused(head):
    with StreamingSession(head, controls=FAST) as session:
        with pytest.raises(VasaError, match="mono"):
            session.push(np.zeros((2, 100), np.float32))
        with pytest.raises(VasaError, match="NaN"):
            session.push(np.full(100, np.nan, np.float32))
        with pytest.raises(VasaError, match="unknown emotion"):
            session.set_emotion({"joy": 1.0})
        with pytest.raises(VasaError, match="between 0 and"):
            session.set_emotion({"sad": 9.0})
        with pytest.raises(VasaError, match="no audio"):
            session.end()
    with pytest.raises(ValueError, match="step_frames"):
        MotionStream(head.motion_model, step_frames=2)  # below the context of 3 frames


def test_bench_prints_and_appends_a_row_per_size(tmp_path, capsys):
    from vasa.bench import run_bench

    path = tmp_path / "tiny.safetensors"
    save_motion_model(path, randomized(TINY_MEL, seed=0), {"audio_encoder": "mel"})
    out = tmp_path / "bench.md"
    out.write_text("# before\n")
    text = run_bench(model=path, sizes=[64], seconds=1.0, threads=1, step_frames=[None, 5], out=out)
    rows = [line for line in text.splitlines() if line.startswith("| 64 |")]
    assert len(rows) == 2 and "| 64 | 8 |" in rows[0] and "| 64 | 5 |" in rows[1]
    assert out.read_text().startswith("# before\n") and rows[1] in out.read_text()
    assert rows[0] in capsys.readouterr().out
    assert "close() with the reader stopped and every queue full, 64 px:" in text
    assert "stage threads left: 0;" in text


def test_concurrent_sessions_on_one_head_do_not_share_state(head, speech, astronaut):
    """Two portraits, two voices, pushes interleaved: each equals its own offline run."""
    other_voice = np.roll(speech, RATE // 2)[: RATE * 3 // 2]
    other_source = head.encode_source(np.ascontiguousarray(astronaut[:, ::-1]))  # mirrored: another portrait
    controls_b = dataclasses.replace(FAST, seed=3)
    with StreamingSession(head, controls=FAST) as a, StreamingSession(head, other_source, controls_b) as b:
        for start in range(0, len(speech), 2000):
            a.push(speech[start:start + 2000])
            b.push(other_voice[start:start + 2000]) if start < len(other_voice) else None
        a.end()
        b.end()
        frames_a, frames_b = [f.image for f in a.frames()], [f.image for f in b.frames()]
    expected_a = list(head.frames(speech, FAST))
    saved, head.source = head.source, other_source
    try:
        expected_b = list(head.frames(other_voice, controls_b))
    finally:
        head.source = saved
    assert len(frames_a) == len(expected_a) and len(frames_b) == len(expected_b)
    assert all(np.array_equal(x, y) for x, y in zip(frames_a, expected_a))
    assert all(np.array_equal(x, y) for x, y in zip(frames_b, expected_b))


def mouth_travel(head, frames) -> np.ndarray:
    """How far each frame's rendered mouth is from the rest mouth (largest mouth coefficient of x)."""
    columns = 6 + np.flatnonzero(head.face.mouth_mask)
    return np.array([np.abs(frame.motion[columns]).max() for frame in frames])


def test_interrupt_closes_the_mouth_within_100_ms_and_release_lets_it_move_again(head):
    """Speech, cut off mid-burst: the frames read after `interrupt` close the mouth within 100 ms of stream
    time (whatever audio they were made from), frames made before it are dropped, the clock does not
    skip back; after `release_mouth` with new speech the mouth moves again."""
    speech = voiced_bursts(4.0, voiced_until=4.0, rate=RATE)
    with StreamingSession(head, controls=FAST) as session:
        session.push(speech[:RATE])
        before = [session.next_frame(timeout=30) for _ in range(8)]
        session.interrupt()
        session.push(np.zeros(RATE // 2, np.float32))  # the listener talks; the avatar hears silence
        session.release_mouth()
        session.push(speech[RATE:3 * RATE])
        session.end()
        after = list(session.frames())
    assert mouth_travel(head, before).max() > 0.05  # it was talking
    cut = after[0].time_s
    assert after[0].index > before[-1].index  # the clock goes on (some frames may be dropped)
    indices = [f.index for f in after]
    assert indices == sorted(set(indices))
    hushed = [f for f in after if cut + 0.1 <= f.time_s < 1.5]
    assert hushed and mouth_travel(head, hushed).max() == 0.0
    # the same audio uninterrupted: those frames would have talked (some were made from the speech)
    audio = np.concatenate([speech[:RATE], np.zeros(RATE // 2, np.float32), speech[RATE:3 * RATE]])
    plain = {f.index: f for f in stream(head, audio, 777, controls=FAST)}
    assert mouth_travel(head, [plain[f.index] for f in hushed]).max() > 0.05
    talking = [f for f in after if f.time_s >= 1.5 + 0.2]
    assert mouth_travel(head, talking).max() > 0.05
    assert session.stats.interrupted_frames == after[0].index - before[-1].index - 1


def test_interrupt_changes_nothing_before_it(head, speech):
    """Frames read before `interrupt` equal the uninterrupted run's; a release with no interruption before
    it changes nothing."""
    plain = stream(head, speech, 777, controls=FAST)
    with StreamingSession(head, controls=FAST) as session:
        session.release_mouth(0.0)
        session.push(speech)
        session.end()
        released = list(session.frames())
    assert all(np.array_equal(a.image, b.image) for a, b in zip(plain, released)) and len(plain) == len(released)


def test_a_mark_applies_to_every_streamed_frame_and_nothing_else(head, speech):
    """`mark` (the watermark of vasa serve) changes each frame exactly as marking the offline frame does."""
    from vasa.provenance import Watermarker

    marker = Watermarker(0x5EED)
    offline = list(head.frames(speech, FAST))
    frames = stream(head, speech, 4000, controls=FAST, mark=marker.mark)
    assert len(frames) == len(offline)
    for frame, expected in zip(frames, offline):
        assert np.array_equal(frame.image, marker.mark(expected))
        assert not np.array_equal(frame.image, expected)
