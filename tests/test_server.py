"""`vasa serve` on loopback: a stream end to end, the session limit, malformed messages, abrupt
disconnects, a slow reader, uploads. The server must keep serving after every fault."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import threading

import cv2
import numpy as np
import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

from test_motion_dit import randomized  # noqa: E402
from vasa.motion import PRESETS, save_motion_model  # noqa: E402
from vasa.pipeline import TalkingHead  # noqa: E402
from vasa.server import ServerConfig, build_app  # noqa: E402
from vasa.server.app import FRAME_HEADER, SERVER  # noqa: E402

TINY_MEL = dataclasses.replace(PRESETS["tiny"], audio_dim=80)
RATE, FPS = 16000, 25


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_motion_model(path, randomized(TINY_MEL, seed=0), {"audio_encoder": "mel"})
    return TalkingHead.from_pretrained(path, size=96)


def pcm(seconds: float, seed: int = 0) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    voice = 0.3 * np.sin(2 * np.pi * 180 * t) * np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    noise = np.random.default_rng(seed).normal(0, 0.01, len(t))
    return ((voice + noise) * 32767).astype("<i2").tobytes()


@contextlib.asynccontextmanager
async def serving(head, **config):
    app = build_app(head, ServerConfig(**{"idle_timeout_s": 5.0, **config}))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as client:
        portraits = await (await client.get("/api/portraits")).json()
        try:
            yield client, portraits[0]["id"], app[SERVER]
        finally:
            await runner.cleanup()


async def stream(client, portrait: str, audio: bytes, chunk: int = 640) -> tuple[list, list]:
    """Start, send all audio, end; -> (frames as (index, time_s, pcm, jpeg), text messages)."""
    frames, messages = [], []
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "start", "portrait": portrait})
        messages.append(await ws.receive_json(timeout=30))
        for start in range(0, len(audio), chunk):
            await ws.send_bytes(audio[start:start + chunk])
        await ws.send_json({"type": "end"})
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                index, time_s, size = FRAME_HEADER.unpack_from(message.data)
                body = message.data[FRAME_HEADER.size:]
                frames.append((index, time_s, body[:size], body[size:]))
            else:
                messages.append(json.loads(message.data))
    return frames, messages


def server_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("vasa-") and t.is_alive()]


async def wait_idle(server, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if server.stats.active == 0 and not server_threads():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"sessions still active: {server.stats.active}, threads {server_threads()}")


def test_a_stream_returns_every_frame_with_its_audio(head):
    async def scenario():
        async with serving(head) as (client, portrait, server):
            audio = pcm(1.3)
            frames, messages = await stream(client, portrait, audio, chunk=1000)
            assert messages[0]["type"] == "ready" and messages[-1]["type"] == "done"
            assert [f[0] for f in frames] == list(range(round(1.3 * FPS)))
            assert np.allclose([f[1] for f in frames], np.arange(len(frames)) / FPS)
            assert b"".join(f[2] for f in frames) == audio[:2 * round(len(frames) * RATE / FPS)]  # in order, whole
            image = cv2.imdecode(np.frombuffer(frames[0][3], np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (96, 96, 3) and image.std() > 10  # a picture, not a blank
            await wait_idle(server)

    asyncio.run(scenario())


def test_sessions_beyond_the_limit_are_refused_clearly(head):
    async def scenario():
        async with serving(head, max_sessions=2) as (client, portrait, server):
            first = await client.ws_connect("/ws")
            second = await client.ws_connect("/ws")
            for ws in (first, second):
                await ws.send_json({"type": "controls", "emotion": {"happy": 1}})
                assert "before 'start'" in (await ws.receive_json(timeout=10))["message"]
                await ws.send_json({"type": "start", "portrait": portrait})
                assert (await ws.receive_json(timeout=30))["type"] == "ready"
                await ws.send_json({"type": "controls", "emotion": {"joy": 1}})
                assert "unknown emotion" in (await ws.receive_json(timeout=10))["message"]
                await ws.send_bytes(pcm(0.5))
            async with client.ws_connect("/ws") as third:
                refusal = await third.receive_json(timeout=10)
                assert refusal["type"] == "error" and refusal["code"] == "busy"
                assert (await third.receive()).type == aiohttp.WSMsgType.CLOSE
                assert third.close_code == 1013  # try again later
            await first.close()
            await second.close()
            await wait_idle(server)
            frames, _ = await stream(client, portrait, pcm(0.5))  # a slot is free again
            assert len(frames) == round(0.5 * FPS)
            assert server.stats.sessions_refused == 1

    asyncio.run(scenario())


def test_malformed_messages_get_errors_and_the_server_keeps_serving(head):
    async def scenario():
        async with serving(head, max_message_bytes=4096) as (client, portrait, server):
            async with client.ws_connect("/ws") as ws:
                for bad in ("not json", json.dumps([1, 2]), json.dumps({"type": "dance"}), json.dumps({"type": "end"})):
                    await ws.send_str(bad)
                    assert (await ws.receive_json(timeout=10))["type"] == "error"
                await ws.send_bytes(b"\x00\x01")  # audio before start
                assert "before 'start'" in (await ws.receive_json(timeout=10))["message"]
                await ws.send_json({"type": "start", "portrait": "nope"})
                assert "unknown portrait" in (await ws.receive_json(timeout=10))["message"]
                await ws.send_json({"type": "start", "portrait": portrait, "seed": "x"})
                assert (await ws.receive_json(timeout=10))["type"] == "error"
                await ws.send_json({"type": "start", "portrait": portrait, "blinks": 500})
                assert "blinks" in (await ws.receive_json(timeout=10))["message"]
                for emotion in ({"joy": 1}, {"sad": 5}, "happy"):  # unknown name, weight out of range, not an object
                    await ws.send_json({"type": "start", "portrait": portrait, "emotion": emotion})
                    assert "emotion" in (await ws.receive_json(timeout=10))["message"]
                await ws.send_json({"type": "controls", "emotion": {"happy": 1}})
                assert "before 'start'" in (await ws.receive_json(timeout=10))["message"]
                await ws.send_json({"type": "start", "portrait": portrait})
                assert (await ws.receive_json(timeout=30))["type"] == "ready"
                await ws.send_json({"type": "controls", "emotion": {"joy": 1}})
                assert "unknown emotion" in (await ws.receive_json(timeout=10))["message"]
                await ws.send_bytes(b"\x00\x01\x02")  # odd length: not 16-bit PCM
                assert "even number" in (await ws.receive_json(timeout=10))["message"]
                await ws.send_bytes(bytes(8192))  # over the message limit: aiohttp closes the stream
                closing = [m async for m in ws]
                assert ws.closed and ws.close_code == 1009, closing
            await wait_idle(server)
            assert server.stats.malformed == 8  # 5 texts, 2 binaries, the oversized one
            frames, _ = await stream(client, portrait, pcm(0.4))
            assert len(frames) == 10

    asyncio.run(scenario())


def test_abrupt_disconnects_free_their_sessions(head):
    async def scenario():
        async with serving(head, max_sessions=3) as (client, portrait, server):
            for k in range(3):
                ws = await client.ws_connect("/ws")
                await ws.send_json({"type": "start", "portrait": portrait})
                await ws.receive_json(timeout=30)
                await ws.send_bytes(pcm(1.0, seed=k))
                ws._response.connection.transport.abort()  # no close frame: the socket just dies
            await wait_idle(server)
            frames, messages = await stream(client, portrait, pcm(0.4))
            assert len(frames) == 10 and messages[-1]["type"] == "done"

    asyncio.run(scenario())


def test_a_slow_reader_loses_old_frames_and_memory_stays_bounded(head):
    async def scenario():
        async with serving(head, max_sessions=2, send_queue_frames=4, send_buffer_bytes=4096) as (client, portrait, server):
            ws = await client.ws_connect("/ws")
            transport = ws._response.connection.transport
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await ws.send_json({"type": "start", "portrait": portrait})
            assert (await ws.receive_json(timeout=30))["type"] == "ready"
            transport.pause_reading()  # the client stops reading: TCP windows fill
            audio = pcm(12.0)
            for start in range(0, len(audio), 32000):
                await ws.send_bytes(audio[start:start + 32000])
            await ws.send_json({"type": "end"})
            for _ in range(600):  # the pipeline runs on; the server drops what the client cannot take
                if server.stats.frames_dropped > 0 and server.stats.frames_sent + server.stats.frames_dropped >= 290:
                    break
                await asyncio.sleep(0.05)
            assert server.stats.frames_dropped > 0
            frames, _ = await stream(client, portrait, pcm(0.4))  # meanwhile others are served
            assert len(frames) == 10
            transport.abort()
            await wait_idle(server)

    asyncio.run(scenario())


def test_portrait_upload(head, astronaut):
    async def scenario():
        async with serving(head, upload_bytes=1 << 20) as (client, portrait, server):
            ok, png = cv2.imencode(".png", cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
            response = await client.post("/api/portraits", data=png.tobytes())
            assert response.status == 200
            uploaded = (await response.json())["id"]
            assert uploaded in [p["id"] for p in await (await client.get("/api/portraits")).json()]
            assert (await client.get(f"/api/portraits/{uploaded}.jpg")).status == 200
            frames, _ = await stream(client, uploaded, pcm(0.4))
            assert len(frames) == 10
            response = await client.post("/api/portraits", data=b"not an image at all")
            assert response.status == 400 and "image" in (await response.json())["message"]
            response = await client.post("/api/portraits", data=bytes(2 << 20))
            assert response.status == 413
            page = await client.get("/")
            assert page.status == 200 and "getUserMedia" not in await page.text()  # the script is separate
            assert (await client.get("/static/app.js")).status == 200

    asyncio.run(scenario())


def test_serve_command_line_mistakes_are_one_line(tmp_path, capsys):
    from test_cli import assert_one_error_line
    from vasa.cli import main

    assert main(["serve", "--portraits", str(tmp_path / "missing.jpg")]) == 2
    assert "portrait not found" in assert_one_error_line(capsys)
    assert main(["serve", "--step-frames", "3"]) == 2  # below the shipped model's 10-frame context
    assert "step_frames" in assert_one_error_line(capsys)
    with socket.socket() as taken:  # a port another program listens on
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "--port", str(taken.getsockname()[1])]) == 2
    assert "cannot listen" in assert_one_error_line(capsys)


def test_silent_and_overlong_sessions_are_closed(head):
    async def scenario():
        async with serving(head, idle_timeout_s=0.5, max_audio_s=0.4) as (client, portrait, server):
            async with client.ws_connect("/ws") as ws:
                await ws.send_json({"type": "controls", "emotion": {"happy": 1}})
                assert "before 'start'" in (await ws.receive_json(timeout=10))["message"]
                await ws.send_json({"type": "start", "portrait": portrait})
                assert (await ws.receive_json(timeout=30))["type"] == "ready"
                await ws.send_json({"type": "controls", "emotion": {"joy": 1}})
                assert "unknown emotion" in (await ws.receive_json(timeout=10))["message"]
                message = await ws.receive_json(timeout=10)  # nothing sent for 0.5 s
                while message["type"] == "stats":  # sent each second: one may come first on a slow machine
                    message = await ws.receive_json(timeout=10)
                assert message["type"] == "error" and "no message" in message["message"]
                assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            await wait_idle(server)  # the closed session is freed (one session at a time)
            frames, messages = await stream(client, portrait, pcm(1.0))  # longer than max_audio_s
            assert any("at most" in m.get("message", "") for m in messages)
            assert len(frames) == 10 and messages[-1]["type"] == "done"  # the allowed 0.4 s, then done
            await wait_idle(server)

    asyncio.run(scenario())
