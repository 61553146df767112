"""`vasa bench`: how fast generation runs here, offline and live. Prints numbers; asserts nothing.

Per frame size:
- offline: `TalkingHead.generate` to an mp4 (features, motion, render, H.264 in one thread) -> fps;
- streaming: a `StreamingSession` with JPEG encoding, fed 20 ms chunks at the pace of real speech
  (the driver waits between chunks; the model code never does) -> first-frame latency (first audio
  pushed -> first frame out), its compute part (minus the audio the first frame must wait for),
  sustained fps (frames / time from the first frame to the last), the largest lag of a frame behind
  the start of its audio (beside the design's worst wait), how much that lag grew from the first half
  of the run to the second (about 0 = real time; growing = the pipeline falls behind), and each
  stage's share of the busy time;
- close: a `StreamingSession` whose reader stopped reading, fed until every queue is full and the
  writer is blocked (what tests/test_streaming.py checks stops cleanly) -> how long `close()` takes
  to stop the stage threads, and how many are left (should be 0).

Speech: the bundled demo speech tiled to `seconds`; portrait: the bundled demo portrait. Timings on a
shared machine move with its load, so the load average is printed with every row.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

CHUNK_S = 0.02  # the browser page sends 20 ms of audio per message


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def _speech(seconds: float) -> np.ndarray:
    from vasa.audio import SAMPLE_RATE, load_audio
    from vasa.demo import DEMO_SPEECH

    speech = load_audio(DEMO_SPEECH)
    samples = int(seconds * SAMPLE_RATE)
    return np.tile(speech, -(-samples // len(speech)))[:samples]


def offline_fps(head, waveform: np.ndarray) -> float:
    from vasa.media import write_wav

    with tempfile.TemporaryDirectory() as folder:
        wav, out = Path(folder) / "speech.wav", Path(folder) / "out.mp4"
        write_wav(wav, waveform)
        start = time.perf_counter()
        frames = head.generate(wav, out, progress=False)
        return frames / (time.perf_counter() - start)


def streaming_run(head, waveform: np.ndarray, step_frames: int | None = None, watermark: bool = True) -> dict:
    """Push at real-time pace from this thread, read frames in another (each frame watermarked as
    `vasa serve` does, unless `watermark` is False); -> figures."""
    import threading

    import cv2

    from vasa.audio import SAMPLE_RATE
    from vasa.provenance import stream_mark
    from vasa.streaming import StreamingSession, one_opencv_thread

    def jpeg(image):
        return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()

    opencv_threads = one_opencv_thread()  # as vasa serve runs
    session = StreamingSession(head, step_frames=step_frames, encode=jpeg, mark=stream_mark(watermark))
    arrivals: list[tuple[float, float]] = []  # (wall s since start, frame time_s)

    def read():
        for frame in session.frames():
            arrivals.append((frame.ready_s, frame.time_s))

    reader = threading.Thread(target=read)
    reader.start()
    chunk = int(CHUNK_S * SAMPLE_RATE)
    start = time.perf_counter()
    try:
        for k, offset in enumerate(range(0, len(waveform), chunk)):
            session.push(waveform[offset:offset + chunk])
            time.sleep(max(0.0, start + (k + 1) * CHUNK_S - time.perf_counter()))
        session.end()
        reader.join()
    finally:
        session.close()
        cv2.setNumThreads(opencv_threads)
    wall = np.array([a[0] - start for a in arrivals])
    times = np.array([a[1] for a in arrivals])
    lag = wall - times  # how long after its audio began each frame was out
    busy = {name: stage.busy_s for name, stage in session.stats.stages.items()}
    total_busy = sum(busy.values())
    return {
        "frames": len(arrivals), "first_frame_ms": 1000 * wall[0],
        "design_first_ms": 1000 * session.first_frame_wait_s,
        "compute_ms": 1000 * (wall[0] - session.first_frame_wait_s),
        "fps": (len(wall) - 1) / (wall[-1] - wall[0]),
        "design_worst_ms": 1000 * session.algorithmic_latency_s,
        "max_lag_ms": 1000 * lag.max(),
        "lag_growth_ms": 1000 * (lag[len(lag) // 2:].max() - lag[:len(lag) // 2].max()),
        "shares": {name: value / total_busy for name, value in busy.items()},
        "busy_ms_per_frame": {name: 1000 * value / len(arrivals) for name, value in busy.items()},
    }


def close_run(head, waveform: np.ndarray, push_timeout_s: float = 2.0) -> dict:
    """A reader that stops reading: push 100 ms chunks (the speech over and over) until one is not taken
    within `push_timeout_s`, then time `close()`; -> figures."""
    import threading

    from vasa.audio import SAMPLE_RATE
    from vasa.streaming import StreamingSession

    chunk, pushed = SAMPLE_RATE // 10, 0
    speech = np.tile(waveform, -(-2 * chunk // len(waveform)))  # at least two chunks long
    session = StreamingSession(head)
    try:
        while pushed < 3000 * chunk:  # 300 s of audio: far more than the queues hold
            offset = pushed % (len(speech) - chunk + 1)
            session.push(speech[offset:offset + chunk], timeout=push_timeout_s)
            pushed += chunk
    except TimeoutError:
        pass
    start = time.perf_counter()
    session.close()
    close_s = time.perf_counter() - start
    left = sum(t.name.startswith("vasa-") and t.is_alive() for t in threading.enumerate())
    return {"pushed_s": pushed / SAMPLE_RATE, "close_ms": 1000 * close_s, "threads_left": left}


def run_bench(model: str | Path | None = None, sizes=(256, 512), seconds: float = 12.0, threads: int = 2,
              step_frames=(None,), out: Path | None = None, watermark: bool = True) -> str:
    import torch

    from vasa.demo import demo_portrait
    from vasa.pipeline import TalkingHead

    torch.set_num_threads(threads)
    waveform = _speech(seconds)
    devices = ["cpu"] + (["cuda (not used: the pipeline runs on the CPU)"] if torch.cuda.is_available() else [])
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {threads}; "
        f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}; devices: {', '.join(devices)}",
        f"Speech: {seconds:g} s of the demo speech; streaming pushes {1000 * CHUNK_S:.0f} ms chunks at real-time pace; "
        f"frames {'watermarked (render stage), as vasa serve does' if watermark else 'not watermarked'}; "
        "OpenCV on one thread while streaming, as vasa serve runs.",
        "",
        "| size | window step | offline fps | first frame ms (= design + compute) | streaming fps "
        "| max frame lag ms (design) | lag growth ms | stage shares (features / motion / render / encode) | load avg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    closes = []
    for size in sizes:
        head = TalkingHead.from_pretrained(model, size=size)
        head.set_source(demo_portrait())
        offline = offline_fps(head, waveform)
        for step in step_frames:
            run = streaming_run(head, waveform, step, watermark)
            shares = " / ".join(f"{100 * run['shares'].get(k, 0):.0f} %" for k in ("features", "motion", "render", "encode"))
            line = (f"| {size} | {step or head.motion_model.config.window_frames} | {offline:.1f} | "
                    f"{run['first_frame_ms']:.0f} (= {run['design_first_ms']:.0f} + {run['compute_ms']:.0f}) | "
                    f"{run['fps']:.1f} | {run['max_lag_ms']:.0f} ({run['design_worst_ms']:.0f}) | "
                    f"{run['lag_growth_ms']:+.0f} | {shares} | {_load()} |")
            lines.append(line)
            print(line, flush=True)
        closes.append((size, close_run(head, waveform)))
    lines.append("")
    for size, run in closes:
        line = (f"- close() with the reader stopped and every queue full, {size} px: {run['close_ms']:.0f} ms "
                f"({run['pushed_s']:.1f} s of audio taken before the writer blocked; stage threads left: "
                f"{run['threads_left']}; load avg {_load()})")
        lines.append(line)
        print(line, flush=True)
    text = "\n".join(lines) + "\n"
    if out is not None:
        with open(out, "a") as file:
            file.write("\n" + text)
    return text
