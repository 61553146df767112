"""Make the bundled demo inputs in vasa/assets/ (run once; the outputs are committed).

    python scripts/make_demo_assets.py

- demo_speech.wav: flite's "slt" voice (Debian package flite) reading DEMO_TEXT.
- demo_driver.mp4: a driving clip of a public-domain photo (scikit-image's `astronaut`) animated
  by the mesh face backend with procedural motion: mouth opening from the speech's loudness,
  blinks, slow head sway and nods. `vasa demo` extracts its motion again and applies it to
  another public-domain portrait (matplotlib's `grace_hopper.jpg`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from vasa.face.mesh import MeshFace, edits
from vasa.media import read_audio, write_video

ASSETS = Path(__file__).resolve().parents[1] / "vasa" / "assets"
DEMO_TEXT = ("Hello! I am a talking head. One photo and a few seconds of speech are all it takes "
             "to bring a portrait to life, right here on your computer.")
FPS = 25
SIZE = 256
BLINK_PROFILE = (0.35, 0.8, 1.0, 0.75, 0.35)
BLINK_FRAMES = (22, 96, 151, 190)


def make_speech(path: Path) -> None:
    if shutil.which("flite") is None:
        raise SystemExit("flite is needed: apt-get install flite")
    subprocess.run(["flite", "-voice", "slt", "-t", DEMO_TEXT, "-o", str(path)], check=True)


def loudness(samples: np.ndarray, rate: int, frames: int) -> np.ndarray:
    """Per-video-frame RMS, smoothed over 3 frames and scaled to [0, 1]."""
    hop = rate // FPS
    padded = np.pad(samples, (0, max(0, frames * hop - len(samples))))[: frames * hop]
    rms = np.sqrt((padded.reshape(frames, hop) ** 2).mean(axis=1))
    rms = np.convolve(rms, np.ones(3) / 3, mode="same")
    return np.clip(rms / (np.percentile(rms, 95) + 1e-9), 0, 1)


def main() -> None:
    from skimage.data import astronaut

    speech = ASSETS / "demo_speech.wav"
    make_speech(speech)
    samples, rate = read_audio(speech)
    frames = int(round(samples.shape[1] / rate * FPS))
    energy = loudness(samples[0], rate, frames)
    face = MeshFace(size=SIZE)
    appearance, source = face.encode(astronaut())
    t = np.arange(frames) / FPS
    blink = np.zeros(frames)
    for start in BLINK_FRAMES:
        for k, value in enumerate(BLINK_PROFILE):
            if start + k < frames:
                blink[start + k] = value
    motions = []
    for i in range(frames):
        m = edits.turn(source, yaw=5 * np.sin(2 * np.pi * t[i] / 4.1) + 2 * np.sin(2 * np.pi * t[i] / 1.7),
                       pitch=2.5 * np.sin(2 * np.pi * t[i] / 3.3) + 3 * (energy[i] - 0.4),
                       roll=1.5 * np.sin(2 * np.pi * t[i] / 5.0))
        m = edits.open_mouth(face, appearance, m, 0.01 + 0.15 * energy[i] ** 0.8)
        if blink[i] > 0:
            m = edits.blink(face, appearance, m, blink[i])
        motions.append(m)
    video = (face.decode(appearance, m) for m in motions)
    write_video(ASSETS / "demo_driver.mp4", video, FPS, (samples, rate), crf=23)
    print(f"wrote {ASSETS / 'demo_driver.mp4'} and {speech} ({frames} frames)")


if __name__ == "__main__":
    main()
