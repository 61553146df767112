"""The blink-rate control, requested against re-measured: blinks a minute in rendered video.

    python scripts/bench_blinks.py [--seconds 60] [--portraits P ...] [--rates none 0 15 30]

Speech: the bundled demo speech, tiled to `--seconds`. For each portrait and rate (`none` = the motion
model's own blinks) the frames are generated at 256 px with the shipped model, the landmark tracker
reads them back (`vasa.metrics.landmarks`, as `vasa eval` does) and its blink counter counts them;
beside it, the blinks in the motion itself (lids below half their open gap for 1-10 frames).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np

from vasa.audio import load_audio
from vasa.latents import POSE_DIM
from vasa.metrics.landmarks import blink_rate, count_blinks, measure_crops
from vasa.pipeline import Controls, TalkingHead

DEMO_SPEECH = Path(__file__).resolve().parent.parent / "vasa" / "assets" / "demo_speech.wav"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--portraits", nargs="+",
                        default=[str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")])
    parser.add_argument("--rates", nargs="+", default=["none", "0", "15", "30"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    speech = load_audio(DEMO_SPEECH)
    waveform = np.tile(speech, int(np.ceil(args.seconds * 16000 / len(speech))))[:int(args.seconds * 16000)]
    head = TalkingHead.from_pretrained(size=256)
    model = head.face.model
    jacobian = np.stack([model.eye_opening(component) for component in model.basis], axis=1)  # (2, K)
    print("| portrait | requested / min | in the motion / min | re-measured on the frames / min |")
    print("|---|---|---|---|")
    for portrait in args.portraits:
        head.set_source(portrait)
        rest = model.eye_opening(head.source.appearance.identity)
        for rate in args.rates:
            controls = Controls(seed=args.seed, blinks=None if rate == "none" else float(rate))
            x = np.concatenate(list(head.motion(waveform, controls)))
            motion = count_blinks((rest + x[:, POSE_DIM:] @ jacobian.T).mean(axis=1)) / (len(x) / 25 / 60)
            track = measure_crops(model, head.render(x))
            print(f"| {Path(portrait).stem} | {rate} | {motion:.1f} | {blink_rate(track):.1f} |", flush=True)


if __name__ == "__main__":
    main()
