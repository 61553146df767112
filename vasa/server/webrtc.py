"""`vasa serve` over WebRTC: the browser's audio goes up as a media track, the talking portrait and its
voice come back as a video and an audio track, so the browser does the A/V sync and jitter buffering.

    POST /api/webrtc/offer  {"type": "start", "portrait": ID, <the start message's controls>,
                             "sdp": {"type": "offer", "sdp": "..."}}   -> {"type": "answer", "sdp": "...",
                             "design_latency_ms": ..., "first_frame_wait_ms": ..., "fps": ..., "size": ...}
    data channel (optional)  {"type": "controls", "emotion": {...}}  -> {"type": "ok"} or an error

One offer = one `StreamingSession` (a streaming slot, as a WebSocket 'start' takes one; `busy` when
none is free). Non-trickle ICE: the offer carries its candidates, so does the answer. Incoming audio
(any rate, any channel count; aiortc decodes Opus) is resampled to 16 kHz mono and pushed; a pacer
releases each frame with its 40 ms of audio on a real-time schedule (a short jitter allowance after the
first), the video track sends the frame and the audio track the audio at the same moment, and both
tracks' timestamps run on that schedule; a frame later than its slot moves the schedule back (a pause
in both), and a frame the video encoder has no room for is skipped (counted; its audio still goes). The session ends when the peer connection closes or fails, when no
audio has come for `idle_timeout_s`, or after `max_audio_s` of audio. Needs aiortc
(`pip install "vasa[webrtc]"`); without it the route answers 501 with that message.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import json
import logging
import threading
import time

import numpy as np
from aiohttp import web

from vasa.errors import VasaError
from vasa.latents import SAMPLE_RATE
from vasa.provenance import stream_mark
from vasa.server.protocol import BadMessage, parse_start, parse_text
from vasa.streaming import StreamingSession

log = logging.getLogger(__name__)

MAX_SDP_BYTES = 1 << 16
JITTER_S = 0.1  # the pacer starts this long after the first frame: compute jitter is absorbed
VIDEO_CLOCK = 90000
AUDIO_CHUNK = SAMPLE_RATE // 50  # 20 ms, as WebRTC packs audio


def webrtc_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("aiortc") is not None


def _tracks():
    """The two outgoing track classes (aiortc imported on first use)."""
    import av
    from aiortc import MediaStreamTrack

    class VideoOut(MediaStreamTrack):
        kind = "video"

        def __init__(self):
            super().__init__()
            self.frames: asyncio.Queue = asyncio.Queue(maxsize=8)

        async def recv(self):
            image, pts = await self.frames.get()
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, fractions.Fraction(1, VIDEO_CLOCK)
            return frame

    class AudioOut(MediaStreamTrack):
        """20 ms packets on a real-time clock: the released audio, silence when there is none."""

        kind = "audio"

        def __init__(self):
            super().__init__()
            self.buffer = collections.deque()  # int16 samples released, not yet sent
            self._start: float | None = None
            self._sent = 0

        async def recv(self):
            if self._start is None:
                self._start = time.monotonic()
            wait = self._start + self._sent / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            chunk = np.zeros(AUDIO_CHUNK, np.int16)
            for k in range(min(AUDIO_CHUNK, len(self.buffer))):
                chunk[k] = self.buffer.popleft()
            frame = av.AudioFrame.from_ndarray(chunk[None], format="s16", layout="mono")
            frame.sample_rate, frame.pts = SAMPLE_RATE, self._sent
            frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
            self._sent += AUDIO_CHUNK
            return frame

    return VideoOut, AudioOut


class WebRTCStream:
    """One peer connection and its session; lives until `close`."""

    def __init__(self, server, session: StreamingSession, pc):
        self.server, self.session, self.pc = server, session, pc
        self.config = server.config
        self.loop = asyncio.get_running_loop()
        VideoOut, AudioOut = _tracks()
        self.video, self.audio = VideoOut(), AudioOut()
        self.made: asyncio.Queue = asyncio.Queue()  # StreamFrames from the pump thread
        self.pcm = collections.deque()  # (first sample index, int16 samples) received, not yet sent back
        self.samples_in = 0
        self.heard_s = self.loop.time()
        self.sent = self.dropped = self.rebuffers = 0
        self.closed = asyncio.Event()
        self._closing: asyncio.Future | None = None
        self.tasks: list[asyncio.Task] = []
        self.pump = threading.Thread(target=self._pump, name="vasa-rtc-pump", daemon=True)

    def start(self, track) -> None:
        """Read the browser's audio `track`; pump, pace and watch."""
        self.pump.start()
        self.tasks = [asyncio.ensure_future(self.consume(track)), asyncio.ensure_future(self._pace()),
                      asyncio.ensure_future(self._watch())]

    # --- audio in -----------------------------------------------------------------------------
    async def consume(self, track) -> None:
        """The browser's audio track -> 16 kHz mono int16 -> the session (on a worker thread)."""
        import av

        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        try:
            while not self.closed.is_set():
                frame = await track.recv()
                for part in resampler.resample(frame):
                    samples = part.to_ndarray().reshape(-1).astype(np.int16)
                    if not len(samples):
                        continue
                    self.heard_s = self.loop.time()
                    if (self.samples_in + len(samples)) / SAMPLE_RATE > self.config.max_audio_s:
                        log.info("webrtc stream reached %s s of audio; closing", self.config.max_audio_s)
                        return await self.close()
                    self.pcm.append((self.samples_in, samples))
                    self.samples_in += len(samples)
                    await self.loop.run_in_executor(None, self.session.push, samples.astype(np.float32) / 32768.0)
        except Exception as error:  # MediaStreamError when the peer goes; anything else is logged
            if not self.closed.is_set() and type(error).__name__ != "MediaStreamError":
                log.warning("webrtc audio in failed: %s", error)
            await self.close()

    def _audio_of(self, index: int) -> np.ndarray:
        """Frame `index`'s slot of the received audio (int16, SAMPLE_RATE / fps samples)."""
        a = round(index * SAMPLE_RATE / self.config.fps)
        b = round((index + 1) * SAMPLE_RATE / self.config.fps)
        out = np.zeros(b - a, np.int16)
        while self.pcm and self.pcm[0][0] + len(self.pcm[0][1]) <= a:
            self.pcm.popleft()
        for start, samples in self.pcm:
            if start >= b:
                break
            lo, hi = max(a, start), min(b, start + len(samples))
            out[lo - a:hi - a] = samples[lo - start:hi - start]
        return out

    def control(self, text) -> dict:
        """A message on the page's data channel: {"type": "controls", "emotion": ...} as on the WebSocket
        -> the reply ({"type": "ok"} or an error)."""
        try:
            message = parse_text(text) if isinstance(text, str) else None
            if message is None or message["type"] != "controls":
                raise BadMessage("the data channel takes 'controls' messages only", malformed=True)
            self.session.set_emotion(message.get("emotion"))
        except (BadMessage, VasaError) as error:
            return {"type": "error", "message": str(error)}
        return {"type": "ok"}

    # --- frames out ---------------------------------------------------------------------------
    def _pump(self) -> None:
        try:
            while not self.closed.is_set():
                frame = self.session.next_frame(timeout=0.05)
                if frame is not None:
                    self.loop.call_soon_threadsafe(self.made.put_nowait, frame)
                elif self.session.finished:
                    return
        except Exception as error:
            log.warning("webrtc session failed: %s", error)
            self.server.stats.errors = (self.server.stats.errors + [str(error)])[-10:]
            asyncio.run_coroutine_threadsafe(self.close(), self.loop)

    async def _pace(self) -> None:
        """Each frame and its audio leave at their slot on a real-time schedule. A frame that comes later
        than its slot moves the schedule back by its delay (a short pause in picture and voice alike,
        as the WebSocket page's rebuffering), so the two stay together on a busy machine."""
        start = None
        while not self.closed.is_set():
            frame = await self.made.get()
            if start is None:
                start = self.loop.time() + JITTER_S - frame.time_s
            due = start + frame.time_s
            late = self.loop.time() - due
            if late > 0:
                start += late
                self.rebuffers += 1
                self.server.stats.rtc_schedule_moves += 1
            else:
                await asyncio.sleep(-late)
            self.audio.buffer.extend(self._audio_of(frame.index).tolist())
            if self.video.frames.full():  # the encoder or the network is behind: the picture skips a frame
                self.dropped += 1
                self.server.stats.frames_dropped += 1
                continue
            self.video.frames.put_nowait((frame.image, round((start + frame.time_s) * VIDEO_CLOCK)))
            self.sent += 1
            self.server.stats.frames_sent += 1

    async def _watch(self) -> None:
        """Idle timeout: no audio for idle_timeout_s ends the stream."""
        while not self.closed.is_set():
            await asyncio.sleep(min(1.0, self.config.idle_timeout_s / 4))
            if self.loop.time() - self.heard_s > self.config.idle_timeout_s:
                self.server.stats.idle_closed += 1
                return await self.close()

    async def close(self) -> None:
        """Stop everything and give the slot back; every caller waits for the one closing to finish."""
        if self._closing is None:
            self.closed.set()
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        await self.loop.run_in_executor(None, self.session.close)
        await self.pc.close()
        self.server.stats.active -= 1
        self.server.rtc_streams.discard(self)


def webrtc_route(server):
    """The POST /api/webrtc/offer handler of `server` (a `vasa.server.app.VasaServer`)."""

    async def route(request: web.Request) -> web.Response:
        return await offer(server, request)

    return route


def _error_response(status: int, message: str) -> web.Response:
    return web.json_response({"type": "error", "message": message}, status=status)


async def offer(server, request: web.Request) -> web.Response:
    if not webrtc_available():
        return _error_response(501, 'WebRTC needs aiortc on the server: pip install "vasa[webrtc]"')
    if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
        return _error_response(413, f"offer larger than {MAX_SDP_BYTES >> 10} kB")
    body = bytearray()
    async for chunk in request.content.iter_chunked(1 << 14):  # the whole body, never more than the limit
        body += chunk
        if len(body) > MAX_SDP_BYTES:
            return _error_response(413, f"offer larger than {MAX_SDP_BYTES >> 10} kB")
    try:
        message = json.loads(bytes(body))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _error_response(400, "the offer must be a JSON object")
    if not isinstance(message, dict):
        return _error_response(400, "the offer must be a JSON object")
    sdp = message.pop("sdp", None)
    if not (isinstance(sdp, dict) and sdp.get("type") == "offer" and isinstance(sdp.get("sdp"), str)):
        return _error_response(400, "'sdp' must be {\"type\": \"offer\", \"sdp\": \"...\"} from createOffer()")
    message.setdefault("type", "start")
    try:
        controls, portrait = parse_start(message, server.config.steps)
    except BadMessage as error:
        return _error_response(400, str(error))
    if server.stats.active >= server.config.max_sessions:
        server.stats.sessions_refused += 1
        return _error_response(503, f"the server is busy ({server.config.max_sessions} sessions); try again later")
    server.stats.active += 1  # held from here, also while the portrait is encoded
    try:
        source = await asyncio.get_running_loop().run_in_executor(None, server.source, portrait)
        answer, stream = await _connect(server, sdp, source, controls)
    except VasaError as error:
        server.stats.active -= 1
        return _error_response(400, str(error))
    except Exception as error:  # a malformed SDP the WebRTC stack cannot read
        server.stats.active -= 1
        return _error_response(400, f"cannot use this offer: {error}")
    server.stats.sessions_started += 1
    return web.json_response({"type": "answer", "sdp": answer, "fps": server.config.fps,
                              "size": server.head.face.size,
                              "design_latency_ms": round(1000 * stream.session.algorithmic_latency_s),
                              "first_frame_wait_ms": round(1000 * stream.session.first_frame_wait_s)})


async def _connect(server, sdp: dict, source, controls):
    from aiortc import RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection()
    incoming = []  # the offer's tracks, announced while its description is set

    @pc.on("track")
    def on_track(track):
        if track.kind == "audio":
            incoming.append(track)

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp["sdp"], type="offer"))
        kinds = {t.kind for t in pc.getTransceivers()}
        if not incoming or "video" not in kinds:
            raise VasaError("the offer needs an audio track (the speech) and a video transceiver (the portrait)")
        session = StreamingSession(server.head, source, controls, fps=server.config.fps,
                                   step_frames=server.config.step_frames, mark=stream_mark(server.config.watermark))
        stream = WebRTCStream(server, session, pc)
        pc.addTrack(stream.audio)
        pc.addTrack(stream.video)

        @pc.on("datachannel")
        def on_channel(channel):
            @channel.on("message")
            def on_message(text):
                channel.send(json.dumps(stream.control(text)))

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState in ("failed", "closed"):
                await stream.close()

        await pc.setLocalDescription(await pc.createAnswer())
    except BaseException:
        await pc.close()
        raise
    server.rtc_streams.add(stream)
    stream.start(incoming[0])
    return pc.localDescription.sdp, stream
