"""`vasa demo`: the main job on inputs that ship with the package.

Portrait: matplotlib's public-domain photo of Grace Hopper. Speech: vasa/assets/demo_speech.wav,
synthesised with flite's `slt` voice (scripts/make_demo_assets.py). The motion comes from the shipped
motion model (vasa/assets/motion_default.safetensors). vasa/assets/demo_driver.mp4, a talking clip
the project made from scikit-image's public-domain astronaut, drives `vasa demo --reenact`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

from vasa.errors import VasaError
from vasa.provenance import Provenance

ASSETS = Path(__file__).parent / "assets"
DEMO_DRIVER = ASSETS / "demo_driver.mp4"
DEMO_SPEECH = ASSETS / "demo_speech.wav"


def demo_portrait() -> Path:
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.exists():
        raise VasaError(f"matplotlib's sample photo is missing: {path}")
    return path


def run_demo(out: str | Path, size: int = 512, reenact: bool = False, provenance: Provenance = Provenance()) -> None:
    portrait = demo_portrait()
    if reenact:
        from vasa.reenact import reenact as run_reenact

        print(f"portrait: {portrait}\ndriver:   {DEMO_DRIVER}")
        frames = run_reenact(portrait, DEMO_DRIVER, out, size=size, provenance=provenance)
        print(f"wrote {out} ({frames} frames, {size}x{size}, with the driver's speech)")
        return
    from vasa.pipeline import TalkingHead

    print(f"portrait: {portrait}\nspeech:   {DEMO_SPEECH}")
    head = TalkingHead.from_pretrained(size=size)
    head.set_source(portrait)
    frames = head.generate(DEMO_SPEECH, out, provenance=provenance)
    print(f"wrote {out} ({frames} frames, {size}x{size}, motion generated from the speech)")
