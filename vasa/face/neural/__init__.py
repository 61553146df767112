"""The learned face latent space of VASA-1 Sec. 3.1 (a MegaPortraits-style 3D-aided warping model).

config.py: sizes as presets; warps.py: the rigid and non-rigid 3D warps (free functions);
networks.py: encoders, warp generators, the canonical 3D network and the 2D decoder;
model.py: `NeuralFaceModel` (the networks composed) and its safetensors checkpoints;
losses.py + discriminator.py: what training needs; backend.py: `NeuralFace`, the
`Appearance`/`Motion` backend that `--face neural` selects.
"""

from vasa.face.neural.config import PRESETS, NeuralFaceConfig
from vasa.face.neural.model import NeuralFaceModel, load_face_model, save_face_model

__all__ = ["PRESETS", "NeuralFaceConfig", "NeuralFaceModel", "load_face_model", "save_face_model"]
