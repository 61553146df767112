"""`vasa demo`: the main job on inputs that ship with the package.

Portrait: matplotlib's public-domain photo of Grace Hopper. Driver: vasa/assets/demo_driver.mp4,
a clip the project made (scripts/make_demo_assets.py) from scikit-image's public-domain astronaut
photo with procedural motion and flite speech.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

from vasa.errors import VasaError

ASSETS = Path(__file__).parent / "assets"
DEMO_DRIVER = ASSETS / "demo_driver.mp4"
DEMO_SPEECH = ASSETS / "demo_speech.wav"


def demo_portrait() -> Path:
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.exists():
        raise VasaError(f"matplotlib's sample photo is missing: {path}")
    return path


def run_demo(out: str | Path, size: int = 512) -> None:
    from vasa.reenact import reenact

    portrait = demo_portrait()
    print(f"portrait: {portrait}\ndriver:   {DEMO_DRIVER}")
    frames = reenact(portrait, DEMO_DRIVER, out, size=size)
    print(f"wrote {out} ({frames} frames, {size}x{size}, with the driver's speech)")
