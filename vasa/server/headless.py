"""The `vasa serve` page in headless Chromium, driven by playwright (a dev dependency, imported only
when a page is opened): a speech file is the microphone (Chromium's fake capture device), the page
streams it and plays the frames that come back with their audio. The browser test of the page
(tests/test_browser.py) and its A/V benchmark (scripts/bench_browser.py) drive it the same way:

    with serve_in_thread(head) as url, open_page(url) as run:
        stats = stream_until_shown(run, 85)    # the page's window.vasa.stats
    print(av_offsets(stats))                   # how far the shown frame was behind the audio playing

The offsets are measured by the page on the browser's clocks: figures for a benchmark, never a pass mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vasa.pipeline import TalkingHead
from vasa.server.app import ServerConfig, build_app

WARM_UP_FRAMES = 25  # the first second: the page's first frames wait on decoder and timer start-up


def chromium_path() -> str | None:
    """A system Chromium ($VASA_CHROMIUM first); None when there is none."""
    for candidate in (os.environ.get("VASA_CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@contextlib.contextmanager
def serve_in_thread(head: TalkingHead, config: ServerConfig = ServerConfig()) -> Iterator[str]:
    """`vasa serve` for `head` on a free loopback port, its event loop in a thread; yields the page's URL."""
    from aiohttp import web

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(build_app(head, config))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


@dataclass
class PageRun:
    """An open page: `page` (playwright's), the errors it raised and the WebSocket messages it sent
    (text as str, audio as bytes) and, when asked for, received."""

    page: Any
    errors: list[str] = field(default_factory=list)
    sent: list = field(default_factory=list)
    received: list = field(default_factory=list)


@contextlib.contextmanager
def open_page(url: str, speech: str | Path | None = None, executable: str | None = None,
              record_received: bool = False) -> Iterator[PageRun]:
    """Headless Chromium on the page at `url`, with `speech` (a wav; default the demo speech) as the
    microphone, the portraits listed and one picked. `record_received` keeps every message the page
    got (binary frames included: costs the browser a copy of each)."""
    from playwright.sync_api import sync_playwright

    from vasa.demo import DEMO_SPEECH

    executable = executable or chromium_path()
    if executable is None:
        raise FileNotFoundError("no system Chromium (apt-get install chromium, or set VASA_CHROMIUM)")
    args = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={speech or DEMO_SPEECH}", "--autoplay-policy=no-user-gesture-required",
            "--disable-features=WebRtcHideLocalIpsWithMdns"]  # WebRTC: host candidates the server can reach
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=args)
        try:
            run = PageRun(browser.new_page())
            run.page.on("pageerror", lambda error: run.errors.append(str(error)))

            def watch(ws) -> None:  # playwright takes Python functions as handlers, not list.append
                ws.on("framesent", lambda payload: run.sent.append(payload))
                if record_received:
                    ws.on("framereceived", lambda payload: run.received.append(payload))

            run.page.on("websocket", watch)
            run.page.goto(url)
            run.page.wait_for_selector("#portraits img.picked", timeout=20_000)  # hang guard
            yield run
        finally:
            browser.close()


def stream_until_shown(run: PageRun, frames: int, timeout_s: float = 60.0) -> dict:
    """Press the microphone button and wait until the page has shown `frames` frames (or failed);
    -> the page's stats (`window.vasa.stats` in vasa/server/static/app.js). `timeout_s` is a hang guard."""
    run.page.click("#mic")
    run.page.wait_for_function(f"window.vasa.stats.shown >= {int(frames)} || window.vasa.stats.error",
                               timeout=1000 * timeout_s)
    return run.page.evaluate("window.vasa.stats")


def av_offsets(stats: dict, warm_up_frames: int = WARM_UP_FRAMES) -> dict:
    """The audio clock minus the shown frame's time, in ms, over the frames shown after `warm_up_frames`:
    count, median, 80th and 95th percentile, max (one frame at 25 fps is 40 ms)."""
    drifts = np.asarray(stats["driftsMs"], float)[warm_up_frames:]
    if not len(drifts):
        return {"frames": 0, "median_ms": float("nan"), "p80_ms": float("nan"), "p95_ms": float("nan"),
                "max_ms": float("nan")}
    return {"frames": len(drifts), "median_ms": float(np.median(drifts)), "p80_ms": float(np.percentile(drifts, 80)),
            "p95_ms": float(np.percentile(drifts, 95)), "max_ms": float(drifts.max())}


# --- a WebRTC client without a browser (aiortc): the tests of /api/webrtc/offer and `vasa bench --agent` ---
def _speech_track(waveform: np.ndarray, stop_after: float | None, sent: dict):
    """`waveform` (16 kHz mono float) in 20 ms packets at real-time pace, then silence; nothing at all
    after `stop_after` s (a microphone gone quiet). `sent["first_s"]`: when the first packet left."""
    import fractions
    import time

    import av
    from aiortc import MediaStreamTrack

    from vasa.latents import SAMPLE_RATE

    pcm = (np.clip(waveform, -1, 1) * 32767).astype(np.int16)

    class Speech(MediaStreamTrack):
        kind = "audio"

        def __init__(self):
            super().__init__()
            self.sent, self.start = 0, None

        async def recv(self):
            if self.start is None:
                self.start = sent["first_s"] = time.monotonic()
            if stop_after is not None and self.sent >= stop_after * SAMPLE_RATE:
                await asyncio.Future()  # never answers
            await asyncio.sleep(max(0.0, self.start + self.sent / SAMPLE_RATE - time.monotonic()))
            chunk = np.zeros(SAMPLE_RATE // 50, np.int16)
            part = pcm[self.sent:self.sent + len(chunk)]
            chunk[:len(part)] = part
            frame = av.AudioFrame.from_ndarray(chunk[None], format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, self.sent, fractions.Fraction(1, SAMPLE_RATE)
            self.sent += len(chunk)
            return frame

    return Speech()


async def webrtc_call(url: str, portrait: str, waveform: np.ndarray, seconds: float, fields: dict | None = None,
                      stop_after: float | None = None, controls: list[str] = ()) -> dict:
    """Offer `vasa serve` at `url` (audio sendrecv, video recvonly), send `waveform` as the microphone and
    read the tracks for `seconds`; `controls`: messages sent on a data channel once it opens. -> {"status",
    "answer", "video": [(arrival s, pts, RGB image)], "audio": [int16 arrays], "replies": [the data
    channel's answers], "first_audio_s", "posted_s"} (arrival times on time.monotonic)."""
    import time

    import aiohttp
    from aiortc import RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection()
    got = {"video": [], "audio": [], "replies": [], "first_audio_s": None}
    sent: dict = {}
    pc.addTrack(_speech_track(waveform, stop_after, sent))
    pc.addTransceiver("video", direction="recvonly")
    if controls:
        channel = pc.createDataChannel("controls")
        channel.on("open", lambda: [channel.send(text) for text in controls])
        channel.on("message", lambda text: got["replies"].append(text))
    readers = []

    @pc.on("track")
    def on_track(track):
        async def read():
            while True:
                try:
                    frame = await track.recv()
                except Exception:  # the track ended
                    return
                if track.kind == "video":
                    got["video"].append((time.monotonic(), frame.pts, frame.to_ndarray(format="rgb24")))
                else:
                    got["audio"].append(frame.to_ndarray().reshape(-1))
        readers.append(asyncio.ensure_future(read()))

    await pc.setLocalDescription(await pc.createOffer())
    body = {"portrait": portrait, "sdp": {"type": "offer", "sdp": pc.localDescription.sdp}, **(fields or {})}
    got["posted_s"] = time.monotonic()
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "api/webrtc/offer", json=body) as response:
            got["status"], got["answer"] = response.status, await response.json()
    if got["status"] == 200:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=got["answer"]["sdp"], type="answer"))
        await asyncio.sleep(seconds)
    got["first_audio_s"] = sent.get("first_s")
    await pc.close()
    for reader in readers:
        reader.cancel()
    return got
