"""Blocking clients of `vasa serve` on a plain socket, for the server's tests and its load run
(scripts/load_serve.py): `RawClient` speaks just enough WebSocket to send anything, malformed or not;
`slow_reader` speaks in real time while it reads only a few frames a second, and measures how far
behind its own audio each frame it gets is (wall clock: a figure for a benchmark, not a pass mark)."""

from __future__ import annotations

import json
import socket
import threading
import time

from vasa.latents import SAMPLE_RATE
from vasa.server.protocol import FRAME_HEADER


class RawClient:
    """A blocking WebSocket client on a plain socket whose receive buffer is fixed before it connects,
    so the TCP window, not a library's buffer, decides how much the server can push ahead of it."""

    def __init__(self, port: int, receive_buffer: int = 8192):
        import base64
        import os

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        if b" 101 " not in response.split(b"\r\n")[0]:
            raise ConnectionError(f"no WebSocket upgrade: {response!r}")

    def send(self, payload: bytes | str) -> None:
        opcode = 1 if isinstance(payload, str) else 2
        data = payload.encode() if isinstance(payload, str) else payload
        mask = bytes([1, 2, 3, 4])
        size = (bytes([0x80 | len(data)]) if len(data) < 126 else
                bytes([0x80 | 126]) + len(data).to_bytes(2, "big") if len(data) < 65536 else
                bytes([0x80 | 127]) + len(data).to_bytes(8, "big"))
        masked = bytes(b ^ mask[k % 4] for k, b in enumerate(data))
        self.sock.sendall(bytes([0x80 | opcode]) + size + mask + masked)

    def close(self) -> None:
        """Send a close frame (code 1000); the server answers with its own."""
        self.sock.sendall(bytes([0x88, 0x82, 1, 2, 3, 4]) + bytes(b ^ m for b, m in zip((1000).to_bytes(2, "big"), (1, 2))))

    def _read(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    def receive(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame (the server's frames are not fragmented)."""
        first, second = self._read(2)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(self._read(2), "big")
        elif size == 127:
            size = int.from_bytes(self._read(8), "big")
        return first & 0x0F, self._read(size)


def slow_reader(port: int, portrait: str, audio: bytes, reads_per_s: float = 5.0, chunk: int = 640) -> dict:
    """Start a stream of `portrait`, send `audio` (16-bit PCM at 16 kHz) in real time, `chunk` bytes a
    message, from a second thread, while this one takes `reads_per_s` frames a second until 'done';
    -> {"ready": the server's 'ready' message, "lags": for each frame received, seconds from the
    speaker's clock (wall time since the first audio) to its audio's time, "done": 'done' or None}."""
    ws = RawClient(port)
    ws.send(json.dumps({"type": "start", "portrait": portrait}))
    ready = json.loads(ws.receive()[1])
    lags, done, t0 = [], None, time.perf_counter()

    def speak():
        for start in range(0, len(audio), chunk):
            ws.send(audio[start:start + chunk])
            time.sleep(max(0.0, t0 + (start + chunk) / 2 / SAMPLE_RATE - time.perf_counter()))
        ws.send(json.dumps({"type": "end"}))

    speaker = threading.Thread(target=speak)
    speaker.start()
    try:
        while True:
            opcode, payload = ws.receive()
            if opcode == 2:
                _, time_s, _ = FRAME_HEADER.unpack_from(payload)
                lags.append(time.perf_counter() - t0 - time_s)  # behind the speaker's clock
                time.sleep(1 / reads_per_s)
            elif opcode != 1:
                break
            elif (message := json.loads(payload))["type"] == "done":
                done = message
                break
    finally:
        speaker.join()
        ws.sock.close()
    return {"ready": ready, "lags": lags, "done": done}
