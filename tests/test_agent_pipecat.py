"""The avatar in a Pipecat pipeline: speech, listening, interruption; bad TTS input; `LiveAvatar` alone."""

from __future__ import annotations

import asyncio
import time
import dataclasses

import numpy as np
import pytest

from conftest import voiced_bursts
from test_motion_dit import randomized
from vasa.agent.avatar import LiveAvatar, to_model_audio
from vasa.errors import VasaError
from vasa.motion import PRESETS, save_motion_model
from vasa.pipeline import Controls, TalkingHead
from vasa.stages import HUSH_FRAMES

pytest.importorskip("pipecat", reason="the pipecat extra (pip install 'vasa[pipecat]') is not installed")

TINY_MEL = dataclasses.replace(PRESETS["tiny"], audio_dim=80)
FPS = 25
SIZE = 96
TTS_RATE = 24000  # a common TTS rate: the service resamples to 16 kHz
CONTROLS = Controls(steps=2, seed=0, blinks=60)  # blinks often enough to see some in a few seconds


@pytest.fixture(scope="module")
def live(astronaut):
    """The shipped live model (the one an agent runs), small frames."""
    head = TalkingHead.from_pretrained("live", size=SIZE)
    head.set_source(astronaut)
    return head


@pytest.fixture(scope="module")
def head(tmp_path_factory, astronaut):
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_motion_model(path, randomized(TINY_MEL, seed=0), {"audio_encoder": "mel"})
    head = TalkingHead.from_pretrained(path, size=64)
    head.set_source(astronaut)
    return head


def mouth(head, motion) -> float:
    return float(np.abs(np.asarray(motion)[6 + np.flatnonzero(head.face.mouth_mask)]).max())


def eye_opening(head, motion) -> float:
    lids = head.face.eyelids
    base = lids.opening(head.source.appearance)
    return float(((base + lids.jacobian @ np.asarray(motion)[6:]) / base).mean())


def tts_frames(waveform_16k: np.ndarray, chunk_s: float = 0.1):
    """The speech as a TTS service sends it: 24 kHz int16 frames, faster than real time."""
    from pipecat.frames.frames import TTSAudioRawFrame
    from scipy.signal import resample_poly

    pcm = (np.clip(resample_poly(waveform_16k, 3, 2), -1, 1) * 32767).astype(np.int16)
    step = int(chunk_s * TTS_RATE)
    return [TTSAudioRawFrame(audio=pcm[k:k + step].tobytes(), sample_rate=TTS_RATE, num_channels=1)
            for k in range(0, len(pcm), step)]


async def run_pipeline(service, script, upstream: list | None = None):
    """Run [upstream watcher, service, collector] in a Pipecat worker; `script(worker)` queues frames.
    -> the frames collected downstream (and in `upstream` the ones that went up past the service)."""
    from pipecat.frames.frames import EndFrame, StartFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.runner import WorkerRunner

    collected = []

    class Collector(FrameProcessor):
        async def process_frame(self, frame, direction):
            await super().process_frame(frame, direction)
            if direction == FrameDirection.DOWNSTREAM and not isinstance(frame, (StartFrame, EndFrame)):
                collected.append(frame)
            await self.push_frame(frame, direction)

    class UpWatch(FrameProcessor):
        async def process_frame(self, frame, direction):
            await super().process_frame(frame, direction)
            if direction == FrameDirection.UPSTREAM and upstream is not None:
                upstream.append(frame)
            await self.push_frame(frame, direction)

    worker = PipelineWorker(Pipeline([UpWatch(), service, Collector()]), params=PipelineParams(audio_out_sample_rate=16000),
                            cancel_on_idle_timeout=False, enable_rtvi=False)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)

    tasks = []

    @worker.event_handler("on_pipeline_started")
    async def started(w, frame):
        tasks.append(asyncio.ensure_future(script(w)))

    await asyncio.wait_for(runner.run(), timeout=120)
    await asyncio.gather(*tasks)
    return collected


@pytest.mark.slow
def test_pipecat_speech_silence_interruption(live, astronaut):
    """Recorded-like speech, then silence, then a second utterance cut off mid-word: frames keep coming
    through the silence at 25 fps with the mouth at rest and blinks; after the interruption the mouth is
    closed within 100 ms of stream time and no more of that speech is played; every audio frame goes out
    right after the image of its own frame; the speech played is the speech given."""
    from pipecat.frames.frames import (EndFrame, InterruptionFrame, OutputImageRawFrame, TTSAudioRawFrame,
                                       TTSStartedFrame, TTSStoppedFrame)

    from vasa.agent.pipecat import VasaVideoService

    first = voiced_bursts(1.6, voiced_until=1.6)
    second = voiced_bursts(3.0, voiced_until=3.0)
    service = VasaVideoService(astronaut, head=live, controls=CONTROLS)

    async def script(worker):
        await worker.queue_frames([TTSStartedFrame(), *tts_frames(first), TTSStoppedFrame()])
        await asyncio.sleep(1.6 + 3.0)  # the utterance, then listening
        await worker.queue_frames([TTSStartedFrame(), *tts_frames(second), TTSStoppedFrame()])
        await asyncio.sleep(1.0 + service.avatar.session.algorithmic_latency_s)
        await worker.queue_frame(InterruptionFrame())
        await asyncio.sleep(2.0)
        await worker.queue_frame(EndFrame())

    frames = asyncio.run(run_pipeline(service, script))
    images = [f for f in frames if isinstance(f, OutputImageRawFrame)]
    info = [f.metadata["vasa"] for f in images]
    assert all(f.sync_with_audio and f.format == "RGB" and f.size == (SIZE, SIZE) for f in images)
    assert service.stats.late_frames == 0 and service.dropped_frames == 0

    # frames come at the output rate all the way: consecutive indices except those the interruption dropped
    index = np.array([i["index"] for i in info])
    gaps = np.diff(index)
    assert (gaps >= 1).all() and (gaps > 1).sum() <= 1
    assert len(images) >= 6 * FPS  # (fewer only where a busy machine made the clock slip)

    # listening between the utterances (by their frames: a busy machine may slip the clock): at rest,
    # blinking, the head moving
    talk = np.array([i["time_s"] for i in info if i["state"] == "speaking"])
    pause = np.argmax(np.diff(talk))  # the silence between the two utterances
    listening = [i for i in info if talk[pause] + 0.4 < i["time_s"] < talk[pause + 1] - 0.3]
    assert len(listening) > 2 * FPS and {i["state"] for i in listening} == {"listening"}
    assert max(mouth(live, i["motion"]) for i in listening) == 0.0
    eyes = np.array([eye_opening(live, i["motion"]) for i in listening])
    assert eyes.min() < 0.5 < eyes.max()  # at least one blink
    pose = np.array([i["motion"][:3] for i in listening])
    assert np.abs(np.diff(pose, axis=0)).sum() > 0  # the head is not frozen
    speaking = [i for i in info if i["state"] == "speaking"]
    assert speaking and max(mouth(live, i["motion"]) for i in speaking) > 0.05

    # the interruption: closed within 100 ms of the first frame made after it, until the end
    cut = next(k for k, i in enumerate(info) if i["state"] == "interrupted")  # the first frame made after it
    after = info[cut:]
    assert [i["state"] for i in after[:HUSH_FRAMES]] == ["interrupted"] * HUSH_FRAMES
    closed = [i for i in after if i["time_s"] >= after[0]["time_s"] + 0.1]
    assert closed and max(mouth(live, i["motion"]) for i in closed) == 0.0
    assert all(i["state"] == "listening" for i in closed)

    # sound goes out with its own frame, speech in order; the first utterance whole
    last_image = None
    audio_by_utterance, current = [], None
    for f in frames:
        if isinstance(f, OutputImageRawFrame):
            last_image = f.metadata["vasa"]["index"]
        elif isinstance(f, TTSStartedFrame):
            current = []
            audio_by_utterance.append(current)
        elif isinstance(f, TTSAudioRawFrame):
            assert f.metadata["vasa"]["index"] == last_image and f.sample_rate == 16000
            current.append(np.frombuffer(f.audio, np.int16))
    assert sum(isinstance(f, TTSStartedFrame) for f in frames) == 2
    assert sum(isinstance(f, TTSStoppedFrame) for f in frames) == 1  # the cut one never finished
    played = np.concatenate(audio_by_utterance[0]).astype(np.float32) / 32767
    reference = to_model_audio(b"".join(f.audio for f in tts_frames(first)), TTS_RATE)
    # the utterance starts inside its first frame's 40 ms: silence before it there, nothing lost or moved
    lag = int(np.argmax(np.correlate(played, reference, "valid"))) if len(played) >= len(reference) else -1
    assert 0 <= lag < 16000 / FPS
    assert len(played) - lag - len(reference) < 16000 / FPS
    assert np.corrcoef(played[lag:lag + len(reference)], reference)[0, 1] > 0.99
    cut_played = sum(len(a) for a in audio_by_utterance[1]) / 16000
    assert 0.5 < cut_played < 3.0 - 0.5  # it spoke, and the rest of the utterance was never played


def test_tts_audio_in_other_forms_is_resampled_or_refused():
    """24 kHz stereo int16 bytes, float arrays, empty audio; rates, channel counts and byte counts that
    cannot be speech are refused with a message."""
    t = np.arange(24000) / 24000
    tone = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    stereo = (np.stack([tone, tone], 1) * 32767).astype(np.int16)
    mono = to_model_audio(stereo.tobytes(), 24000, 2)
    assert len(mono) == 16000 and abs(np.abs(mono).max() - 0.5) < 0.01
    assert np.allclose(to_model_audio(tone, 16000)[:100], tone[:100])
    assert len(to_model_audio(b"", 24000)) == 0
    for bad, message in [((stereo.tobytes(), 0, 1), "sample rate"), ((stereo.tobytes(), 24000, 0), "channel"),
                         ((stereo.tobytes()[:-1], 24000, 2), "whole number"), ((stereo.tobytes(), 24000.5, 1), "sample rate"),
                         ((np.array([np.nan], np.float32), 16000, 1), "NaN")]:
        with pytest.raises(VasaError, match=message):
            to_model_audio(*bad)


@pytest.mark.slow
def test_bad_tts_frames_are_reported_and_the_pipeline_goes_on(head, astronaut):
    """A TTS frame with a broken rate gets an error upstream; empty frames are ignored; the avatar goes
    on talking with the good ones."""
    from pipecat.frames.frames import EndFrame, ErrorFrame, OutputImageRawFrame, TTSAudioRawFrame

    from vasa.agent.pipecat import VasaVideoService

    service = VasaVideoService(astronaut, head=head, controls=CONTROLS)

    async def script(worker):
        await worker.queue_frames([TTSAudioRawFrame(audio=b"\x00\x01" * 10, sample_rate=0, num_channels=1),
                                   TTSAudioRawFrame(audio=b"", sample_rate=24000, num_channels=1),
                                   *tts_frames(voiced_bursts(0.8, voiced_until=0.8))])
        await asyncio.sleep(1.5)
        await worker.queue_frame(EndFrame())

    frames = asyncio.run(run_pipeline(service, script))
    assert service.refused_audio == 1
    assert sum(isinstance(f, OutputImageRawFrame) for f in frames) > FPS
    assert sum(isinstance(f, TTSAudioRawFrame) for f in frames) >= 0.8 * FPS - 2
    assert not any(isinstance(f, ErrorFrame) for f in frames)  # errors go upstream, not to the output


@pytest.mark.slow
def test_a_failing_avatar_is_reported_upstream_and_the_pipeline_ends_cleanly(head, astronaut, monkeypatch):
    """The renderer breaks mid-stream: the error goes upstream as an ErrorFrame naming it; the pipeline
    still finishes on its EndFrame."""
    from pipecat.frames.frames import EndFrame, ErrorFrame

    from vasa.agent.pipecat import VasaVideoService

    service = VasaVideoService(astronaut, head=head, controls=CONTROLS)
    upstream = []

    def broken(*args, **kwargs):
        raise RuntimeError("renderer broke")

    async def script(worker):
        await asyncio.sleep(0.5)
        monkeypatch.setattr(head, "render", broken)
        await asyncio.sleep(2.0)
        await worker.queue_frame(EndFrame())

    asyncio.run(run_pipeline(service, script, upstream))
    errors = [f for f in upstream if isinstance(f, ErrorFrame)]
    assert errors and "renderer broke" in errors[0].error


def test_unknown_portrait_is_a_clear_error(head, tmp_path):
    from vasa.agent.pipecat import VasaVideoService

    with pytest.raises(VasaError, match="not found"):
        VasaVideoService(tmp_path / "nobody.jpg", head=head)
    with pytest.raises(VasaError, match="uint8"):
        VasaVideoService(np.zeros((4, 4), np.float32), head=head)


def test_live_avatar_needs_a_portrait(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_motion_model(path, randomized(TINY_MEL, seed=0), {"audio_encoder": "mel"})
    with pytest.raises(VasaError, match="portrait"):
        LiveAvatar(TalkingHead.from_pretrained(path, size=64), on_frame=lambda frame: None)


@pytest.mark.slow
def test_live_avatar_alone_listens_speaks_and_times_first_frames(head):
    """`LiveAvatar` without Pipecat: frames at the clock's pace while silent, a first-frame latency per
    utterance, states in order."""
    frames = []
    avatar = LiveAvatar(head, frames.append, controls=CONTROLS)
    avatar.start()
    try:
        time.sleep(0.6)
        for k in range(2):
            avatar.say(voiced_bursts(0.5, voiced_until=0.5))
            avatar.say(voiced_bursts(0.3, voiced_until=0.3))
            avatar.end_utterance()
            time.sleep(1.5)
    finally:
        avatar.close()
    assert avatar.error is None
    index = [f.index for f in frames]
    assert index == list(range(index[0], index[0] + len(index)))
    assert len(frames) >= 3.6 * FPS - avatar.session.algorithmic_latency_s * FPS - 5
    states = [f.state for f in frames]
    assert states[0] == "listening" and "speaking" in states and states[-1] == "listening"
    assert sum(f.starts for f in frames) == 2 and sum(f.ends for f in frames) == 2
    latency = avatar.stats.first_frame_after_speech_s
    assert len(latency) == 2 and all(0 < s < 2.0 for s in latency)
    assert abs(avatar.stats.speech_s - 1.6) <= 2 * 2 / FPS


@pytest.mark.slow
def test_agent_bench_prints_its_figures(tmp_path, capsys):
    """`vasa bench --agent` on a small model: one line of figures, appended to --out."""
    from vasa.cli import main

    path = tmp_path / "tiny.safetensors"
    save_motion_model(path, randomized(TINY_MEL, seed=0), {"audio_encoder": "mel"})
    out = tmp_path / "bench.md"
    main(["bench", "--agent", "--model", str(path), "--sizes", "64", "--seconds", "14", "--out", str(out)])
    row = next(line for line in out.read_text().splitlines() if line.startswith("| Pipecat"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    first, median = (float(v) for v in cells[1].split(" / "))
    assert 0 < first < 3000 and 0 < median < 3000
    closed = float(cells[2].split(" ")[0])  # the second utterance was cut off
    assert 0 < closed < 1000
    assert 20 < float(cells[5]) < 30  # frames per second out
    rtc = next(line for line in out.read_text().splitlines() if line.startswith("| WebRTC"))
    cells = [c.strip() for c in rtc.strip("|").split("|")]
    assert 0 < float(cells[1].split(" / ")[0]) < 5000 and 15 < float(cells[5]) < 35, rtc


@pytest.mark.slow
def test_on_a_machine_too_slow_the_clock_slips_and_the_lag_stays_bounded(head):
    """A clock running 4 times faster than this machine can make frames: the avatar gives up clock time
    (`slipped_s`) instead of piling up audio, so frames keep coming out with their images. The frames' sink
    takes 20 ms each (at most 50 frames a second, where the clock asks for 100), so the machine is too slow
    however fast it renders the small head."""
    start = time.monotonic()
    frames = []

    def show(frame):
        frames.append(frame)
        time.sleep(0.02)

    avatar = LiveAvatar(head, show, controls=CONTROLS, clock=lambda: start + 4 * (time.monotonic() - start))
    avatar.start()
    try:
        avatar.say(voiced_bursts(6.0, voiced_until=6.0))
        time.sleep(3.0)
    finally:
        avatar.close()
    assert avatar.error is None
    assert avatar.stats.slipped_s > 1.0
    last_second = frames[-25:]  # mostly shown, not late: a hiccup of a loaded machine may drop a few
    assert len(last_second) == 25 and sum(f.image is not None for f in last_second) >= 20
    assert avatar.session.pushed_s - frames[-1].time_s < avatar.session.algorithmic_latency_s + 0.5 + 0.2
