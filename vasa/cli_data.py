"""`vasa prepare` and `vasa split`: talking videos -> the training records every trainer reads, and the
speakers held out for validation (docs/training.md)."""

from __future__ import annotations

from pathlib import Path

from vasa.cli_options import add_face_options
from vasa.errors import VasaError


def add_prepare(commands) -> None:
    p = commands.add_parser("prepare", help="talking-face videos -> training records for `vasa train`",
                            description="Track the face, extract motion, gaze, distance, emotion, speech features "
                                        "and voice activity from talking videos; split at shot cuts; drop "
                                        "stretches with no face, several people or tracking failures. Resumable.")
    p.add_argument("videos", nargs="+", type=Path, help="video files or folders of videos")
    p.add_argument("out", type=Path, help="output folder (records go to OUT/records)")
    p.add_argument("--shard", default="0/1", help="i/n: prepare only every n-th video starting at i (job arrays)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes preparing videos side by side on this machine (default 1; records are the same)")
    p.add_argument("--manifest", type=Path,
                   help="tab-separated file with a `file` column and a `speaker` label per video (default: a "
                        "MANIFEST.tsv at the root of a folder given; docs/training.md)")
    p.add_argument("--audio-encoder", default="whisper", choices=["whisper", "whisper-base", "wav2vec2", "mel"])
    p.add_argument("--audio-model", type=Path, help="local model folder for wav2vec2/HuBERT (or another Whisper)")
    p.add_argument("--audio-schedule", nargs=3, type=float, metavar=("HOP", "LEFT", "LOOKAHEAD"),
                   help="encoder windows in seconds (default: the encoder's); a model trained on these records "
                        "runs on the same windows, e.g. 0.08 1 0.04 for the live model (docs/serve.md)")
    p.add_argument("--audio-layers", nargs="+", type=int, metavar="K",
                   help="Whisper encoder layers to take features from, concatenated (default: its output; "
                        "0 = stem, 4 = output for tiny.en; docs/audio.md)")
    p.add_argument("--min-frames", type=int, default=25, help="shortest segment kept, in frames (default 25)")
    p.add_argument("--overwrite", action="store_true", help="prepare videos again even if their record exists")
    p.add_argument("--retry-failed", action="store_true",
                   help="prepare again the videos that gave no segment last time (videos that were unusable, or "
                        "changed since their record was made, are tried again anyway)")
    p.add_argument("--frames", type=int, default=0, metavar="SIZE",
                   help="also store the tracked face crops, SIZE x SIZE, in OUT/frames (for `vasa train face`)")
    p.add_argument("--av-sync", default="report", choices=["correct", "report", "off"],
                   help="each video's audio-visual offset: measure it and list those of 100 ms or more "
                        "(report, the default), measure it and take those out (correct), or neither (off)")
    p.add_argument("--sync-probe", type=Path, help="the speech-to-mouth probe that finds offsets "
                                                   "(default: the shipped one; scripts/make_sync_probe.py fits one)")
    add_face_options(p)
    p.set_defaults(run=_run_prepare)


def _run_prepare(args) -> None:
    from vasa.data.prepare import PrepareConfig, parse_shard, prepare

    config = PrepareConfig(audio_encoder=args.audio_encoder, min_frames=args.min_frames,
                           audio_schedule=tuple(args.audio_schedule) if args.audio_schedule else None,
                           audio_layers=tuple(args.audio_layers) if args.audio_layers else None,
                           audio_model=str(args.audio_model) if args.audio_model else None, frames=args.frames,
                           face=args.face, face_checkpoint=str(args.face_checkpoint) if args.face_checkpoint else None,
                           av_sync=args.av_sync, sync_probe=str(args.sync_probe) if args.sync_probe else None)
    report = prepare(args.videos, args.out, config, parse_shard(args.shard), args.overwrite,
                     workers=args.workers, manifest=args.manifest, retry_failed=args.retry_failed)
    print(f"{report['videos']} videos -> {report['segments']} segments, {report['frames']} frames "
          f"({report['frames'] / config.fps:.1f} s) in {args.out / 'records'}; data card: {args.out / 'DATA_CARD.md'}")
    for name, why in sorted(report["unusable"].items()):
        print(f"  unusable: {name}: {why}")
    for reason, frames in sorted(report["dropped_frames"].items()):
        print(f"  dropped {frames} frames: {reason}")
    sync = report["sync"]
    if sync["measured"]:
        corrected = ", ".join(f"{name} {ms:+.0f} ms" for name, ms in sorted(sync["corrected"].items()))
        print(f"  audio-visual offset measured on {sync['measured']} videos" + (f"; corrected: {corrected}" if corrected else ""))
    for name, ms in sorted(sync["large"].items()):
        print(f"  {name}: audio-visual offset {ms:+.0f} ms (--av-sync correct takes it out)")
    if sync["unclear"]:
        print(f"  no clear sync between mouth and speech (a dub, a silent speaker?): {', '.join(sync['unclear'])}")
    if not report["frames"]:
        raise VasaError("nothing usable was found in these videos (see the reasons above); no records to train on")


def add_split(commands) -> None:
    p = commands.add_parser("split", help="choose validation speakers: a split file every trainer reads",
                            description="Hold out whole speakers (the manifest's speaker labels in the records): "
                                        "every clip of a validation speaker is kept out of training. Chosen per "
                                        "source and language, in proportion, with a seed (docs/training.md).")
    p.add_argument("data", type=Path, help="folder written by `vasa prepare` (or its records/)")
    p.add_argument("--speakers", type=int, default=20, help="validation speakers (default 20)")
    p.add_argument("--seed", type=int, default=0, help="which speakers within each group (default 0)")
    p.add_argument("--include", nargs="+", default=[], metavar="SPEAKER",
                   help="speakers that must be among the validation ones (e.g. one per language to report)")
    p.add_argument("--out", type=Path, required=True, help="the split file to write (JSON)")
    p.set_defaults(run=_run_split)


def _run_split(args) -> None:
    from vasa.data.records import read_meta, record_files, speaker_of
    from vasa.data.splits import make_split, write_split

    metas = [read_meta(f) for f in record_files(args.data)]
    split = make_split(metas, args.speakers, args.seed, tuple(args.include))
    write_split(args.out, split, metas, args.seed)
    held = sum(m["frames"] / m["fps"] for m in metas if split.holds_out(speaker_of(m)))
    total = sum(m["frames"] / m["fps"] for m in metas)
    print(f"wrote {args.out}: {len(split.validation)} validation speakers, {held / 60:.1f} of {total / 60:.1f} min")
