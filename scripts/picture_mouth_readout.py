"""A picture of what the mouth read-out's share does: a held-out speaker's real frames, then the shipped
model's frames at read-out shares 0 (the diffusion model's mouth alone), 0.75 (shipped) and 1.

    python scripts/picture_mouth_readout.py ../shared/media/train/aligndit/lrs3_sxnlvwprfSc_00011.mp4 \
        --out docs/img/mouth_readout.png

The clip's first frame is the portrait, its own speech the audio (as scripts/eval_speakers.py does); eight
frames evenly over its first seconds, the lower half of the face.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vasa.audio import load_audio
from vasa.controls import Controls
from vasa.data.prepare_video import audio_source
from vasa.evaluation.pictures import label, save_png, tile
from vasa.latents import FPS, SAMPLE_RATE
from vasa.media import iter_video_frames
from vasa.pipeline import TalkingHead

SIZE = 256
SHARES = (0.0, 0.75, 1.0)


def lower_face(image: np.ndarray) -> np.ndarray:
    return tile(image, SIZE)[100:256, 40:216]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("video", type=Path, help="a talking clip of a speaker the model never saw")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--seconds", type=float, default=4.0, help="how much of the clip to show")
    args = parser.parse_args(argv)
    frames = list(iter_video_frames(args.video, FPS))
    waveform = load_audio(audio_source(args.video))[: int(args.seconds * SAMPLE_RATE)]
    head = TalkingHead.from_pretrained("default", size=SIZE)
    head.set_source(frames[0])
    last = min(len(frames), len(waveform) * FPS // SAMPLE_RATE) - 2
    pick = np.linspace(10, last, 8).astype(int)
    rows = [np.concatenate([lower_face(frames[i]) for i in pick], axis=1)]
    for share in SHARES:
        made = list(head.frames(waveform, Controls(mouth_readout=share)))
        rows.append(np.concatenate([lower_face(made[i]) for i in pick], axis=1))
    names = ["real (its own framing)"] + [f"read-out share {s:g}" + (" (shipped)" if s == 0.75 else "")
                                          for s in SHARES]
    picture = np.concatenate([label(row, name) for row, name in zip(rows, names)], axis=0)
    print(f"wrote {save_png(args.out, picture)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
