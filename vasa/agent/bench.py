"""`vasa bench --agent`: the avatar as a voice agent sees it, through a Pipecat pipeline, on this machine.

A `VasaVideoService` in a pipeline whose TTS is played by a script: utterances of the demo speech given
at once (as TTS services send audio, faster than real time) with silence between them, every third one
(the second, the fifth, ...) cut off by an `InterruptionFrame` halfway. Measured on the frames that leave the service:
- first frame after the first TTS audio: wall time from an utterance's first audio frame entering the
  service to the first video frame that shows it (the first utterance, and the median of all);
- interruption to closed mouth: from the `InterruptionFrame` to the first frame whose mouth is at rest
  (wall time, and stream time from the first frame made after it);
- frame lag: each frame's arrival behind its place on the audio clock (the stream's start + its time),
  design latency included: median, largest, and the growth from the first tenth of the run to the last
  (about 0 = real time);
- frames per second out, frames dropped (late, or the pipeline behind) and interrupted, and the clock
  time the avatar gave up because the machine could not keep real time.

With `webrtc`, a second row: `vasa serve` over WebRTC (`vasa.server.webrtc`) with an aiortc client in
this process (no browser) sending the same speech and silence as its microphone: first frame after the
first audio packet, frame lag (each frame's arrival behind the first's plus its timestamp: the
schedule's own jitter and slips), fps, frames skipped and the pacer's schedule moves. `vasa serve` has
no barge-in, so that cell is empty. The client decodes VP8 and Opus on the same cores.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
from pathlib import Path

import numpy as np

UTTERANCE_S = 3.0
PAUSE_S = 3.0


def _mouth(head, motion) -> float:
    return float(np.abs(np.asarray(motion)[6 + np.flatnonzero(head.face.mouth_mask)]).max())


async def _drive(service, speech: np.ndarray, seconds: float, marks: dict) -> list:
    from pipecat.frames.frames import (EndFrame, InterruptionFrame, OutputImageRawFrame, TTSAudioRawFrame,
                                       TTSStartedFrame, TTSStoppedFrame)
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameProcessor
    from pipecat.workers.runner import WorkerRunner

    arrivals = []

    class Watch(FrameProcessor):
        async def process_frame(self, frame, direction):
            await super().process_frame(frame, direction)
            if isinstance(frame, OutputImageRawFrame) and "vasa" in frame.metadata:
                arrivals.append((time.monotonic(), frame.metadata["vasa"]))
            await self.push_frame(frame, direction)

    worker = PipelineWorker(Pipeline([service, Watch()]), params=PipelineParams(audio_out_sample_rate=16000),
                            cancel_on_idle_timeout=False, enable_rtvi=False)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    pcm = (np.clip(speech, -1, 1) * 32767).astype(np.int16)
    chunks = [pcm[k:k + 3200].tobytes() for k in range(0, len(pcm), 3200)]  # 200 ms TTS frames
    tasks = []

    async def script(w):
        await asyncio.sleep(1.0)  # listening first
        k, start = 0, time.monotonic()
        while time.monotonic() - start < seconds - UTTERANCE_S - PAUSE_S:
            said = time.monotonic()
            marks.setdefault("said", []).append(said)
            await w.queue_frames([TTSStartedFrame()] + [TTSAudioRawFrame(audio=c, sample_rate=16000, num_channels=1)
                                                        for c in chunks] + [TTSStoppedFrame()])
            if k % 3 == 1:
                await asyncio.sleep(UTTERANCE_S / 2 + service.avatar.session.algorithmic_latency_s)
                marks.setdefault("interrupted", []).append(time.monotonic())
                await w.queue_frame(InterruptionFrame())
                await asyncio.sleep(UTTERANCE_S / 2 + PAUSE_S - service.avatar.session.algorithmic_latency_s)
            else:
                await asyncio.sleep(UTTERANCE_S + PAUSE_S)
            k += 1
        marks["t0"] = service.avatar._t0
        await w.queue_frame(EndFrame())

    @worker.event_handler("on_pipeline_started")
    async def started(w, frame):
        tasks.append(asyncio.ensure_future(script(w)))

    await runner.run()
    await asyncio.gather(*tasks)
    return arrivals


def _webrtc_row(head, seconds: float, ms) -> str:
    """`vasa serve` over WebRTC with an aiortc client: the table row."""
    import json
    import urllib.request

    from vasa.bench import _speech
    from vasa.server.headless import serve_in_thread, webrtc_call

    speech = _speech(UTTERANCE_S)
    period = np.concatenate([speech, np.zeros_like(speech)])
    waveform = np.tile(period, int(np.ceil(seconds / (2 * UTTERANCE_S))))[: int(seconds * 16000)]
    with serve_in_thread(head) as url:
        portrait = json.loads(urllib.request.urlopen(url + "api/portraits").read())[0]["id"]
        got = asyncio.run(webrtc_call(url, portrait, waveform, seconds))
        status = json.loads(urllib.request.urlopen(url + "api/status").read())
    if got["status"] != 200 or len(got["video"]) < 2:
        return f"| WebRTC (vasa serve) | failed: {got['answer']} | | | | | |"
    arrival = np.array([a for a, _, _ in got["video"]])
    pts = np.array([p for _, p, _ in got["video"]], dtype=np.float64) / 90000
    lag = (arrival - arrival[0]) - (pts - pts[0])
    tenth = max(1, len(lag) // 10)
    fps = (len(arrival) - 1) / (arrival[-1] - arrival[0])
    return (f"| WebRTC (vasa serve) | {ms([arrival[0] - got['first_audio_s']])} / — | — | {ms(lag)} / {ms(lag, np.max)} "
            f"(from the first frame) | {1000 * (np.median(lag[-tenth:]) - np.median(lag[:tenth])):+.0f} | {fps:.1f} | "
            f"— / {status['frames_dropped']} / — | {status['rtc_schedule_moves']} schedule moves |")


def run_agent_bench(model: str | Path | None = None, size: int = 256, seconds: float = 60.0, threads: int = 2,
                    out: Path | None = None, webrtc: bool = True) -> str:
    import torch

    from vasa.bench import _load, _speech
    from vasa.demo import demo_portrait
    from vasa.errors import VasaError
    from vasa.pipeline import TalkingHead
    from vasa.streaming import one_opencv_thread

    try:
        from vasa.agent.pipecat import VasaVideoService
    except ImportError:
        raise VasaError('the agent bench runs a Pipecat pipeline: pip install "vasa[pipecat]"') from None
    torch.set_num_threads(threads)
    one_opencv_thread()  # as vasa serve runs
    head = TalkingHead.from_pretrained(model or "live", size=size)
    service = VasaVideoService(demo_portrait(), head=head)
    marks: dict = {}
    arrivals = asyncio.run(_drive(service, _speech(UTTERANCE_S), seconds, marks))
    stats, t0 = service.stats, marks["t0"]
    wall = np.array([a for a, _ in arrivals])
    info = [i for _, i in arrivals]
    lag = wall - (t0 + np.array([i["time_s"] for i in info]))
    tenth = max(1, len(lag) // 10)
    first = []
    for said in marks["said"]:
        shown = next((a for a, i in arrivals if a > said and i["state"] == "speaking"), None)
        if shown is not None:
            first.append(shown - said)
    closed_wall, closed_stream = [], []
    for cut in marks.get("interrupted", []):
        after = [(a, i) for a, i in arrivals if a > cut]
        hushed = next((k for k, (_, i) in enumerate(after) if i["state"] == "interrupted"), None)
        if hushed is None:
            continue
        shut = next(((a, i) for a, i in after[hushed:] if _mouth(head, i["motion"]) == 0.0), None)
        if shut is not None:
            closed_wall.append(shut[0] - cut)
            closed_stream.append(shut[1]["time_s"] - after[hushed][1]["time_s"])
    fps = (len(wall) - 1) / (wall[-1] - wall[0]) if len(wall) > 1 else 0.0

    def ms(values, pick=np.median) -> str:  # no value: none of those frames came out in time to be shown
        return f"{1000 * pick(values):.0f}" if len(values) else "—"

    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {threads}; "
        f"model {model or 'live'}, {size} px; {seconds:g} s: utterances of {UTTERANCE_S:g} s of the demo speech "
        f"given at once, {PAUSE_S:g} s of silence between, every third (from the second) cut off halfway; load avg {_load()}",
        "",
        "| path | first frame after TTS audio ms (first / median) | interruption to closed mouth ms, wall (stream) "
        "| frame lag ms median / max (design) | lag growth ms | fps out | late / dropped / interrupted frames "
        "| clock slipped |",
        "|---|---|---|---|---|---|---|---|",
        f"| Pipecat (VasaVideoService) | {ms(first[:1])} / {ms(first)} | {ms(closed_wall)} ({ms(closed_stream, np.max)}) | "
        f"{ms(lag)} / {ms(lag, np.max)} ({1000 * service.latency_s:.0f}) | "
        f"{1000 * (np.median(lag[-tenth:]) - np.median(lag[:tenth])) if len(lag) else 0:+.0f} | {fps:.1f} | "
        f"{stats.late_frames} / {service.dropped_frames} / {stats.interrupted_frames} | {stats.slipped_s:.1f} s |",
    ]
    if webrtc:
        from vasa.server.webrtc import webrtc_available

        lines.append(_webrtc_row(head, seconds, ms) if webrtc_available() else
                     "| WebRTC (vasa serve) | not measured: aiortc is not installed | | | | | | |")
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    if out is not None:
        with open(out, "a") as file:
            file.write("\n" + text)
    return text
