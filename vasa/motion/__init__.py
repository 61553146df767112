"""Motion generator: a diffusion transformer over windows of [pose, dynamics] driven by audio features.

    from vasa.motion import PRESETS, MotionDiT, MotionStream, generate_motion
    model = MotionDiT(PRESETS["default"])
    motion = generate_motion(model, features, gaze=(0.0, 0.0), seed=0)   # (T, 46)

Modules: config (dimensions, presets), dit (the network), diffusion (schedule, loss, samplers,
guidance: free functions), checkpoint (safetensors + config), generate (sliding windows,
streaming), controls (post-controls in motion space).
Motion never imports vasa.face or vasa.audio: it takes plain arrays.
"""

from vasa.motion.checkpoint import load_motion_model, save_motion_model
from vasa.motion.config import PRESETS, MotionConfig
from vasa.motion.diffusion import Guidance, cosine_schedule
from vasa.motion.dit import Conditions, Dropped, MotionDiT
from vasa.motion.generate import MotionStream, Sampler, generate_motion

__all__ = [
    "PRESETS", "Conditions", "Dropped", "Guidance", "MotionConfig", "MotionDiT", "MotionStream", "Sampler",
    "cosine_schedule", "generate_motion", "load_motion_model", "save_motion_model",
]
