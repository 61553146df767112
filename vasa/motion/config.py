"""`MotionConfig`: the motion generator's dimensions, one frozen dataclass with named presets.

    from vasa.motion.config import PRESETS
    config = PRESETS["default"]

Presets: `base` is the paper's size (VASA-1 Sec. 4: 8-layer transformer encoder, width 512, 8 heads);
`default` is smaller and runs faster than real time on a 2-core CPU (numbers in docs/motion.md);
`small` is the size of the shipped model (trained on about two minutes of video, where a larger model
only memorises); `tiny` is for tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from vasa.latents import EMOTION_NAMES, POSE_DIM

MOTION_DIM = 46  # vasa.latents.Motion.as_array(): pose (6,) + dynamics (40,)
AUDIO_DIM = 384  # Whisper tiny.en features at 25 fps (vasa.audio.WhisperEncoder)
GAZE_DIM = 2  # main gaze direction (theta, phi) in radians


@dataclass(frozen=True)
class MotionConfig:
    """Dimensions of `MotionDiT` and of the sliding window it is run on.

    window_frames (W): frames generated per window. context_frames (K): motion and audio frames of the
    previous window the next one is conditioned on (X_pre, A_pre). diffusion_steps: length of the
    training noise schedule; the 50-step ancestral sampler walks all of them.
    """

    motion_dim: int = MOTION_DIM
    audio_dim: int = AUDIO_DIM
    window_frames: int = 50
    context_frames: int = 10
    width: int = 256
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    emotions: int = len(EMOTION_NAMES)  # emotion offset: one weight per class
    diffusion_steps: int = 50
    dropout: float = 0.0  # on attention and MLP outputs in training (small datasets overfit without it)

    def __post_init__(self):
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not a multiple of heads {self.heads}")
        if not 0 < self.context_frames <= self.window_frames:
            raise ValueError(
                f"context_frames {self.context_frames} must be in [1, window_frames={self.window_frames}]: "
                "the context is the end of the previous window"
            )
        if self.motion_dim <= POSE_DIM:
            raise ValueError(f"motion_dim {self.motion_dim} must hold the {POSE_DIM} pose entries and dynamics")

    @property
    def tokens(self) -> int:
        return self.context_frames + self.window_frames


PRESETS: dict[str, MotionConfig] = {
    "base": MotionConfig(width=512, depth=8, heads=8),
    "default": MotionConfig(width=256, depth=6, heads=4),
    "small": MotionConfig(width=128, depth=4, heads=4, dropout=0.1),
    # live streaming: windows of 4 frames (160 ms) on 4 frames of context, so a frame waits for at most
    # 4 frames of audio (docs/serve.md); the shipped one reads Whisper base layer 3 on 1 s windows with 40 ms
    # lookahead (vasa/assets/motion_live.md)
    "live": MotionConfig(window_frames=4, context_frames=4, width=128, depth=4, heads=4, dropout=0.1),
    "tiny": MotionConfig(window_frames=8, context_frames=3, width=32, depth=2, heads=2, diffusion_steps=20),
}
