"""Robustness of `vasa generate` (scripts/eval_generate.py, part c): audio files in other languages and
singing, 1 s of audio, silence, a portrait with the mouth open, and a long run's wall time and memory.

In an audio file the mouth should follow the loudness (`mouth_energy_r`) and stay closed in its silent
stretches: frames quieter than SILENCE_RMS_FRACTION of the file's 95th-percentile RMS (`frame_rms`) in runs
of at least SILENCE_MIN_FRAMES, the mouth closing at the start and opening for the next word not judged.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from vasa.evaluation.measure import FPS, SAMPLE_RATE, frame_rms, mouth_energy_r
from vasa.metrics.landmarks import Track, measure_crops

SILENCE_RMS_FRACTION = 0.05  # a frame is silent below this fraction of the file's 95th-percentile RMS ...
SILENCE_MIN_FRAMES = 12  # ... in a run at least this long (0.48 s); its first SILENCE_SKIP_FRAMES (the
SILENCE_SKIP_FRAMES = (6, 3)  # mouth closing) and last frames (opening for the next word) are not judged
MOUTH_CLOSED_TOLERANCE = 0.02  # canonical units above the portrait's rest opening that still count as closed
SHORT_AUDIO_S = 1.0
SILENCE_S = 3.0


def silent_frames(rms: np.ndarray) -> np.ndarray:
    """Frames inside silent stretches (quiet for >= SILENCE_MIN_FRAMES), SILENCE_SKIP_FRAMES trimmed at the ends."""
    quiet = np.concatenate([[False], rms < SILENCE_RMS_FRACTION * np.percentile(rms, 95), [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(int)))
    inside = np.zeros(len(rms), bool)
    for start, end in zip(edges[::2], edges[1::2]):
        if end - start >= SILENCE_MIN_FRAMES:
            inside[start + SILENCE_SKIP_FRAMES[0]:end - SILENCE_SKIP_FRAMES[1]] = True
    return inside


def generate_and_measure(head, waveform: np.ndarray) -> tuple[list[np.ndarray], Track, float, float]:
    """(frames, their track, the portrait's own mouth opening, seconds to generate), seed 0."""
    from vasa.pipeline import Controls

    start = time.perf_counter()
    frames = list(head.frames(waveform, Controls(seed=0)))
    seconds = time.perf_counter() - start
    track = measure_crops(head.face.model, [head.source.appearance.image] + frames)
    return frames, track[1:], float(track.mouth()[0]), seconds


def audio_file_row(name: str, waveform: np.ndarray, frames: list, track: Track, rest: float, seconds: float) -> dict:
    """One audio file's figures: frame count, r(mouth, RMS), the mouth in its silent and speaking frames."""
    mouth = track.mouth()
    silent = silent_frames(frame_rms(waveform, len(frames))) & track.found
    row = {"file": name, "audio_s": len(waveform) / SAMPLE_RATE, "frames": len(frames),
           "expected_frames": round(len(waveform) / SAMPLE_RATE * FPS), "frames_found": int(track.found.sum()),
           "mouth_rms_correlation": mouth_energy_r(track, waveform),
           "rest_opening": rest, "silent_frames": int(silent.sum()),
           "max_opening_in_silence": float(mouth[silent].max()) if silent.any() else None,
           "max_opening_in_speech": float(mouth[track.found & ~silent].max()),
           "generate_s": seconds}
    closed = mouth[silent] <= rest + MOUTH_CLOSED_TOLERANCE
    row["closed_fraction_in_silence"] = float(closed.mean()) if silent.any() else None
    row["mouth_closed_in_silence"] = bool(closed.all()) if silent.any() else None
    return row


def robustness(head, media: Path, clip_audio: np.ndarray, progress: Callable[[str], None] | None = None
               ) -> tuple[dict, list[tuple[np.ndarray, str]]]:
    """Audio files (MEDIA/audio/*.wav), 1 s of `clip_audio`, silence (on the demo portrait) and an open-mouth
    portrait (3 s of `clip_audio`): the figures and the frames worth showing, with their captions."""
    from skimage.data import astronaut

    from vasa.audio import load_audio
    from vasa.demo import demo_portrait
    from vasa.media import read_image

    head.set_source(read_image(demo_portrait()))
    out = {"portrait": "grace_hopper (matplotlib)", "audio_files": []}
    shown = []
    for path in sorted((media / "audio").glob("*.wav")):
        waveform = load_audio(path)
        frames, track, rest, seconds = generate_and_measure(head, waveform)
        row = audio_file_row(path.name, waveform, frames, track, rest, seconds)
        out["audio_files"].append(row)
        if progress is not None:
            progress(f"  {path.name}: {row['frames']} frames, r(mouth, rms) = {row['mouth_rms_correlation']:.3f}, "
                     f"closed in {row['closed_fraction_in_silence']} of {row['silent_frames']} silent frames")
        if "singing" in path.name:
            shown.append((frames[int(np.argmax(track.mouth()))], "singing\nwidest mouth"))
    frames, track, rest, seconds = generate_and_measure(head, clip_audio[:int(SHORT_AUDIO_S * SAMPLE_RATE)])
    out["one_second"] = {"frames": len(frames), "expected_frames": round(SHORT_AUDIO_S * FPS),
                         "generate_s": seconds, "max_opening": float(track.mouth()[track.found].max())}
    frames, track, rest, seconds = generate_and_measure(head, np.zeros(int(SILENCE_S * SAMPLE_RATE), np.float32))
    mouth = track.mouth()[track.found]
    out["silence"] = {"seconds": SILENCE_S, "frames": len(frames), "rest_opening": rest,
                      "max_opening": float(mouth.max()), "mean_opening": float(mouth.mean()),
                      "max_head_change_deg": float(np.abs(track.pose[track.found, :3] - track.pose[0, :3]).max()),
                      "mouth_stays_closed": bool(mouth.max() <= rest + MOUTH_CLOSED_TOLERANCE)}
    shown.append((frames[len(frames) // 2], "silence\nmiddle frame"))
    head.set_source(astronaut())
    frames, track, rest, seconds = generate_and_measure(head, clip_audio[:int(SILENCE_S * SAMPLE_RATE)])
    mouth = track.mouth()
    out["open_mouth_portrait"] = {"portrait": "astronaut (skimage)", "portrait_opening": rest,
                                  "first_frame_opening": float(mouth[0]), "frames": len(frames),
                                  "min_opening": float(mouth[track.found].min()),
                                  "max_opening": float(mouth[track.found].max()), "runs": True}
    shown += [(head.source.appearance.image, "astronaut\nportrait"), (frames[0], "astronaut\nframe 0"),
              (frames[int(np.argmax(np.where(track.found, mouth, -1)))], "astronaut\nwidest mouth")]
    return out, shown


def timed_generate(model_path: Path, size: int, wav: str | Path, mp4: str | Path) -> dict:
    """`generate` of a speech file on the demo portrait in this process: frames, wall time, real-time factor
    and the process's peak resident memory (run it in a fresh process for a clean peak)."""
    import resource

    from vasa.demo import demo_portrait
    from vasa.pipeline import Controls, TalkingHead

    head = TalkingHead.from_pretrained(model_path, size=size)
    head.set_source(demo_portrait())
    start = time.perf_counter()
    frames = head.generate(wav, mp4, Controls(seed=0), progress=False)
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"frames": frames, "generate_wall_s": wall, "real_time_factor": wall / (frames / FPS),
            "peak_rss_mb": peak_mb}
