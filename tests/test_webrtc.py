"""`vasa serve` over WebRTC with an aiortc client on loopback: speech up as a media track, the portrait and
its voice back as tracks; bad offers, a busy server and the idle timeout."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import numpy as np
import pytest

from conftest import voiced_bursts
from test_motion_dit import randomized
from vasa.motion import PRESETS, save_motion_model
from vasa.pipeline import TalkingHead
from vasa.server.app import ServerConfig
from vasa.server.headless import serve_in_thread, webrtc_call

aiortc = pytest.importorskip("aiortc", reason="WebRTC needs aiortc (pip install 'vasa[webrtc]')")
aiohttp = pytest.importorskip("aiohttp")

TINY_MEL = dataclasses.replace(PRESETS["tiny"], audio_dim=80)
RATE, FPS, SIZE = 16000, 25, 64


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_motion_model(path, randomized(TINY_MEL, seed=0), {"audio_encoder": "mel"})
    return TalkingHead.from_pretrained(path, size=SIZE)


async def call(url: str, portrait: str, seconds: float, extra: dict | None = None,
               stop_after: float | None = None, controls=()) -> dict:
    got = await webrtc_call(url, portrait, voiced_bursts(seconds, voiced_until=seconds), seconds, extra, stop_after,
                            controls)
    got["first_video_s"] = got["video"][0][0] if got["video"] else None
    got["started"] = got["posted_s"]
    got["video"] = [image for _, _, image in got["video"]]
    return got


async def portraits(url: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "api/portraits") as response:
            return (await response.json())[0]["id"]


@pytest.mark.slow
def test_webrtc_tracks_bring_the_talking_portrait_and_its_voice(head):
    with serve_in_thread(head, ServerConfig(max_sessions=1)) as url:
        portrait = asyncio.run(portraits(url))
        controls = [json.dumps({"type": "controls", "emotion": {"happy": 1}}), json.dumps({"type": "controls",
                    "emotion": {"glee": 1}}), json.dumps({"type": "end"}), "not json"]
        got = asyncio.run(call(url, portrait, 4.0, {"blinks": 20}, controls=controls))
        status = asyncio.run(_status(url))
    assert got["status"] == 200, got["answer"]
    assert got["answer"]["size"] == SIZE and got["answer"]["design_latency_ms"] > 0
    replies = [json.loads(text) for text in got["replies"]]  # the data channel: one answer per message
    assert [r["type"] for r in replies] == ["ok", "error", "error", "error"], replies
    assert "glee" in replies[1]["message"] and "controls" in replies[2]["message"]
    video = got["video"]
    assert len(video) >= 1.5 * FPS  # frames keep coming (about 25 a second here; fewer on a busy machine)
    assert video[-1].shape[:2] == (SIZE, SIZE) and np.std(video[-1]) > 10
    assert got["first_video_s"] - got["started"] < 3.0
    audio = np.concatenate(got["audio"])
    assert len(audio) > 2 * 48000 * 0.5  # the voice comes back (Opus, decoded at 48 kHz)
    assert np.abs(audio).max() > 1000  # and it is not silence
    assert status["frames_sent"] >= len(video) and status["active"] == 0  # the slot was given back


async def _status(url: str) -> dict:
    await asyncio.sleep(1.0)  # the server notices the closed connection
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "api/status") as response:
            return await response.json()


async def _post(url: str, body) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "api/webrtc/offer", data=body if isinstance(body, bytes) else json.dumps(body)) as r:
            return r.status, await r.json()


def test_bad_offers_get_one_clear_error_each(head):
    with serve_in_thread(head) as url:
        portrait = asyncio.run(portraits(url))
        cases = [(b"not json", "JSON"), ([1, 2], "JSON object"), ({"portrait": portrait}, "'sdp'"),
                 ({"portrait": portrait, "sdp": {"type": "answer", "sdp": "v=0"}}, "'sdp'"),
                 ({"portrait": "nobody", "sdp": {"type": "offer", "sdp": "v=0"}}, "unknown portrait"),
                 ({"portrait": portrait, "head_scale": "big", "sdp": {"type": "offer", "sdp": "v=0"}}, "head_scale"),
                 ({"portrait": portrait, "sdp": {"type": "offer", "sdp": "v=0\r\nnonsense"}}, "offer"),
                 ({"portrait": portrait, "sdp": {"type": "offer", "sdp": "v=0" + "x" * 70000}}, "larger")]
        for body, message in cases:
            status, reply = asyncio.run(_post(url, body))
            assert status in (400, 413) and message in reply["message"], (body, status, reply)
        assert asyncio.run(_status(url))["active"] == 0


@pytest.mark.slow
def test_a_busy_server_refuses_a_second_stream_and_an_idle_one_is_closed(head):
    with serve_in_thread(head, ServerConfig(max_sessions=1, idle_timeout_s=1.0)) as url:
        portrait = asyncio.run(portraits(url))

        async def run():
            first = asyncio.ensure_future(call(url, portrait, 4.0, stop_after=0.5))
            await asyncio.sleep(1.0)
            second = await call(url, portrait, 0.5)  # while the first streams
            await asyncio.sleep(2.0)  # the first's audio stopped at 0.5 s: idle for more than 1 s now
            during = await _status(url)
            return await first, second, during

        first, second, during = asyncio.run(run())
    assert first["status"] == 200 and second["status"] == 503 and "busy" in second["answer"]["message"]
    assert during["idle_closed"] == 1 and during["active"] == 0 and during["sessions_refused"] == 1
