"""Soak run of `vasa serve`: a real server process on loopback, for N minutes at once:
- streams of speech paced in real time, one after another, each frame's lag behind the speaker's clock
  measured where the client receives it;
- open/close cycles beside them: a connection that sends junk, one that never starts, one cut off
  without a close frame, one refused because the slot is taken;
- an upload storm: a large photo with a face (a different one each time), an image bomb, junk.
Prints the server's resident memory over time and, at the end, memory start/end/max, frame lag
percentiles, drops, first-frame latency and the tracebacks in the server's log (there should be none).

    python scripts/soak_serve.py [--minutes 5] [--size 256] [--model live] [--upload-side 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def photo_with_face(side: int) -> bytes:
    """The bundled demo portrait scaled to side x side, as a JPEG."""
    import cv2

    from vasa.demo import demo_portrait
    from vasa.media import read_image

    image = cv2.resize(read_image(demo_portrait()), (side, side), interpolation=cv2.INTER_LINEAR)
    return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def another_file(jpeg: bytes, seed: int) -> bytes:
    """The same picture as a new file (a JPEG comment after its start marker): the server cannot know it,
    so it decodes and encodes it again, while the client spends nothing making it."""
    comment = f"upload {seed}".encode()
    return jpeg[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + jpeg[2:]


def bomb(width: int = 14000, height: int = 14000) -> bytes:
    import cv2

    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


class Soak:
    def __init__(self, url: str, pid: int, speech: bytes, args):
        self.url, self.pid, self.speech, self.args = url, pid, speech, args
        self.lags: list[float] = []
        self.first_frames: list[float] = []
        self.frames = self.dropped = self.stale = self.streams = 0
        self.cycles = {"junk": 0, "never started": 0, "cut off": 0, "refused busy": 0}
        self.uploads = {"ok": 0, "refused": 0, "failed": 0}
        self.rss: list[tuple[float, float]] = []
        self.stop_at = 0.0
        self.photo = photo_with_face(args.upload_side)

    async def run(self) -> None:
        import aiohttp

        loop = asyncio.get_running_loop()
        self.stop_at = loop.time() + 60 * self.args.minutes
        async with aiohttp.ClientSession(self.url) as client:
            portrait = (await (await client.get("/api/portraits")).json())[0]["id"]
            await asyncio.gather(self.speak(client, portrait), self.cycle(client, portrait),
                                 self.upload(client), self.sample())

    def running(self) -> bool:
        return asyncio.get_running_loop().time() < self.stop_at

    async def speak(self, client, portrait: str) -> None:
        import aiohttp

        from vasa.server.session import FRAME_HEADER

        loop = asyncio.get_running_loop()
        while self.running():
            async with client.ws_connect("/ws") as ws:
                await ws.send_json({"type": "start", "portrait": portrait})
                ready = await ws.receive_json(timeout=60)
                if ready["type"] != "ready":
                    print("start refused:", ready, flush=True)
                    await asyncio.sleep(1.0)
                    continue
                t0, chunk = loop.time(), 640  # 20 ms messages, as the page sends them

                async def send() -> None:
                    for start in range(0, len(self.speech), chunk):
                        await ws.send_bytes(self.speech[start:start + chunk])
                        await asyncio.sleep(max(0.0, t0 + (start + chunk) / 32000 - loop.time()))
                    await ws.send_json({"type": "end"})

                sender = asyncio.create_task(send())
                first = None
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.BINARY:
                        _, time_s, _ = FRAME_HEADER.unpack_from(message.data)
                        now = loop.time() - t0
                        first = now if first is None else first
                        self.lags.append(now - time_s)
                        self.frames += 1
                    elif message.type == aiohttp.WSMsgType.TEXT:
                        reply = json.loads(message.data)
                        if reply["type"] == "done":
                            self.dropped += reply["dropped"]
                            self.stale += reply.get("stale", 0)
                            break
                        if reply["type"] == "error":
                            print("stream error:", reply["message"], flush=True)
                await sender
                self.first_frames.append(first if first is not None else float("nan"))
                self.streams += 1

    async def cycle(self, client, portrait: str) -> None:
        while self.running() and self.args.cycle_every > 0:
            async with client.ws_connect("/ws") as ws:  # junk, then leave
                await ws.send_str("junk")
                await ws.receive(timeout=10)
                self.cycles["junk"] += 1
            async with client.ws_connect("/ws"):  # connect and go without a word
                self.cycles["never started"] += 1
            ws = await client.ws_connect("/ws")  # cut off: no close frame
            ws._response.connection.transport.abort()
            self.cycles["cut off"] += 1
            async with client.ws_connect("/ws") as ws:  # the speaker holds the one slot
                await ws.send_json({"type": "start", "portrait": portrait})
                reply = await ws.receive_json(timeout=30)
                self.cycles["refused busy"] += reply.get("code") == "busy"
            await asyncio.sleep(self.args.cycle_every)

    async def upload(self, client) -> None:
        seed = 0
        while self.running() and self.args.upload_every > 0:
            seed += 1
            for data, expected in ((another_file(self.photo, seed), 200), (bomb(), 400), (os.urandom(4096), 400)):
                response = await client.post("/api/portraits", data=data)
                key = "ok" if response.status == 200 else "refused" if response.status == expected else "failed"
                self.uploads[key] += 1
                if key == "failed":
                    print("upload failed:", response.status, await response.text(), flush=True)
            await asyncio.sleep(self.args.upload_every)

    async def sample(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while self.running():
            self.rss.append((loop.time() - start, rss_mb(self.pid)))
            print(f"{self.rss[-1][0]:6.0f} s  server RSS {self.rss[-1][1]:7.1f} MB  frames {self.frames}  "
                  f"dropped {self.dropped}  uploads {self.uploads}", flush=True)
            await asyncio.sleep(self.args.sample_every)
        self.rss.append((loop.time() - start, rss_mb(self.pid)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--model", default="live")
    parser.add_argument("--steps", type=int, default=5, help="DDIM steps per motion window (vasa serve --steps)")
    parser.add_argument("--speech-seconds", type=float, default=30.0, help="length of each stream")
    parser.add_argument("--upload-side", type=int, default=4000, help="side of the uploaded photos")
    parser.add_argument("--upload-every", type=float, default=10.0, help="seconds between uploads (0: none)")
    parser.add_argument("--cycle-every", type=float, default=5.0, help="seconds between open/close cycles (0: none)")
    parser.add_argument("--sample-every", type=float, default=15.0)
    args = parser.parse_args()

    from vasa.bench import _speech

    speech = (_speech(args.speech_seconds) * 32767).astype("<i2").tobytes()
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    server = subprocess.Popen([sys.executable, "-m", "vasa.cli", "serve", "--port", str(port), "--model", args.model,
                               "--size", str(args.size), "--steps", str(args.steps)], stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for _ in range(600):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if server.poll() is not None:
                raise SystemExit(f"the server exited: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.1)
        print(f"vasa serve --model {args.model} --size {args.size} --steps {args.steps} (pid {server.pid}), {args.minutes:g} min, "
              f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}", flush=True)
        soak = Soak(f"http://127.0.0.1:{port}", server.pid, speech, args)
        asyncio.run(soak.run())
        alive = server.poll() is None
    finally:
        server.terminate()
        server.wait(30)
    text = Path(log.name).read_text()
    lags = np.array(soak.lags)
    rss = np.array([r for _, r in soak.rss])
    print(f"\nserver alive at the end: {alive}")
    print(f"server RSS MB: start {rss[0]:.0f}, end {rss[-1]:.0f}, max {rss.max():.0f}")
    print(f"streams {soak.streams}, frames {soak.frames}, dropped {soak.dropped} (stale {soak.stale}), "
          f"first frame median {1000 * np.nanmedian(soak.first_frames):.0f} ms")
    if len(lags):
        print("frame lag behind the speaker's clock, ms: p50 {:.0f}, p95 {:.0f}, p99 {:.0f}, max {:.0f}".format(
            *(1000 * np.percentile(lags, [50, 95, 99, 100]))))
    print(f"open/close cycles: {soak.cycles}; uploads: {soak.uploads}")
    print(f"tracebacks in the server's log: {text.count('Traceback')} ({log.name})")


if __name__ == "__main__":
    main()
