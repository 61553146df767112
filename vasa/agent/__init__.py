"""vasa in voice agents: `LiveAvatar` (speaking, listening, interrupted, driven by a real-time clock) and
`vasa.agent.pipecat.VasaVideoService`, the Pipecat frame processor (needs `pip install "vasa[pipecat]"`)."""

from vasa.agent.avatar import AvatarFrame, AvatarStats, LiveAvatar, to_model_audio

__all__ = ["AvatarFrame", "AvatarStats", "LiveAvatar", "to_model_audio"]
