"""Prepared records with other speech features: the same tracked motion, the audio encoded again.

    python scripts/reencode_audio.py DATA NEW --clips ../shared/media/train \
        --audio-encoder whisper-base --audio-layers 3 --audio-schedule 0.08 1 0.04

Tracking is what costs in `vasa prepare`; the speech features of a record can be made again from its
video's audio alone. NEW/records then holds the records of DATA with the new features (and NEW/prepare.json
the settings, as if `vasa prepare` had been run with them), so a model for another encoder or window
schedule (the live model's short windows) trains on the same frames. Records made with
`--av-sync correct` are refused: their audio was shifted before encoding.

`--av-sync-correct` also takes out each video's audio-visual offset where the record says it needs
correcting (measured by `vasa prepare`'s sync probe: 100 ms or more, clear peak), shifting the waveform
before encoding exactly as `vasa prepare --av-sync correct` does, so the new records are the ones that
command would have written.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm import tqdm

from vasa.audio import SAMPLE_RATE, VoiceActivity, load_audio, load_encoder
from vasa.data.prepare import PrepareConfig, _check_settings
from vasa.data.prepare_video import audio_source
from vasa.data.records import read_record, record_files, write_record
from vasa.data.sync import shift_waveform


def config_av_sync(settings: dict) -> str:
    return settings.get("av_sync", "report")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="folder written by `vasa prepare`")
    parser.add_argument("out", type=Path, help="new prepared folder")
    parser.add_argument("--clips", type=Path, required=True, help="the folder the videos were prepared from")
    parser.add_argument("--audio-encoder", default="whisper")
    parser.add_argument("--audio-layers", nargs="+", type=int)
    parser.add_argument("--audio-schedule", nargs=3, type=float, metavar=("HOP", "LEFT", "LOOKAHEAD"))
    parser.add_argument("--av-sync-correct", action="store_true",
                        help="shift out the offsets the records report (as vasa prepare --av-sync correct)")
    args = parser.parse_args(argv)
    settings = json.loads((args.data / "prepare.json").read_text())
    if settings.get("av_sync") == "correct":
        parser.error(f"{args.data} was prepared with --av-sync correct: its audio was shifted, prepare again instead")
    fields = set(asdict(PrepareConfig()))
    config = replace(PrepareConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in fields}),
                     audio_encoder=args.audio_encoder,
                     audio_layers=tuple(args.audio_layers) if args.audio_layers else None,
                     audio_schedule=tuple(args.audio_schedule) if args.audio_schedule else None,
                     av_sync="correct" if args.av_sync_correct else config_av_sync(settings))
    (args.out / "records").mkdir(parents=True, exist_ok=True)
    _check_settings(args.out, config)
    torch.set_num_threads(1)  # as vasa prepare encodes (a record must not depend on the thread count)
    encoder = load_encoder(config.encoder_spec, fps=config.fps)
    vad = VoiceActivity()
    for path in tqdm(record_files(args.data), desc="re-encode", unit="record"):
        target = args.out / "records" / path.name
        if target.exists():
            continue
        record = read_record(path)
        if record.segments:
            video = args.clips / (record.info.get("file") or record.source)
            waveform = load_audio(audio_source(video))
            sync = record.sync
            if args.av_sync_correct and sync is not None and sync["needs_correction"]:
                waveform = shift_waveform(waveform, sync["offset_frames"], config.fps, SAMPLE_RATE)
                sync = {**sync, "corrected": True}
            features = encoder.encode(waveform, vad=vad)
            record = replace(record, audio_encoder=config.encoder_spec, sync=sync, segments=[
                replace(s, audio=features.features[s.start_frame:s.start_frame + len(s)],
                        voice=features.voice[s.start_frame:s.start_frame + len(s)]) for s in record.segments])
        else:
            record = replace(record, audio_encoder=config.encoder_spec)
        write_record(target, record)
    print(f"wrote {len(record_files(args.out))} records with {config.encoder_spec} features to {args.out / 'records'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
