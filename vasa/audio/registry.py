"""Audio encoders by name: the one place that knows every encoder class (their base, `AudioEncoder`,
knows none of them)."""

from __future__ import annotations

import os

from vasa.audio.encoders import DEFAULT_FPS, WHISPER_NAMES, AudioEncoder, LogMelEncoder, parse_encoder_spec
from vasa.audio.streaming import WindowSchedule
from vasa.errors import VasaError


def load_encoder(name: str = "whisper", fps: float = DEFAULT_FPS, schedule: WindowSchedule | None = None,
                 model_path: str | os.PathLike | None = None, layers: tuple[int, ...] | None = None) -> AudioEncoder:
    """By name: "whisper" (packaged tiny.en, or `model_path`), "whisper-base" (packaged Whisper base,
    multilingual, run by the PyTorch port: "whisper-base:layers=3" computes only half of it),
    "wav2vec2" (needs `model_path`), "mel".

    `name` may carry the window schedule the features were made with, and for Whisper the encoder
    layers they come from, as `encoder_spec` writes it ("whisper:hop=0.08,left=1,lookahead=0.04",
    "whisper:layers=3"): records and motion models store that, so a model is run on the same features
    it was trained on. An explicit `schedule` or `layers` takes precedence."""
    name, stored, stored_layers = parse_encoder_spec(name)
    schedule = schedule or stored
    layers = layers or stored_layers
    if layers and name not in WHISPER_NAMES:
        raise VasaError(f"encoder layers can be chosen for whisper only, not {name}")
    if name in WHISPER_NAMES:
        from vasa.audio.whisper import WhisperEncoder, packaged_whisper_base_parts

        if name == "whisper-base" and model_path is None:
            model_path = packaged_whisper_base_parts()
        return WhisperEncoder(model_path, fps=fps, schedule=schedule, layers=layers)
    if name in ("wav2vec2", "hubert", "wavlm", "transformers"):
        from vasa.audio.wav2vec2 import TransformersEncoder

        if model_path is None:
            raise VasaError(f"the {name} encoder needs model_path: a folder saved with save_pretrained")
        return TransformersEncoder(model_path, fps=fps, schedule=schedule)
    if name == "mel":
        return LogMelEncoder(fps=fps, schedule=schedule)
    raise VasaError(f"unknown audio encoder {name!r}: choose whisper, whisper-base, wav2vec2 or mel")
