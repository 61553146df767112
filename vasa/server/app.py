"""`vasa serve`: a web page that turns speech from the browser into a live talking portrait.

The server only moves bytes: WebSocket audio in -> `vasa.streaming.StreamingSession` -> JPEG frames,
each with its own slice of the audio, out. Protocol, limits and the latency design: docs/serve.md.

    app = build_app(TalkingHead.from_pretrained(size=256), ServerConfig(max_sessions=2))
    aiohttp.web.run_app(app, host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import logging
import math
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from aiohttp import web

from vasa.errors import VasaError
from vasa.latents import FPS
from vasa.pipeline import Source, TalkingHead
from vasa.server.session import websocket_route
from vasa.server.webrtc import webrtc_route

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class ServerConfig:
    """Limits that keep one server up whatever its clients do (docs/serve.md)."""

    max_sessions: int = 1  # live streams at once; one more 'start' is refused with a 'busy' error
    max_connections: int = 8  # open WebSockets at once, streaming or not; one more is refused at connect
    upload_bytes: int = 8 << 20  # largest portrait upload
    upload_pixels: int = 100_000_000  # larger images are refused from their header, before decoding
    upload_side: int = 2048  # an upload is decoded (a JPEG straight at 1/2..1/8 scale) to at most this side
    max_uploads: int = 16  # uploaded portraits kept (oldest forgotten first)
    idle_timeout_s: float = 20.0  # a connection with no valid message for this long is closed (from connect on)
    ping_every_s: float = 10.0  # WebSocket pings, so a vanished client is noticed (pongs do not count as messages)
    max_audio_s: float = 600.0  # audio one session may stream
    max_message_bytes: int = 1 << 16  # largest WebSocket message from a client (2 s of audio)
    send_queue_frames: int = 60  # frames held for a slow client (a window comes at once); older ones are dropped
    send_buffer_bytes: int | None = 1 << 18  # kernel send buffer per stream: a slow client is seen sooner
    max_frame_wait_s: float = 1.0  # a frame not taken by the client this long after it was made is dropped
    jpeg_quality: int = 85
    fps: float = FPS
    step_frames: int | None = None  # motion frames per window (None: the model's window)
    # DDIM steps per window: with 10 the live model falls behind real time on 2 cores (docs/benchmarks.md);
    # 5 keeps its held-out lip sync (mouth r 0.404 against 0.403) and moves the head less (0.45 against 0.60 deg/frame)
    steps: int = 5
    portraits: tuple[Path, ...] = ()  # pickable portraits besides the bundled demo one
    watermark: bool = True  # every stream's frames carry vasa's invisible watermark (vasa.provenance)

    def __post_init__(self):
        if self.max_sessions < 1:
            raise VasaError("max sessions must be at least 1")
        if self.max_connections < self.max_sessions:
            raise VasaError(f"max connections ({self.max_connections}) must be at least max sessions "
                            f"({self.max_sessions})")
        for name in ("idle_timeout_s", "ping_every_s", "max_audio_s", "max_frame_wait_s", "fps"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise VasaError(f"{name} must be a positive number, got {value!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise VasaError(f"JPEG quality must be in 1..100, got {self.jpeg_quality}")


@dataclass
class _Portrait:
    name: str
    path: Path | None = None  # encoded on first use
    source: Source | None = None
    jpeg: bytes = b""


@dataclass
class ServerStats:
    sessions_started: int = 0
    sessions_refused: int = 0
    frames_sent: int = 0
    frames_dropped: int = 0
    malformed: int = 0
    idle_closed: int = 0
    active: int = 0  # sessions streaming (a slot is taken at 'start')
    rtc_schedule_moves: int = 0  # WebRTC frames later than their slot: the pacer's schedule moved back
    errors: list[str] = field(default_factory=list)  # last few session failures (not user mistakes)


class VasaServer:
    """One loaded `TalkingHead` shared by every session; portraits encoded once and cached."""

    def __init__(self, head: TalkingHead, config: ServerConfig = ServerConfig()):
        from vasa.demo import demo_portrait

        self.head, self.config = head, config
        self.stats = ServerStats()
        self.connections = 0  # open WebSockets
        self.rtc_streams: set = set()  # live WebRTC streams (vasa.server.webrtc)
        self.portraits: collections.OrderedDict[str, _Portrait] = collections.OrderedDict()
        self._uploads: collections.deque[str] = collections.deque()
        self._encode_lock = threading.Lock()  # one portrait encode at a time (face tracker state)
        # uploads are decoded and encoded on one thread: one malloc arena, handed back after each; it
        # yields the cores to the live streams
        self.encoder = ThreadPoolExecutor(1, thread_name_prefix="portrait-encode", initializer=_lower_priority)
        for path in (demo_portrait(), *config.portraits):
            path = Path(path)
            self.portraits[_portrait_id(path.read_bytes())] = _Portrait(path.stem, path)

    # --- portraits ------------------------------------------------------------------------------
    def source(self, portrait_id: str) -> Source:
        portrait = self.portraits.get(portrait_id)
        if portrait is None:
            raise VasaError(f"unknown portrait {portrait_id!r}: pick one from /api/portraits or upload one")
        if portrait.source is None:  # encoded once, on first use
            with self._encode_lock:
                if portrait.source is None:
                    portrait.source = self._light(self.head.encode_source(portrait.path))
        return portrait.source

    def encode_upload(self, data: bytes) -> tuple[str, Source, bytes]:
        """Worker thread: an uploaded image -> (id, encoded portrait, thumbnail JPEG); VasaError when it
        is not an image, is over the pixel budget or shows no face. What is kept is bounded whatever the
        image's size: the encoded portrait and a thumbnail, not the decoded photo (docs/serve.md)."""
        import cv2

        from vasa.media import decode_image

        key = _portrait_id(data)
        known = self.portraits.get(key)
        if known is not None and known.source is not None:
            return key, known.source, known.jpeg
        try:
            photo = decode_image(data, "upload", self.config.upload_pixels, self.config.upload_side)
            with self._encode_lock:
                source = self._light(self.head.encode_source(photo))
            del photo
        finally:
            _return_freed_memory()
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(source.photo, cv2.COLOR_RGB2BGR))
        return key, source, jpeg.tobytes() if ok else b""

    @staticmethod
    def _light(source: Source) -> Source:
        """The portrait as a stream needs it: live frames are the face crop, never pasted back into the
        photo, so the photo is kept as a thumbnail only."""
        return replace(source, photo=_thumbnail(source.photo))

    def add_upload(self, key: str, source: Source, jpeg: bytes) -> None:
        """Event loop: keep an encoded upload (the oldest uploads are forgotten beyond max_uploads)."""
        if key in self.portraits:
            return
        self.portraits[key] = _Portrait(f"upload {len(self._uploads) + 1}", None, source, jpeg)
        self._uploads.append(key)
        while len(self._uploads) > self.config.max_uploads:
            self.portraits.pop(self._uploads.popleft(), None)

    def thumbnail(self, portrait_id: str) -> bytes:
        import cv2

        from vasa.media import read_image

        portrait = self.portraits.get(portrait_id)
        if portrait is None:
            raise web.HTTPNotFound()
        if not portrait.jpeg:
            image = _thumbnail(read_image(portrait.path, max_side=self.config.upload_side))
            portrait.jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
        return portrait.jpeg

    def encode_jpeg(self, image: np.ndarray) -> bytes:
        import cv2

        ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return data.tobytes()


def _lower_priority() -> None:
    """Make the calling thread yield the CPU to the others (Linux: a thread's nice value is its own)."""
    if sys.platform.startswith("linux"):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), UPLOAD_NICE)


UPLOAD_NICE = 10  # nice value of the thread that decodes and encodes uploads (0 = as the streams, 19 = last)


def _return_freed_memory() -> None:
    """Hand memory freed after decoding a large image back to the OS: glibc keeps it in its arenas
    otherwise (measured: two 9000 x 9000 uploads left 119 MB behind, 10 MB with this). No-op elsewhere."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _libc():
    """glibc, when this process runs on it (found on first use, not at import)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def _portrait_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _thumbnail(image: np.ndarray, side: int = 160) -> np.ndarray:
    import cv2

    scale = side / max(image.shape[:2])
    return cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA)


# --- HTTP routes ------------------------------------------------------------------------------------
async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def _list_portraits(request: web.Request) -> web.Response:
    server: VasaServer = request.app[SERVER]
    return web.json_response([{"id": key, "name": p.name} for key, p in server.portraits.items()])


async def _portrait_image(request: web.Request) -> web.Response:
    server: VasaServer = request.app[SERVER]
    data = await asyncio.get_running_loop().run_in_executor(None, server.thumbnail, request.match_info["id"])
    return web.Response(body=data, content_type="image/jpeg")


async def _upload_portrait(request: web.Request) -> web.Response:
    server: VasaServer = request.app[SERVER]
    limit = server.config.upload_bytes
    if request.content_length is not None and request.content_length > limit:
        return _error_response(413, f"portrait upload is larger than {limit >> 20} MB")
    data = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        data += chunk
        if len(data) > limit:
            return _error_response(413, f"portrait upload is larger than {limit >> 20} MB")
    if not data:
        return _error_response(400, "empty upload: send the image file as the request body")
    try:
        key, source, jpeg = await asyncio.get_running_loop().run_in_executor(server.encoder, server.encode_upload,
                                                                              bytes(data))
    except VasaError as error:
        return _error_response(400, str(error))
    server.add_upload(key, source, jpeg)
    return web.json_response({"id": key, "name": server.portraits[key].name})


async def _demo_speech(request: web.Request) -> web.FileResponse:
    from vasa.demo import DEMO_SPEECH

    return web.FileResponse(DEMO_SPEECH)


async def _status(request: web.Request) -> web.Response:
    server: VasaServer = request.app[SERVER]
    return web.json_response({**server.stats.__dict__, "max_sessions": server.config.max_sessions})


def _error_response(status: int, message: str) -> web.Response:
    return web.json_response({"type": "error", "message": message}, status=status)


SERVER = web.AppKey("vasa", VasaServer)


def build_app(head: TalkingHead, config: ServerConfig = ServerConfig()) -> web.Application:
    """The aiohttp application: the page, its static files, the portrait API and the /ws stream."""
    app = web.Application(client_max_size=config.upload_bytes + (1 << 16))
    app[SERVER] = VasaServer(head, config)
    app.router.add_get("/", _index)
    app.router.add_static("/static/", STATIC)
    app.router.add_get("/api/portraits", _list_portraits)
    app.router.add_get("/api/portraits/{id}.jpg", _portrait_image)
    app.router.add_post("/api/portraits", _upload_portrait)
    app.router.add_get("/api/demo_speech.wav", _demo_speech)
    app.router.add_get("/api/status", _status)
    app.router.add_get("/ws", websocket_route(app[SERVER]))
    app.router.add_post("/api/webrtc/offer", webrtc_route(app[SERVER]))
    app.on_cleanup.append(_shut_down)
    return app


async def _shut_down(app: web.Application) -> None:
    for stream in list(app[SERVER].rtc_streams):
        await stream.close()
    app[SERVER].encoder.shutdown(wait=False, cancel_futures=True)
