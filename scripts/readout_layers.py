"""Which layers of Whisper base feed the mouth read-out best, on speakers the fit never saw.

    python scripts/readout_layers.py DATA --split data/corpus_split.json --clips ../shared/media/train \
        [--sets 3 2 4 5 6 1 2+3 3+4 2+3+4] [--cache layers.npz] [--audio-schedule HOP LEFT LOOKAHEAD]

DATA: records written by `vasa prepare ... --audio-encoder whisper-base --audio-layers 3 --av-sync correct`.
`--audio-schedule` encodes the speech in other windows than the records' (`--pad-to-30s`: each window
padded with silence to 30 s, as Whisper was trained); the records' frames and targets stay the same.

Every record's speech is encoded once with all six blocks' outputs (offsets taken out where the record
says so; the layer-3 part is checked against the record's own features where the windows are the same),
then for each set of layers the read-out (`vasa.motion.readout`: frames t-4..t+4, ridge) is scored by
5-fold cross-validation over the training speakers (strengths 1, 3, 10) and, fitted on all of them at the
best strength, on the held-out speakers: r of the mouth opening, mean over speakers. Layer 3 alone is
also scored at its full 512 dimensions; every other set is first projected to 256 dimensions per layer
(PCA on the training speakers) so that the fits stay the same size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vasa.audio import SAMPLE_RATE, VoiceActivity, load_audio, load_encoder
from vasa.audio.encoders import encoder_spec
from vasa.audio.streaming import WindowSchedule
from vasa.data.prepare_video import audio_source
from vasa.data.records import read_record, record_files
from vasa.data.splits import load_split
from vasa.data.sync import shift_waveform
from vasa.face.mesh.model import FaceModel
from vasa.face.mesh.space import MeshMotionSpace
from vasa.motion.readout import CONTEXT, stack_context

BLOCKS = 6  # Whisper base
WIDTH = 512
SPEC_KEY = "__encoder__"  # the windows a --cache was encoded with


def encode_all(data: Path, clips: Path, cache: Path | None, schedule: WindowSchedule | None = None,
               pad_to_30s: bool = False) -> dict[str, np.ndarray]:
    layers = tuple(range(1, BLOCKS + 1))
    spec = encoder_spec("whisper-base", schedule, layers) + (" padded to 30 s" if pad_to_30s else "")
    if cache is not None and cache.exists():
        stored = dict(np.load(cache))
        made_with = str(stored.pop(SPEC_KEY, encoder_spec("whisper-base", None, layers)))  # older caches
        if made_with != spec:
            raise SystemExit(f"{cache} holds features of {made_with}, not {spec}: give another --cache")
        return stored
    encoder = load_encoder(encoder_spec("whisper-base", schedule, layers), fps=25.0)
    encoder.pad_to_30s = pad_to_30s
    settings = json.loads((data / "prepare.json").read_text())
    records_schedule = WindowSchedule(*settings["audio_schedule"]) if settings.get("audio_schedule") else None
    check = records_schedule == schedule and settings.get("audio_layers") == [3] and not pad_to_30s
    vad, out = VoiceActivity(), {}
    for path in record_files(data):
        record = read_record(path)
        wave = load_audio(audio_source(next(clips.rglob(record.source))))
        if record.sync and record.sync.get("corrected"):
            wave = shift_waveform(wave, record.sync["offset_frames"], record.fps, SAMPLE_RATE)
        features = encoder.encode(wave, vad=vad).features
        for j, segment in enumerate(record.segments):
            part = features[segment.start_frame:segment.start_frame + len(segment)]
            layer3 = part[:, 2 * WIDTH:3 * WIDTH]
            if check and len(segment) and not np.allclose(layer3, segment.audio, atol=1e-2):
                raise SystemExit(f"{record.source}: layer 3 differs from the record's features")
            out[f"{path.stem}__{j}"] = part.astype(np.float16)
        print(f"  encoded {record.source}", flush=True)
    if cache is not None:
        np.savez(cache, **out, **{SPEC_KEY: np.array(spec)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--clips", type=Path, required=True)
    parser.add_argument("--sets", nargs="+", default=["3", "2", "4", "5", "6", "1", "2+3", "3+4", "2+3+4"])
    parser.add_argument("--cache", type=Path, help="keep the encoded layers here (about 230 MB for the corpus)")
    parser.add_argument("--audio-schedule", type=float, nargs=3, metavar=("HOP", "LEFT", "LOOKAHEAD"),
                        help="encoder windows in seconds (default: the encoder's default schedule)")
    parser.add_argument("--pad-to-30s", action="store_true", help="pad every window with silence to 30 s")
    args = parser.parse_args(argv)
    schedule = WindowSchedule(*args.audio_schedule) if args.audio_schedule else None
    layers = encode_all(args.data, args.clips, args.cache, schedule, args.pad_to_30s)
    model = FaceModel.load()
    mouth = model.group_mask("mouth")
    opening = model.mouth_opening(model.mean_shape[None] + model.basis) - model.mouth_opening(model.mean_shape)
    space, split = MeshMotionSpace(model), load_split(args.split)
    segments = []  # speaker, held out, (T, 6, 512) features, mouth targets, real opening
    for path in record_files(args.data):
        record = read_record(path)
        for j, s in enumerate(record.segments):
            if len(s):
                reference = space.segment_reference(s.pose, s.dynamics, s.gaze)
                segments.append((record.speaker, split.holds_out(record.speaker),
                                 layers[f"{path.stem}__{j}"].reshape(len(s), BLOCKS, WIDTH),
                                 (s.dynamics - reference.dynamics)[:, mouth], s.dynamics @ opening))
    train = [s for s in segments if not s[1]]
    held = [s for s in segments if s[1]]
    speakers = sorted({s[0] for s in train})
    np.random.default_rng(0).shuffle(speakers)
    folds = [set(speakers[k::5]) for k in range(5)]
    projections = {}
    for k in range(1, BLOCKS + 1):
        sample = np.concatenate([s[2][::3, k - 1].astype(np.float32) for s in train])
        _, _, vt = np.linalg.svd(sample - sample.mean(0), full_matrices=False)
        projections[k] = vt[:256].T

    def features(s, chosen, project):
        if not project:
            return s[2][:, [k - 1 for k in chosen]].astype(np.float32).reshape(len(s[2]), -1)
        return np.concatenate([s[2][:, k - 1].astype(np.float32) @ projections[k] for k in chosen], 1)

    def sums(group, chosen, project):
        n, sx, sxx, sxy, sy = 0, 0.0, 0.0, 0.0, 0.0
        for s in group:
            x = stack_context(features(s, chosen, project), CONTEXT).astype(np.float64)
            n, sx, sxx, sxy, sy = n + len(x), sx + x.sum(0), sxx + x.T @ x, sxy + x.T @ s[3], sy + s[3].sum(0)
        return np.array([n, sx, sxx, sxy, sy], dtype=object)

    def fit(stats, strength):
        n, sx, sxx, sxy, sy = stats
        mu, ym = sx / n, sy / n
        covariance = sxx / n - np.outer(mu, mu)
        sd = np.sqrt(np.clip(np.diag(covariance), 0, None)) + 1e-6
        weights = np.linalg.solve(covariance / np.outer(sd, sd) + strength * np.eye(len(sd)),
                                  (sxy / n - np.outer(mu, ym)) / sd[:, None])
        return mu, sd, weights

    def score(group, chosen, project, fitted):
        mu, sd, weights = fitted
        by_speaker = {}
        for s in group:
            predicted = ((stack_context(features(s, chosen, project), CONTEXT) - mu) / sd) @ weights @ opening[mouth]
            if np.std(s[4]) > 0 and np.std(predicted) > 0:
                by_speaker.setdefault(s[0], []).append(np.corrcoef(predicted, s[4])[0, 1])
        values = [np.mean(v) for v in by_speaker.values()]
        return float(np.mean(values)), float(np.median(values))

    print("| layers | dims per layer | CV strength 1 / 3 / 10 | held-out mean (median) |\n|---|---|---|---|")
    for name, project in [("3", False)] + [(name, True) for name in args.sets]:
        chosen = tuple(int(k) for k in name.split("+"))
        parts = [sums([s for s in train if s[0] in fold], chosen, project) for fold in folds]
        total = sum(parts[1:], parts[0])
        cv = {}
        for strength in (1.0, 3.0, 10.0):
            cv[strength] = np.mean([score([s for s in train if s[0] in fold], chosen, project, fit(total - part, strength))[0]
                                    for fold, part in zip(folds, parts)])
        best = max(cv, key=cv.get)
        mean, median = score(held, chosen, project, fit(total, best))
        print(f"| {name} | {256 if project else WIDTH} | " + " / ".join(f"{v:.3f}" for v in cv.values())
              + f" | {mean:.3f} ({median:.3f}) |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
