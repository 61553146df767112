"""Speed and memory of the audio front end on this CPU: real-time factor per encoder for 10 s and
10 min of audio, peak RSS, and streaming latency.

    python scripts/bench_audio.py [--durations 10 600] [--encoders whisper mel wav2vec2 vad whisper-layers=3]
                                  [--wav2vec2-dir DIR] [--media ../shared/media/audio]

RTF = compute seconds / audio seconds (below 1 is faster than real time). Each (encoder, duration)
runs in a fresh subprocess so `peak RSS` (ru_maxrss) is its own; `model RSS` is the RSS after the
encoder loaded, before any audio. The audio is the shared real clips looped to length (noise when the
folder is absent). Without --wav2vec2-dir, "wav2vec2" is the wav2vec2-base architecture (95M
parameters) with random weights: the speed of the real model, not its features. Streaming latency
= the schedule's worst-case algorithmic delay (hop + lookahead) + the mean compute of one window,
measured by pushing 20 ms chunks. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vasa.audio import SAMPLE_RATE, LogMelEncoder, VoiceActivity, WhisperEncoder, load_audio

DEFAULT_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media" / "audio"
STREAM_CHUNK_S = 0.02
STREAM_SECONDS = 10.0


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_audio(seconds: float, media: Path) -> np.ndarray:
    clips = [load_audio(p) for p in sorted(media.glob("*"))] if media.is_dir() else []
    if not clips:
        return (0.1 * np.random.default_rng(0).standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
    looped = np.concatenate(clips)
    return np.resize(looped, int(seconds * SAMPLE_RATE)).astype(np.float32)


def make_encoder(name: str, wav2vec2_dir: str | None):
    if name in ("whisper", "whisper-pad30"):
        return WhisperEncoder(pad_to_30s=name == "whisper-pad30")
    if name.startswith("whisper-layers="):  # the PyTorch encoder over the same weights, e.g. whisper-layers=3
        return WhisperEncoder(layers=tuple(int(k) for k in name.split("=", 1)[1].split("+")))
    if name == "mel":
        return LogMelEncoder()
    if name == "wav2vec2":
        from vasa.audio import TransformersEncoder

        if wav2vec2_dir is None:
            import torch
            from transformers import Wav2Vec2Config, Wav2Vec2Model

            torch.manual_seed(0)
            wav2vec2_dir = tempfile.mkdtemp(prefix="bench-wav2vec2-")
            Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(wav2vec2_dir)
        return TransformersEncoder(wav2vec2_dir)
    raise SystemExit(f"unknown encoder {name}")


def run_one(name: str, seconds: float, media: Path, wav2vec2_dir: str | None) -> dict:
    """In this process: load, time one offline encode (and a 20 ms-chunk stream), report JSON."""
    audio = test_audio(seconds, media)
    result = {"encoder": name, "seconds": seconds}
    if name == "vad":
        vad = VoiceActivity()
        result["model_rss_mb"] = rss_mb()
        start = time.perf_counter()
        vad.probabilities(audio)
        result["compute_s"] = time.perf_counter() - start
    else:
        encoder = make_encoder(name, wav2vec2_dir)
        encoder.encode(audio[: SAMPLE_RATE])  # warm-up
        result["model_rss_mb"] = rss_mb()
        start = time.perf_counter()
        features = encoder.encode(audio)
        result["compute_s"] = time.perf_counter() - start
        result["frames"], result["dim"] = features.features.shape
        if seconds <= STREAM_SECONDS:
            result.update(stream_latency(encoder, audio))
    result["rtf"] = result["compute_s"] / seconds
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def stream_latency(encoder, audio: np.ndarray) -> dict:
    stream, chunk = encoder.stream(), int(STREAM_CHUNK_S * SAMPLE_RATE)
    window_times = []
    for start in range(0, len(audio), chunk):
        begin = time.perf_counter()
        out = stream.push(audio[start : start + chunk])
        if len(out):
            window_times.append(time.perf_counter() - begin)
    stream.flush()
    compute_ms = 1000 * float(np.mean(window_times))
    return {"algorithmic_ms": stream.latency_ms, "window_compute_ms": compute_ms,
            "latency_ms": stream.latency_ms + compute_ms, "window_s": encoder.schedule.window_s(encoder.fps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[10.0, 600.0])
    parser.add_argument("--encoders", nargs="+", default=["whisper", "mel", "wav2vec2", "vad", "whisper-pad30"])
    parser.add_argument("--wav2vec2-dir", default=None)
    parser.add_argument("--media", type=Path, default=DEFAULT_MEDIA)
    parser.add_argument("--one", nargs=2, metavar=("ENCODER", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], float(args.one[1]), args.media, args.wav2vec2_dir)))
        return
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, python {sys.version.split()[0]}")
    print("| encoder | audio | compute (s) | RTF | model RSS (MB) | peak RSS (MB) | stream latency (ms) |")
    print("|---|---|---|---|---|---|---|")
    for name in args.encoders:
        for seconds in args.durations:
            if name == "whisper-pad30" and seconds > STREAM_SECONDS:
                continue  # 0.5 s per 0.4 s hop: a 10 min run would take 12 min
            command = [sys.executable, __file__, "--one", name, str(seconds), "--media", str(args.media)]
            if args.wav2vec2_dir:
                command += ["--wav2vec2-dir", args.wav2vec2_dir]
            r = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            latency = (f"{r['latency_ms']:.0f} = {r['algorithmic_ms']:.0f} + {r['window_compute_ms']:.0f}"
                       if "latency_ms" in r else "")
            print(f"| {name} | {seconds:g} s | {r['compute_s']:.2f} | {r['rtf']:.3f} | {r['model_rss_mb']:.0f} "
                  f"| {r['peak_rss_mb']:.0f} | {latency} |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
