"""How much of a stream may go to a WebSocket client now (vasa.server.session's sender asks before each
frame): the bytes its TCP stack has not yet taken, against the rate it took them over the last second."""

from __future__ import annotations

import asyncio
import collections
import struct

try:  # the kernel's unsent bytes of a socket (POSIX); elsewhere only the transport's buffer is counted
    import fcntl
    import termios
except ImportError:
    fcntl = termios = None

RATE_WINDOW_S = 1.0  # the client's reading rate is measured over this long


class SendPace:
    """The bytes sent on one connection and how fast its client takes them."""

    def __init__(self, transport: asyncio.Transport | None, max_frame_wait_s: float):
        self.transport, self.max_frame_wait_s = transport, max_frame_wait_s
        self.taken: collections.deque[tuple[float, int]] = collections.deque()  # (time, bytes the client has taken)
        self.bytes_sent = 0

    def sent(self, size: int) -> None:
        self.bytes_sent += size

    def may_send(self, size: int, now: float) -> bool:
        """Whether a frame of `size` bytes may go now: yes when everything sent so far has been taken by
        the client's TCP stack, or when what is still on its way plus this frame is what the client
        takes in `max_frame_wait_s` at the rate it took bytes over the last second. A slow link or
        reader so never has more than about that much waiting for it; the rest waits in the sender's
        queue, where it is dropped once too old."""
        taken = self.bytes_sent - unsent_bytes(self.transport)
        self.taken.append((now, taken))
        while len(self.taken) > 2 and now - self.taken[1][0] >= RATE_WINDOW_S:
            self.taken.popleft()
        unsent = self.bytes_sent - taken
        if unsent == 0:
            return True
        since, taken_then = self.taken[0]
        rate = (taken - taken_then) / max(now - since, 1e-3)  # bytes a second the client has been taking
        return unsent + size <= rate * self.max_frame_wait_s


def unsent_bytes(transport: asyncio.Transport | None) -> int:
    """Bytes written to a connection that its client's TCP stack has not yet acknowledged: the
    transport's buffer plus the kernel's send queue (Linux; elsewhere the transport's buffer only)."""
    if transport is None or transport.is_closing():
        return 0
    unsent = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None and termios is not None and hasattr(termios, "TIOCOUTQ"):
        try:
            unsent += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        except OSError:
            pass
    return unsent
