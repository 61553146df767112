"""Load and fault run of `vasa serve` on loopback with the shipped model: prints what each phase did
and the process's memory after it (server and clients share the process; the clients hold little).

    python scripts/load_serve.py [--size 256] [--sessions 2] [--seconds 10]

Phases: the session limit filled with streams paced like real speech, plus one more that must be
refused; abrupt disconnects mid-stream; a client that stops reading while its stream runs; malformed
messages; a client that speaks in real time but reads only 5 frames a second (its frames' lag behind
its own audio, beside the budget design latency + 2 x max_frame_wait_s + 1 s of its receive buffer
and compute); many short sessions one after another; then one normal stream to show it still serves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def main(args) -> None:
    import aiohttp
    import torch
    from aiohttp import web

    from vasa.pipeline import TalkingHead
    from vasa.server import ServerConfig, build_app
    from vasa.server.app import SERVER
    from vasa.server.clients import slow_reader
    from vasa.server.session import FRAME_HEADER

    torch.set_num_threads(2)
    head = TalkingHead.from_pretrained(args.model, size=args.size)
    config = ServerConfig(max_sessions=args.sessions, idle_timeout_s=10, steps=args.steps,
                          **({} if args.max_frame_wait is None else {"max_frame_wait_s": args.max_frame_wait}))
    app = build_app(head, config)
    server = app[SERVER]
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    rng = np.random.default_rng(0)
    from vasa.bench import _speech

    speech = (_speech(args.seconds) * 32767).astype("<i2").tobytes()
    print(f"size {args.size}, max sessions {args.sessions}, cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")

    async def settle() -> None:  # closed clients: wait until the server has cleaned up after them
        for _ in range(200):
            if server.stats.active == 0 and not any(t.name.startswith("vasa-") for t in threading.enumerate()):
                return
            await asyncio.sleep(0.05)

    def report(phase: str) -> None:
        names = [t.name for t in threading.enumerate() if t.name.startswith("vasa-")]
        threads = len(names)
        print(f"{phase:<46} rss {rss_mb():6.0f} MB  active {server.stats.active}  stage threads {threads:3d}  "
              f"sent {server.stats.frames_sent}  dropped {server.stats.frames_dropped}  "
              f"refused {server.stats.sessions_refused}  malformed {server.stats.malformed}", flush=True)
        if os.environ.get("VASA_DEBUG_THREADS"):
            print("   ", sorted(names))

    async def paced(client, portrait, audio, read=True) -> dict:
        frames, first, start, lags = 0, None, None, []
        async with client.ws_connect("/ws") as ws:
            await ws.send_json({"type": "start", "portrait": portrait})
            await ws.receive_json()

            async def send():
                nonlocal start
                start = time.perf_counter()
                for k, offset in enumerate(range(0, len(audio), 640)):
                    await ws.send_bytes(audio[offset:offset + 640])
                    await asyncio.sleep(max(0.0, start + (k + 1) * 0.02 - time.perf_counter()))
                await ws.send_json({"type": "end"})

            sender = asyncio.create_task(send())
            async for message in ws:
                if message.type == aiohttp.WSMsgType.BINARY:
                    _, time_s, _ = FRAME_HEADER.unpack_from(message.data)
                    now = time.perf_counter() - start
                    first = now if first is None else first
                    lags.append(now - time_s)
                    frames += 1
            await sender
        return {"frames": frames, "first_ms": round(1000 * first), "max_lag_ms": round(1000 * max(lags))}

    async with aiohttp.ClientSession(url) as client:
        portrait = (await (await client.get("/api/portraits")).json())[0]["id"]
        report("started")
        streams = [paced(client, portrait, speech) for _ in range(args.sessions)]
        async def refused():
            await asyncio.sleep(1.0)
            async with client.ws_connect("/ws") as ws:  # the slot is taken by 'start', not by connecting
                await ws.send_json({"type": "start", "portrait": portrait})
                return (await ws.receive_json())["code"]
        results = await asyncio.gather(*streams, refused())
        print("  full load:", results)
        await settle()
        report(f"{args.sessions} paced streams + 1 refused")
        for k in range(5):
            ws = await client.ws_connect("/ws")
            await ws.send_json({"type": "start", "portrait": portrait})
            await ws.receive_json()
            for offset in range(0, 64000, 32000):
                await ws.send_bytes(speech[offset:offset + 32000])
            await asyncio.sleep(0.5)
            ws._response.connection.transport.abort()
            await settle()  # freed before the next: a session still stopping holds its slot (next is 'busy')
        report("5 abrupt disconnects mid-stream")
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "start", "portrait": portrait})
        await ws.receive_json()
        ws._response.connection.transport.pause_reading()
        for offset in range(0, len(speech), 32000):
            await ws.send_bytes(speech[offset:offset + 32000])
        await ws.send_json({"type": "end"})
        await asyncio.sleep(args.seconds)
        report("slow reader (stopped reading), after its stream")
        ws._response.connection.transport.abort()
        async with client.ws_connect("/ws") as bad:
            for _ in range(200):
                await bad.send_str(rng.bytes(16).hex())
                await bad.send_bytes(b"\x01")
            await bad.send_json({"type": "start", "portrait": portrait})
            await bad.receive_json()
        await settle()
        report("400 malformed messages")
        slow = await asyncio.get_running_loop().run_in_executor(None, slow_reader, port, portrait, speech)
        if slow["ready"].get("type") != "ready" or not slow["lags"]:
            print("  reader of 5 frames a second: no frames;", slow["ready"], flush=True)
        else:
            lags, design_ms = np.array(slow["lags"]), slow["ready"]["design_latency_ms"]
            budget_s = design_ms / 1000 + 2 * config.max_frame_wait_s + 1.0
            print(f"  reader of 5 frames a second: {len(lags)} frames, lag behind its audio p50 {np.median(lags):.2f} s, "
                  f"max {lags.max():.2f} s (budget {budget_s:.2f} s: design {design_ms} ms + 2 x max_frame_wait_s "
                  f"{config.max_frame_wait_s:g} s + 1 s)", flush=True)
        await settle()
        report("reader of 5 frames a second, real-time speech")
        for _ in range(20):
            async with client.ws_connect("/ws") as short:
                await short.send_json({"type": "start", "portrait": portrait})
                await short.receive_json()
                await short.send_bytes(speech[:16000])
                await short.send_json({"type": "end"})
                async for _ in short:
                    pass
        await settle()
        report("20 short sessions in a row")
        result = await paced(client, portrait, speech[:32000 * 4])
        print("  final stream:", json.dumps(result))
        await settle()
        report("after a final normal stream")
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="live", help="motion model (default live, as `vasa serve`)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps per motion window (as `vasa serve --steps`)")
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-frame-wait", type=float, help="ServerConfig.max_frame_wait_s (default: the server's)")
    asyncio.run(main(parser.parse_args()))
