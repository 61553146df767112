"""examples/echo_agent.py end to end in headless Chromium: a recorded utterance is the microphone, the agent
hears it stop (Silero VAD), says it back with the avatar, and the page receives the video and the voice."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pipecat", reason="the pipecat extra (pip install 'vasa[pipecat]') is not installed")
pytest.importorskip("aiortc")
pytest.importorskip("playwright.sync_api")

from vasa.server.headless import chromium_path  # noqa: E402

EXAMPLE = Path(__file__).parents[1] / "examples" / "echo_agent.py"
pytestmark = [pytest.mark.skipif(chromium_path() is None, reason="no system Chromium (apt-get install chromium)"),
              pytest.mark.slow]


def load_example():
    spec = importlib.util.spec_from_file_location("echo_agent", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_echo_agent_says_back_what_it_heard(tmp_path):
    from aiohttp import web
    from playwright.sync_api import sync_playwright

    from vasa.audio import load_audio
    from vasa.demo import DEMO_SPEECH, demo_portrait
    from vasa.media import write_wav

    # the fake microphone loops this file: 2.5 s of speech, then 6 s of silence for the VAD to hear the end
    speech = load_audio(DEMO_SPEECH)[:40000]
    mic = tmp_path / "mic.wav"
    write_wav(mic, np.concatenate([speech, np.zeros(100000, np.float32)]))

    example = load_example()
    agent = example.EchoAgent(demo_portrait(), 64)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(example.build_app(agent))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=[
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={mic}", "--autoplay-policy=no-user-gesture-required",
                "--disable-features=WebRtcHideLocalIpsWithMdns"])
            try:
                page = browser.new_page()
                errors = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.goto(url)
                page.click("#start")
                deadline = time.monotonic() + 60
                status = {}
                while time.monotonic() < deadline:
                    time.sleep(1.0)
                    status = json.loads(urllib.request.urlopen(url + "status").read())
                    calls = list(status.values())
                    if calls and calls[0]["utterances"] >= 1 and (calls[0]["avatar"] or {}).get("speech_s", 0) > 1.5:
                        break
                page.wait_for_timeout(1000)
                stats = page.evaluate("window.agent.stats")
                page.click("#stop")
            finally:
                browser.close()
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
    assert not errors and stats["error"] is None, (errors, stats)
    call = next(iter(status.values()))
    assert call["utterances"] >= 1, status
    assert call["avatar"]["speech_s"] > 1.5, status  # it said the 2.5 s utterance back (most of it so far)
    assert stats["firstFrameMs"] is not None and stats["frames"] > 50 and stats["audioPackets"] > 100, stats
