"""The /ws wire format of `vasa serve` (docs/serve.md), apart from any connection: the header of a frame
message, the 16-bit PCM audio both ways, and the checks of a client's JSON messages that need no session.
A message that fails them raises `BadMessage`, which the connection answers with an error reply."""

from __future__ import annotations

import json
import struct

import numpy as np

from vasa.errors import VasaError
from vasa.pipeline import Controls

FRAME_HEADER = struct.Struct("<IdI")  # frame index, time_s on the audio clock, bytes of PCM that follow

MESSAGE_TYPES = ("start", "controls", "end")  # the client's text messages; audio comes as binary ones
# the start message's optional fields, handed to `Controls` as they are (it checks types and ranges)
CONTROL_FIELDS = ("seed", "head_scale", "expression_scale", "still", "blinks", "emotion", "mouth_readout")
START_FIELDS = {"type", "portrait", *CONTROL_FIELDS}
MALFORMED = "malformed message: send JSON objects with a 'type'"


class BadMessage(VasaError):
    """A client message the server answers with an error, going on; `malformed` ones (not only a value out
    of range) are counted in the server's stats."""

    def __init__(self, message: str, malformed: bool = False):
        super().__init__(message)
        self.malformed = malformed


def parse_text(text: str) -> dict:
    """A client's text message -> the JSON object it is, with a 'type' among MESSAGE_TYPES."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        raise BadMessage(MALFORMED, malformed=True) from None
    if not isinstance(message, dict) or "type" not in message:
        raise BadMessage(MALFORMED, malformed=True)
    if message["type"] not in MESSAGE_TYPES:
        raise BadMessage(f"unknown message type {short(message['type'])}: use start, controls, end, or binary audio",
                         malformed=True)
    return message


def parse_start(message: dict, steps: int) -> tuple[Controls, str]:
    """A 'start' message -> the controls it asks for (sampling with `steps` DDIM steps) and its portrait id."""
    unknown = set(message) - START_FIELDS
    if unknown:
        raise BadMessage(f"unknown field(s) in 'start': {short(sorted(unknown))}; "
                         f"known: {', '.join(sorted(START_FIELDS - {'type'}))}", malformed=True)
    try:
        controls = Controls(steps=steps, **{k: message[k] for k in CONTROL_FIELDS if k in message})
    except VasaError as error:
        raise BadMessage(str(error)) from None
    portrait = message.get("portrait")
    if not isinstance(portrait, str):
        raise BadMessage("'start' needs a 'portrait': an id from /api/portraits")
    return controls, portrait


def pcm_samples(data: bytes) -> np.ndarray:
    """A binary message's mono 16-bit little-endian PCM (an even number of bytes) -> float32 in [-1, 1)."""
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


def short(value, limit: int = 60) -> str:
    """repr(value), cut at `limit` characters: a client's value quoted in an error reply."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
