"""The /ws stream of `vasa serve`: one WebSocket = one `StreamingSession`. Messages: docs/serve.md.

Three workers per connection, none of which can make memory grow:
- the reader (this coroutine) takes client messages; audio goes to the session through one thread
  that blocks while the pipeline is behind, so a client sending too fast is slowed by TCP;
- a pump thread reads frames from the session as soon as they are made and hands them to
- the sender coroutine through a latest-wins queue of `send_queue_frames`: a slow client loses the
  oldest frames (counted in `dropped`), the pipeline never waits for it. A frame that has waited more
  than `max_frame_wait_s` since it was made, in the queue or in the socket's buffers, is dropped too,
  so a slow reader gets fresh frames, not a growing backlog (vasa.server.pacing).

Every client message is checked (vasa.server.protocol, the wire format); a bad one gets an error reply,
never a traceback. The idle timer runs on the last valid client message (not on the socket, which
browsers keep alive with pongs), and a streaming slot is taken at `start`, not at connect.
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
from typing import TYPE_CHECKING

from aiohttp import WSCloseCode, WSMsgType, web

from vasa.errors import VasaError
from vasa.latents import SAMPLE_RATE  # the browser sends and gets back mono 16-bit PCM at this rate
from vasa.server.pacing import SendPace
from vasa.provenance import stream_mark
from vasa.server.protocol import FRAME_HEADER, BadMessage, parse_start, parse_text, pcm_samples
from vasa.streaming import StreamFrame, StreamingSession

if TYPE_CHECKING:
    from vasa.server.app import VasaServer

STATS_EVERY_S = 1.0

log = logging.getLogger(__name__)


class _Connection:
    """State of one WebSocket stream."""

    def __init__(self, server: VasaServer, ws: web.WebSocketResponse, transport: asyncio.Transport | None):
        self.server, self.ws, self.config = server, ws, server.config
        self.loop = asyncio.get_running_loop()
        self.session: StreamingSession | None = None
        self.holds_slot = False
        self.pusher = ThreadPoolExecutor(1, thread_name_prefix="vasa-push")
        # frames as (ready_s, message bytes), and text messages (str)
        self.outbox: collections.deque[tuple[float, bytes] | str] = collections.deque()
        self.pace = SendPace(transport, self.config.max_frame_wait_s)  # how much the client can take now
        self.wake = asyncio.Event()
        self.pcm = bytearray()  # audio received and not yet sent back with its frame
        self.pcm_start = 0  # sample index of pcm[0]
        self.samples_in = 0
        self.frames_sent = self.dropped = self.stale = 0
        self.ended = self.finished = self.quiet = False
        self.close_code = WSCloseCode.OK  # the close the server sends when it ends the connection
        self.started_s = self.first_frame_s = None
        self.heard_s = self.loop.time()  # the last valid client message: the idle timer runs from it
        self.pump: threading.Thread | None = None

    # --- client -> server -----------------------------------------------------------------------
    async def handle_text(self, text: str) -> None:
        try:
            message = parse_text(text)
        except BadMessage as error:
            return await self.error(str(error), malformed=error.malformed)
        kind = message["type"]
        if kind == "start":
            await self.start(message)
        elif kind == "controls":
            if self.session is None:
                return await self.error("'controls' before 'start'", malformed=True)
            try:
                self.session.set_emotion(message.get("emotion"))
            except VasaError as error:
                return await self.error(str(error))
            self.heard()
        elif kind == "end":
            if self.session is None:
                return await self.error("'end' before 'start'", malformed=True)
            if self.samples_in == 0:
                await self.error("'end' before any audio: nothing to animate; closing")
                self.finish()
                return
            self.heard()
            if not self.ended:
                self.ended = True
                await self.loop.run_in_executor(self.pusher, self.session.end)

    async def start(self, message: dict) -> None:
        if self.session is not None:
            return await self.error("this connection already streams; open a new one", malformed=True)
        try:
            controls, portrait = parse_start(message, self.config.steps)
        except BadMessage as error:
            return await self.error(str(error), malformed=error.malformed)
        if self.server.stats.active >= self.config.max_sessions:
            self.server.stats.sessions_refused += 1
            await self.error(f"the server is busy ({self.config.max_sessions} sessions); try again later", code="busy")
            self.finish(quiet=True, code=WSCloseCode.TRY_AGAIN_LATER)
            return
        self.server.stats.active += 1  # the slot is held from here, also while the portrait is encoded
        self.holds_slot = True
        try:
            source = await self.loop.run_in_executor(None, self.server.source, portrait)
        except VasaError as error:
            self.release_slot()
            return await self.error(str(error))
        self.server.stats.sessions_started += 1
        self.session = StreamingSession(self.server.head, source, controls, fps=self.config.fps,
                                        step_frames=self.config.step_frames, encode=self.server.encode_jpeg,
                                        mark=stream_mark(self.config.watermark))
        self.pump = threading.Thread(target=self.pump_frames, name="vasa-pump", daemon=True)
        self.pump.start()
        self.heard()
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
        self.heard()
        if (self.samples_in + len(data) // 2) / SAMPLE_RATE > self.config.max_audio_s:
            await self.error(f"a session streams at most {self.config.max_audio_s:g} s of audio; ending it")
            self.ended = True
            if self.samples_in == 0:
                self.finish()
                return
            return await self.loop.run_in_executor(self.pusher, self.session.end)
        if self.started_s is None:
            self.started_s = time.perf_counter()
        self.pcm += data
        self.samples_in += len(data) // 2
        try:
            await self.loop.run_in_executor(self.pusher, self.session.push, pcm_samples(data))  # blocks while behind
        except VasaError as error:  # the session stopped (a pipeline failure is reported by the pump)
            await self.error(str(error))

    def heard(self) -> None:
        self.heard_s = self.loop.time()

    def idle_deadline(self) -> float | None:
        """Loop time at which a silent client is closed; None while the last frames of an ended stream go out."""
        return None if self.ended else self.heard_s + self.config.idle_timeout_s

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
            self.outbox.append((item.ready_s, self.frame_message(item)))
            while len(self.outbox) > self.config.send_queue_frames and isinstance(self.outbox[0], tuple):
                self.outbox.popleft()
                self.count_dropped()
        elif item is None:
            self.finished = True
        else:
            self.outbox.append(json.dumps({"type": "error", "message": f"the pipeline failed: {item}"}))
            self.finished = True
        self.wake.set()

    def count_dropped(self, stale: bool = False) -> None:
        self.dropped += 1
        self.stale += stale
        self.server.stats.frames_dropped += 1

    def finish(self, quiet: bool = False, code: WSCloseCode = WSCloseCode.OK) -> None:
        """End this connection once what is queued is sent (with 'done' unless quiet), closing with `code`."""
        self.finished, self.quiet, self.close_code = True, quiet, code
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
                await self.ws.close(code=self.close_code)

    async def _send_loop(self) -> None:
        last_stats = time.perf_counter()
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), SEND_POLL_S if self.outbox else STATS_EVERY_S)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            while self.outbox and not self.ws.closed:
                if isinstance(self.outbox[0], str):
                    await self.ws.send_str(self.outbox.popleft())
                    continue
                ready_s, message = self.outbox[0]
                now = time.perf_counter()
                if now - ready_s > self.config.max_frame_wait_s:  # too old to show in time
                    self.outbox.popleft()
                    self.count_dropped(stale=True)
                    continue
                if not self.pace.may_send(len(message), now):
                    break  # the client takes frames slower than they come: hold, the old ones get dropped
                self.outbox.popleft()
                await self.ws.send_bytes(message)
                self.pace.sent(len(message))
                self.frames_sent += 1
                self.server.stats.frames_sent += 1
            if self.ws.closed:
                return
            now = time.perf_counter()
            if self.finished and not self.outbox:
                if not self.quiet:
                    await self.ws.send_json({"type": "done", **self.summary()})
                await self.ws.close(code=self.close_code)
                return
            if now - last_stats >= STATS_EVERY_S and self.session is not None:
                last_stats = now
                await self.ws.send_json({"type": "stats", **self.summary()})

    def summary(self) -> dict:
        first = (None if self.first_frame_s is None or self.started_s is None
                 else round(1000 * (self.first_frame_s - self.started_s)))
        elapsed = time.perf_counter() - self.first_frame_s if self.first_frame_s else 0.0
        return {"frames": self.frames_sent, "dropped": self.dropped, "stale": self.stale, "first_frame_ms": first,
                "audio_s": round(self.samples_in / SAMPLE_RATE, 3),
                "fps": round(self.frames_sent / elapsed, 1) if elapsed > 1 else None}

    async def error(self, message: str, malformed: bool = False, code: str | None = None) -> None:
        if malformed:
            self.server.stats.malformed += 1
        if not self.ws.closed:
            await self.ws.send_json({"type": "error", "message": message, **({"code": code} if code else {})})

    def release_slot(self) -> None:
        if self.holds_slot:
            self.holds_slot = False
            self.server.stats.active -= 1

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.pusher.shutdown(wait=False, cancel_futures=True)


SEND_POLL_S = 0.02  # while frames wait for a slow client, how often the sender looks again


def websocket_route(server: VasaServer):
    """The /ws handler of `server`: one WebSocket = one `StreamingSession`."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        return await _serve_websocket(server, request)

    return handler


async def _serve_websocket(server: VasaServer, request: web.Request) -> web.WebSocketResponse:
    config = server.config
    # aiohttp drops a message over its own limit with no word; ours (checked below) answers first
    ws = web.WebSocketResponse(max_msg_size=4 * config.max_message_bytes + 1, heartbeat=config.ping_every_s)
    await ws.prepare(request)
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None and config.send_buffer_bytes:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, config.send_buffer_bytes)
    if server.connections >= config.max_connections:
        server.stats.sessions_refused += 1
        await ws.send_json({"type": "error", "code": "busy",
                            "message": f"the server is busy ({config.max_connections} connections); try again later"})
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"busy")
        return ws
    server.connections += 1
    connection = _Connection(server, ws, request.transport)
    sender = asyncio.create_task(connection.send_loop())
    try:
        await _read_loop(connection, sender)
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
        connection.release_slot()
        server.connections -= 1
    return ws


async def _read_loop(connection: _Connection, sender: asyncio.Task) -> None:
    """Client messages until the client leaves, falls silent, breaks the size limit or the stream ends."""
    ws, config = connection.ws, connection.config
    while not ws.closed and not sender.done():
        deadline = connection.idle_deadline()
        try:
            async with asyncio.timeout_at(deadline):  # not ws.receive(timeout): each pong would restart it
                message = await ws.receive()
        except TimeoutError:
            if connection.idle_deadline() is None:
                continue
            connection.server.stats.idle_closed += 1
            await connection.error(f"no message for {config.idle_timeout_s:g} s; closing")
            break
        if message.type in (WSMsgType.TEXT, WSMsgType.BINARY) and len(message.data) > config.max_message_bytes:
            await connection.error(f"a message of {len(message.data)} bytes is over the {config.max_message_bytes} "
                                   "byte limit; closing", malformed=True)
            await ws.close(code=WSCloseCode.MESSAGE_TOO_BIG)
            break
        if message.type == WSMsgType.TEXT:
            await connection.handle_text(message.data)
        elif message.type == WSMsgType.BINARY:
            await connection.handle_audio(message.data)
        elif message.type == WSMsgType.ERROR:
            connection.server.stats.malformed += 1  # e.g. far over the size limit: aiohttp closes with 1009
            break
        else:  # CLOSE, CLOSING, CLOSED
            break
