"""The `vasa serve` page in headless Chromium: a speech file is the microphone (Chromium's fake capture
device), the page streams it, frames come back with their audio and are shown on the audio clock, and
the picture on the page is a face. Skips when playwright or a system Chromium is missing (CI installs
both). How closely picture and voice line up (the A/V offset percentiles) is a figure, not a pass mark:
scripts/bench_browser.py drives the same page and prints it (docs/benchmarks.md)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("playwright.sync_api")

from vasa.pipeline import TalkingHead  # noqa: E402
from vasa.server.headless import chromium_path, open_page, serve_in_thread, stream_until_shown  # noqa: E402
from vasa.server.session import FRAME_HEADER  # noqa: E402

FPS, RATE = 25, 16000
SHOWN_FRAMES = 85  # frames watched in all

pytestmark = [pytest.mark.skipif(chromium_path() is None, reason="no system Chromium (apt-get install chromium)"),
              pytest.mark.slow]


@pytest.fixture(scope="module", params=["default", "live"])
def server_url(request):
    """The server with each shipped motion model (a random tiny one makes no face): the default one
    sends 2 s of frames at once, the live one a 4-frame window every 160 ms."""
    with serve_in_thread(TalkingHead.from_pretrained(request.param, size=256)) as url:
        yield url


def test_page_streams_speech_and_shows_a_talking_face_in_sync(server_url, tmp_path, detector):
    with open_page(server_url, record_received=True) as run:
        page = run.page
        page.select_option("#blinks", "20")
        page.select_option("#emotion", "happy")
        stats = stream_until_shown(run, SHOWN_FRAMES)
        page.select_option("#emotion", "sad")  # while streaming: sent at once
        page.wait_for_timeout(200)
        shot = tmp_path / "page.png"
        page.locator("#video").screenshot(path=str(shot))
        page.click("#stop")
    assert not run.errors and stats["error"] is None, (run.errors, stats)
    start = json.loads(next(m for m in run.sent if isinstance(m, str) and '"start"' in m))
    assert start["blinks"] == 20 and start["head_scale"] == 1 and start["still"] is False  # the page's controls
    assert start["emotion"] == {"happy": 1}
    changes = [json.loads(m) for m in run.sent if isinstance(m, str) and '"controls"' in m]
    assert changes == [{"type": "controls", "emotion": {"sad": 1}}]
    assert stats["frames"] >= SHOWN_FRAMES and stats["firstFrameMs"] is not None
    # frames arrive in order, each stamped on the audio clock (index / fps) and carrying its own 40 ms of
    # audio (16-bit PCM) for the page to play with it
    headers = [FRAME_HEADER.unpack_from(m) for m in run.received if isinstance(m, bytes)]
    assert len(headers) >= SHOWN_FRAMES
    indices = [index for index, _, _ in headers]
    assert indices == sorted(set(indices)), indices[:20]
    assert all(time_s == pytest.approx(index / FPS, abs=1e-9) for index, time_s, _ in headers)
    assert all(pcm_bytes == 2 * RATE // FPS for _, _, pcm_bytes in headers), [h[2] for h in headers[:20]]
    # a frame is shown while the audio inside it plays, never before: audio clock - frame time >= 0 for
    # every frame (the page picks frames on the audio clock), and no slice of audio was scheduled late
    # (when the server falls behind, the page pauses both to stay in sync: "rebuffers")
    assert min(stats["driftsMs"]) >= 0, stats
    assert stats["lateAudio"] == 0, stats
    image = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB)
    assert image.std() > 20
    assert detector.landmarks(np.ascontiguousarray(image)) is not None, "no face in the page's video"


def test_page_over_webrtc_receives_the_tracks_and_reports_its_first_frame(server_url, tmp_path, detector):
    """The page with "WebRTC" ticked: the microphone goes up as a media track, video and audio tracks come
    back, the browser decodes and presents the frames, and the page reports the first frame's latency;
    an emotion change goes over the data channel."""
    if not __import__("importlib").util.find_spec("aiortc"):
        pytest.skip("WebRTC needs aiortc (pip install 'vasa[webrtc]')")
    with open_page(server_url) as run:
        page = run.page
        page.check("#webrtc")
        stats = stream_until_shown(run, 50)
        page.wait_for_function("window.vasa.stats.audioPackets > 25 && window.vasa.stats.frames >= 50", timeout=20_000)
        page.select_option("#emotion", "happy")  # over the data channel, while streaming
        page.wait_for_timeout(300)
        shot = tmp_path / "rtc.png"
        page.locator("#rtcvideo").screenshot(path=str(shot))
        stats = page.evaluate("window.vasa.stats")
        text = page.inner_text("#stats")
        page.click("#stop")
    assert not run.errors and stats["error"] is None, (run.errors, stats)
    assert stats["transport"] == "webrtc" and not run.sent  # no WebSocket was used
    assert stats["firstFrameMs"] is not None and 0 < stats["firstFrameMs"] < 10_000
    assert f"first frame      {stats['firstFrameMs']} ms" in text  # the page shows what it measured
    image = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB)
    assert image.std() > 20
    assert detector.landmarks(np.ascontiguousarray(image)) is not None, "no face in the WebRTC video"
