"""The /ws stream of `vasa serve`: one WebSocket = one `StreamingSession`. Messages: docs/serve.md.

Three workers per connection, none of which can make memory grow:
- the reader (this coroutine) takes client messages; audio goes to the session through one thread
  that blocks while the pipeline is behind, so a client sending too fast is slowed by TCP;
- a pump thread reads frames from the session as soon as they are made and hands them to
- the sender coroutine through a latest-wins queue of `send_queue_frames`: a slow client loses the
  oldest frames (counted in `dropped`), the pipeline never waits for it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from vasa.errors import VasaError
from vasa.pipeline import Controls
from vasa.server.app import FRAME_HEADER, SAMPLE_RATE, SERVER, STATS_EVERY_S, VasaServer
from vasa.streaming import StreamFrame, StreamingSession

log = logging.getLogger(__name__)


def _emotion(value) -> dict[str, float]:
    """The start message's {"name": weight} (Controls checks names and weights)."""
    if not isinstance(value, dict):
        raise ValueError(f"emotion must be an object of name: weight, got {value!r}")
    return {str(name): float(weight) for name, weight in value.items()}


CONTROL_FIELDS = {"seed": int, "head_scale": float, "expression_scale": float, "still": bool, "blinks": float,
                  "emotion": _emotion}


class _Connection:
    """State of one WebSocket stream."""

    def __init__(self, server: VasaServer, ws: web.WebSocketResponse):
        self.server, self.ws, self.config = server, ws, server.config
        self.loop = asyncio.get_running_loop()
        self.session: StreamingSession | None = None
        self.pusher = ThreadPoolExecutor(1, thread_name_prefix="vasa-push")
        self.outbox: collections.deque[bytes | str] = collections.deque()  # frames (bytes), messages (str)
        self.wake = asyncio.Event()
        self.pcm = bytearray()  # audio received and not yet sent back with its frame
        self.pcm_start = 0  # sample index of pcm[0]
        self.samples_in = 0
        self.frames_sent = self.dropped = 0
        self.ended = self.finished = False
        self.started_s = self.first_frame_s = None
        self.pump: threading.Thread | None = None

    # --- client -> server -----------------------------------------------------------------------
    async def handle_text(self, text: str) -> None:
        try:
            message = json.loads(text)
            kind = message["type"] if isinstance(message, dict) else None
        except (ValueError, KeyError):
            return await self.error("malformed message: send JSON objects with a 'type'", malformed=True)
        if kind == "start":
            await self.start(message)
        elif kind == "controls":
            if self.session is None:
                return await self.error("'controls' before 'start'", malformed=True)
            try:
                emotion = message.get("emotion")
                self.session.set_emotion(None if emotion is None else _emotion(emotion))
            except (VasaError, TypeError, ValueError) as error:
                return await self.error(str(error))
        elif kind == "end":
            if self.session is None:
                return await self.error("'end' before 'start'", malformed=True)
            if not self.ended:
                self.ended = True
                await self.loop.run_in_executor(self.pusher, self.session.end)
        else:
            await self.error(f"unknown message type {kind!r}: use start, end, or binary audio", malformed=True)

    async def start(self, message: dict) -> None:
        if self.session is not None:
            return await self.error("this connection already streams; open a new one", malformed=True)
        try:
            controls = Controls(steps=self.config.steps,
                                **{k: t(message[k]) for k, t in CONTROL_FIELDS.items() if k in message})
            source = await self.loop.run_in_executor(None, self.server.source, str(message.get("portrait", "")))
        except (VasaError, TypeError, ValueError) as error:
            return await self.error(str(error))
        self.session = StreamingSession(self.server.head, source, controls, fps=self.config.fps,
                                        step_frames=self.config.step_frames, encode=self.server.encode_jpeg)
        self.pump = threading.Thread(target=self.pump_frames, name="vasa-pump", daemon=True)
        self.pump.start()
        await self.ws.send_json({"type": "ready", "fps": self.config.fps, "sample_rate": SAMPLE_RATE,
                                 "size": self.server.head.face.size,
                                 "design_latency_ms": round(1000 * self.session.algorithmic_latency_s),
                                 "first_frame_wait_ms": round(1000 * self.session.first_frame_wait_s)})

    async def handle_audio(self, data: bytes) -> None:
        if self.session is None:
            return await self.error("audio before 'start'", malformed=True)
        if self.ended:
            return await self.error("audio after 'end'", malformed=True)
        if len(data) % 2:
            return await self.error("audio must be 16-bit PCM: an even number of bytes", malformed=True)
        if (self.samples_in + len(data) // 2) / SAMPLE_RATE > self.config.max_audio_s:
            await self.error(f"a session streams at most {self.config.max_audio_s:g} s of audio; ending it")
            self.ended = True
            return await self.loop.run_in_executor(self.pusher, self.session.end)
        if self.started_s is None:
            self.started_s = time.perf_counter()
        self.pcm += data
        self.samples_in += len(data) // 2
        samples = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
        try:
            await self.loop.run_in_executor(self.pusher, self.session.push, samples)  # blocks while behind
        except VasaError as error:  # the session stopped (a pipeline failure is reported by the pump)
            await self.error(str(error))

    # --- server -> client -----------------------------------------------------------------------
    def pump_frames(self) -> None:
        """Thread: session frames -> the sender, as soon as they are made."""
        session = self.session
        try:
            while not session.finished:
                frame = session.next_frame(timeout=0.1)
                if frame is not None:
                    self.hand_over(frame)
                elif self.ws.closed:
                    return
        except Exception as error:  # a pipeline failure: tell the client, keep the server up
            log.exception("session failed")
            self.server.stats.errors = (self.server.stats.errors + [repr(error)])[-5:]
            self.hand_over(error)
            return
        self.hand_over(None)

    def hand_over(self, item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.offer, item)
        except RuntimeError:  # the event loop is gone (server shutting down)
            pass

    def offer(self, item: StreamFrame | Exception | None) -> None:
        """Event loop: queue a frame message (latest wins), or the end / a failure."""
        if isinstance(item, StreamFrame):
            if self.first_frame_s is None:
                self.first_frame_s = time.perf_counter()
            self.outbox.append(self.frame_message(item))
            while len(self.outbox) > self.config.send_queue_frames and isinstance(self.outbox[0], bytes):
                self.outbox.popleft()
                self.dropped += 1
                self.server.stats.frames_dropped += 1
        elif item is None:
            self.finished = True
        else:
            self.outbox.append(json.dumps({"type": "error", "message": f"the pipeline failed: {item}"}))
            self.finished = True
        self.wake.set()

    def frame_message(self, frame: StreamFrame) -> bytes:
        """Header (index, time_s, PCM bytes) + the frame's 16-bit audio + JPEG."""
        start = round(frame.index * SAMPLE_RATE / self.config.fps)
        stop = round((frame.index + 1) * SAMPLE_RATE / self.config.fps)
        pcm = bytes(self.pcm[2 * (start - self.pcm_start):2 * (stop - self.pcm_start)])
        drop = max(0, stop - self.pcm_start)
        del self.pcm[:2 * drop]
        self.pcm_start += drop
        return FRAME_HEADER.pack(frame.index, frame.time_s, len(pcm)) + pcm + frame.data

    async def send_loop(self) -> None:
        """Sends queued frames and messages; closing the socket when done or failed ends the reader too."""
        try:
            await self._send_loop()
        except (ConnectionError, RuntimeError, asyncio.CancelledError):  # the client went away
            raise
        except Exception:
            log.exception("sending to a client failed")
        finally:
            if not self.ws.closed:
                await self.ws.close()

    async def _send_loop(self) -> None:
        last_stats = time.perf_counter()
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), STATS_EVERY_S)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            while self.outbox and not self.ws.closed:
                message = self.outbox.popleft()
                if isinstance(message, str):
                    await self.ws.send_str(message)
                else:
                    await self.ws.send_bytes(message)  # waits while the client's TCP window is full
                    self.frames_sent += 1
                    self.server.stats.frames_sent += 1
            if self.ws.closed:
                return
            now = time.perf_counter()
            if self.finished and not self.outbox:
                await self.ws.send_json({"type": "done", **self.summary()})
                await self.ws.close()
                return
            if now - last_stats >= STATS_EVERY_S and self.session is not None:
                last_stats = now
                await self.ws.send_json({"type": "stats", **self.summary()})

    def summary(self) -> dict:
        first = (None if self.first_frame_s is None or self.started_s is None
                 else round(1000 * (self.first_frame_s - self.started_s)))
        elapsed = time.perf_counter() - self.first_frame_s if self.first_frame_s else 0.0
        return {"frames": self.frames_sent, "dropped": self.dropped, "first_frame_ms": first,
                "audio_s": round(self.samples_in / SAMPLE_RATE, 3),
                "fps": round(self.frames_sent / elapsed, 1) if elapsed > 1 else None}

    async def error(self, message: str, malformed: bool = False) -> None:
        if malformed:
            self.server.stats.malformed += 1
        if not self.ws.closed:
            await self.ws.send_json({"type": "error", "message": message})

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.pusher.shutdown(wait=False, cancel_futures=True)


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    server: VasaServer = request.app[SERVER]
    config = server.config
    ws = web.WebSocketResponse(max_msg_size=config.max_message_bytes, heartbeat=10.0)
    await ws.prepare(request)
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None and config.send_buffer_bytes:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, config.send_buffer_bytes)
    if server.stats.active >= config.max_sessions:
        server.stats.sessions_refused += 1
        await ws.send_json({"type": "error", "code": "busy",
                            "message": f"the server is busy ({config.max_sessions} sessions); try again later"})
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"busy")
        return ws
    server.stats.active += 1
    server.stats.sessions_started += 1
    connection = _Connection(server, ws)
    sender = asyncio.create_task(connection.send_loop())
    try:
        while not ws.closed:
            try:
                message = await ws.receive(timeout=config.idle_timeout_s)
            except asyncio.TimeoutError:
                if connection.ended:
                    continue  # the last frames are on their way
                await connection.error(f"no message for {config.idle_timeout_s:g} s; closing")
                break
            if message.type == WSMsgType.TEXT:
                await connection.handle_text(message.data)
            elif message.type == WSMsgType.BINARY:
                await connection.handle_audio(message.data)
            elif message.type == WSMsgType.ERROR:
                server.stats.malformed += 1  # e.g. a message over max_msg_size: aiohttp closes with 1009
                break
            else:  # CLOSE, CLOSING, CLOSED
                break
            if sender.done():
                break
    finally:
        if not sender.done():
            sender.cancel()
        for result in await asyncio.gather(sender, return_exceptions=True):
            if isinstance(result, ConnectionError):  # the client went away while frames were on their way
                log.debug("client gone: %r", result)
            elif isinstance(result, Exception):
                log.error("sending to a client failed: %r", result)
        if not ws.closed:
            await ws.close()
        await asyncio.get_running_loop().run_in_executor(None, connection.close)  # joins the stage threads
        server.stats.active -= 1
    return ws
