"""How far the speech features of the training speakers predict an unseen speaker's mouth, and what limits it.

    vasa prepare ../shared/media/clips /tmp/prep
    python scripts/lipsync_ceiling.py /tmp/prep [--clips ../shared/media/clips] [--holdout ... | --split FILE]

The yardstick is the ridge regression of scripts/data_facts.py (fact 3): speech features of frames
t-4, t-2, ..., t+4 -> the mouth opening of frame t, fitted on the training records, Pearson r on each
held-out one. No motion model is involved. It is run
1. on less of the training data (a fraction of every training segment, from four offsets): the
   learning curve;
2. with each training clip left out;
3. with --clips (the videos the records came from; their audio is re-encoded, about a minute each):
   vocal-tract-length perturbation of the training audio (the mel filters stretched by alpha, as if
   the speaker's vocal tract were shorter or longer), per-segment feature standardisation, and other
   encoder window schedules, and other layers of the Whisper encoder (`vasa.audio.whisper_layers`),
   each scored on the held-out clips and, to choose among them without the held-out clips, by
   leaving each training clip out in turn (mean r over the training clips).
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from vasa.audio import load_audio, load_encoder, mel
from vasa.audio.encoders import parse_encoder_spec
from vasa.audio.streaming import WindowSchedule
from vasa.data.prepare_video import audio_source
from vasa.data.records import read_record, record_files
from vasa.data.splits import load_split
from vasa.errors import VasaError
from vasa.evaluation.ridge import Part, held_out_r, left_out_r
from vasa.face.mesh.model import FaceModel

FRACTIONS = (0.125, 0.25, 0.5, 0.75, 1.0)
OFFSETS = 4  # starting points averaged for each fraction below 1
MIN_FRAMES = 20  # shortest cut of a segment on the learning curve
VTLP_ALPHAS = (0.9, 0.95, 1.05, 1.1)  # frequency stretches of the training audio, added to the unstretched
WHISPER_LAYERS = ((4,), (3,), (2,), (1,), (0,), (3, 4), (2, 4))  # 4 = the encoder's output (tiny.en)
SCHEDULES = (WindowSchedule(0.4, 6.0, 1.0), WindowSchedule(4.0, 8.0, 2.0))  # longer windows than the default


def read_parts(prepared: Path, clips: Path | None, by_speaker: bool = False) -> tuple[list[Part], str, float]:
    """Every segment as a Part, named by its record (or with `by_speaker` by its speaker label)."""
    model = FaceModel.load()
    parts, spec, fps = [], None, 25.0
    for path in record_files(prepared):
        record = read_record(path)
        spec, fps = spec or record.audio_encoder, record.fps
        for segment in record.segments:
            mouth = model.mouth_opening(model.mean_shape + model.decode_dynamics(segment.dynamics))
            source = audio_source(clips / (record.info.get("file") or record.source)) if clips is not None else None
            name = record.speaker if by_speaker else path.stem.rsplit("-", 1)[0]
            parts.append(Part(name, segment.audio, mouth, source, segment.start_frame))
    return parts, spec, fps


def stretched_filters(alpha: float) -> torch.Tensor:
    """Mel filters that read frequency f where the unstretched ones read f * alpha."""
    filters = mel.mel_filters()
    hz = np.linspace(0.0, mel.SAMPLE_RATE / 2, filters.shape[1])
    source = np.clip(hz * alpha, 0.0, hz[-1])
    return torch.from_numpy(np.stack([np.interp(source, hz, row) for row in filters]).astype(np.float32))


@contextlib.contextmanager
def mel_stretch(alpha: float):
    """Encoders built on `vasa.audio.mel` use the stretched filters inside the block."""
    saved = dict(mel._FILTERS)  # the module's filter cache: the one place its filters come from
    mel._FILTERS[mel.N_MELS] = stretched_filters(alpha)
    try:
        yield
    finally:
        mel._FILTERS.clear()
        mel._FILTERS.update(saved)


def reencoded(parts: list[Part], encoder, alpha: float = 1.0) -> list[Part]:
    waveforms: dict[Path, np.ndarray] = {}
    out = []
    for p in parts:
        if p.source not in waveforms:
            with mel_stretch(alpha) if alpha != 1.0 else contextlib.nullcontext():
                waveforms[p.source] = encoder.encode(load_audio(p.source)).features
        features = waveforms[p.source][p.start_frame:p.start_frame + len(p.mouth)]
        out.append(replace(p, features=features))
    return out


def line(label: str, scores: dict[str, float]) -> str:
    if len(scores) > 4:  # many held-out speakers: their distribution
        values = np.array(list(scores.values()))
        return (f"  {label:52s} mean {values.mean():.3f}  median {np.median(values):.3f}  "
                f"q25-q75 {np.quantile(values, 0.25):.3f}-{np.quantile(values, 0.75):.3f}  ({len(values)} held out)")
    return f"  {label:52s} " + "  ".join(f"{clip} {r:.3f}" for clip, r in scores.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prepared", type=Path, help="folder written by `vasa prepare`")
    parser.add_argument("--holdout", nargs="+", default=["retalking_2", "sadtalker_WDA_AOC_000"])
    parser.add_argument("--split", type=Path, help="a speaker split file (`vasa split`): hold out its speakers "
                                                   "instead of --holdout; figures per speaker")
    parser.add_argument("--clips", type=Path, help="the videos of the records: re-encode their audio (part 3)")
    args = parser.parse_args(argv)
    parts, spec, fps = read_parts(args.prepared, args.clips, by_speaker=args.split is not None)
    held_out = load_split(args.split).validation if args.split else set(args.holdout)
    train = [p for p in parts if p.clip not in held_out]
    held = [p for p in parts if p.clip in held_out]
    if not train or not held:
        print("needs training and held-out records (see --holdout)")
        return 1
    frames = sum(len(p.mouth) for p in train)
    print(f"ridge, speech features -> mouth opening; held-out r (features: {spec})")
    print("1. learning curve (fraction of every training segment):")
    for fraction in FRACTIONS:
        runs = []
        for offset in np.linspace(0.0, 1.0 - fraction, OFFSETS if fraction < 1 else 1):
            cut = []
            for p in train:
                start = int(round(offset * len(p.mouth)))
                stop = start + max(MIN_FRAMES, int(round(fraction * len(p.mouth))))
                cut.append(replace(p, features=p.features[start:stop], mouth=p.mouth[start:stop]))
            runs.append(held_out_r(cut, held))
        mean = {clip: float(np.mean([r[clip] for r in runs])) for clip in runs[0]}
        print(line(f"{fraction:>5.3f} = {round(fraction * frames)} frames ({fraction * frames / fps:.0f} s)", mean))
    print("2. one training clip left out:")
    for clip in sorted({p.clip for p in train}):
        rest = [p for p in train if p.clip != clip]
        print(line(f"without {clip} ({sum(len(p.mouth) for p in train if p.clip == clip)} frames)",
                   held_out_r(rest, held)))
    if args.clips is None:
        return 0
    print("3. other features (audio re-encoded):")
    name, _, _ = parse_encoder_spec(spec)
    try:
        encoder = load_encoder(spec)
    except VasaError as error:
        print(f"part 3 needs the records' audio encoder: {error}")
        return 1
    base_train, base_held = reencoded(train, encoder), reencoded(held, encoder)
    print(line("as recorded, re-encoded", held_out_r(base_train, base_held)))
    stretched = base_train + [q for a in VTLP_ALPHAS for q in reencoded(train, encoder, a)]
    print(line(f"training audio also stretched by {', '.join(map(str, VTLP_ALPHAS))}",
               held_out_r(stretched, base_held)))
    print(line("each segment's features standardised", held_out_r(base_train, base_held, standardise_segments=True)))
    if name == "whisper":
        print("   Whisper encoder layers (0 = stem, 4 = output); last column: training clips left out in turn")
        for layers in WHISPER_LAYERS:
            encoder = load_encoder(name, layers=layers)
            layered_train = reencoded(train, encoder)
            print(line(f"layers {'+'.join(map(str, layers))}", held_out_r(layered_train, reencoded(held, encoder)))
                  + f"  left-out {left_out_r(layered_train):.3f}")
    for other in SCHEDULES:
        encoder = load_encoder(name, schedule=other)
        print(line(f"windows hop {other.hop_s:g} s, left {other.left_context_s:g} s, ahead {other.lookahead_s:g} s",
                   held_out_r(reencoded(train, encoder), reencoded(held, encoder))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
