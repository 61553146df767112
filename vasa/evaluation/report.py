"""The evaluation report: markdown tables, PNG plots and a JSON of every number.

Layout of OUT: report.md, metrics.json, img/{pose,mouth_energy,metric_bars,sanity,lipsync_offsets}.png.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from vasa.evaluation.measure import FPS, VideoMeasures, frame_rms

# the summary table: (key, header, digits, better) in the order of VASA-1's Tables 1-2, then ours
SUMMARY_COLUMNS = (
    ("syncnet_confidence", "SC ↑", 2, "higher"),
    ("syncnet_distance", "SD ↓", 2, "lower"),
    ("lipsync_score", "lip judge ↑", 3, "higher"),
    ("lipsync_confidence", "lip judge conf. ↑", 3, "higher"),
    ("capp", "CAPP ↑", 3, "higher"),
    ("pose_variation_deg", "ΔP °/frame", 3, "closer to real"),
    ("fvd25", "FVD25 ↓", 1, "lower"),
    ("fd_motion", "FD-motion ↓", 3, "lower"),
    ("mouth_correlation", "mouth r ↑", 3, "higher"),
    ("lip_distance", "lip dist ↓", 4, "lower"),
    ("mouth_audio_energy_r", "r(mouth, audio energy)", 3, "closer to real"),
    ("blinks_per_min", "blinks/min", 1, "closer to real"),
    ("jitter", "jitter ↓", 4, "lower"),
    ("identity_distance", "identity dist ↓", 3, "lower"),
)
BAR_METRICS = ("pose_variation_deg", "blinks_per_min", "mouth_audio_energy_r", "lipsync_score", "capp", "jitter")


def fmt(value, digits: int = 3) -> str:
    if isinstance(value, str):
        return "skipped" if value.startswith("skipped") else value
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(fmt(v, digits) for v in value) + ")"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{value:.{digits}f}"


def to_json(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


# --- plots -------------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    temporary = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(temporary, dpi=90, bbox_inches="tight")
    os.replace(temporary, path)
    _pyplot().close(fig)
    return path.name


def plot_poses(path: Path, pairs: list[tuple[VideoMeasures, VideoMeasures | None]]) -> str:
    """Yaw, pitch, roll over time: generated (solid) and real (dashed), one row per video."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(pairs), 3, figsize=(12, 2.2 * len(pairs)), squeeze=False)
    for row, (generated, real) in enumerate(pairs):
        for col, angle in enumerate(("yaw", "pitch", "roll")):
            ax = axes[row, col]
            for m, style, label in ((generated, "-", "generated"), (real, "--", "real")):
                if m is None:
                    continue
                t = np.arange(len(m.track)) / FPS
                ax.plot(t, m.track.pose[:, col] - m.track.pose[0, col], style, label=label)
            ax.set_title(f"{generated.name}: {angle}", fontsize=9)
            ax.set_xlabel("s", fontsize=8)
            ax.set_ylabel("degrees (from frame 0)", fontsize=8)
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_mouth_energy(path: Path, pairs: list[tuple[VideoMeasures, VideoMeasures | None]]) -> str:
    """Mouth opening of generated and real frames beside the audio energy (RMS per frame)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(pairs), 1, figsize=(12, 2.4 * len(pairs)), squeeze=False)
    for row, (generated, real) in enumerate(pairs):
        ax = axes[row, 0]
        t = np.arange(len(generated.track)) / FPS
        ax.plot(t, generated.track.mouth(), label="generated mouth opening")
        if real is not None:
            ax.plot(np.arange(len(real.track)) / FPS, real.track.mouth(), "--", label="real mouth opening")
        energy = ax.twinx()
        energy.fill_between(t, frame_rms(generated.waveform, len(t)), color="0.6", alpha=0.35, label="audio RMS")
        energy.set_yticks([])
        ax.set_title(generated.name, fontsize=9)
        ax.set_ylabel("canonical units", fontsize=8)
        if row == 0:
            ax.legend(fontsize=8, loc="upper left")
            energy.legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("s")
    fig.tight_layout()
    return _save(fig, path)


def plot_bars(path: Path, summary: dict) -> str:
    """Real vs generated for the metrics both rows have."""
    plt = _pyplot()
    keys = [k for k in BAR_METRICS if any(isinstance(summary[r].get(k), float) for r in summary)]
    fig, axes = plt.subplots(1, len(keys), figsize=(2.7 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        names = [r for r in summary if isinstance(summary[r].get(key), float)]
        colours = ["0.45" if r == "real video" else "0.75" if r.startswith("real") else "tab:blue" for r in names]
        ax.bar(range(len(names)), [summary[r][key] for r in names], color=colours)
        ax.axhline(0.0, color="k", linewidth=0.6)
        labels = [r.replace("real video, audio shifted ", "real,\naudio\nshifted ").replace(" (", "\n(") for r in names]
        ax.set_xticks(range(len(names)), labels, fontsize=7)
        ax.set_title(next(h for k, h, _, _ in SUMMARY_COLUMNS if k == key), fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_sanity(path: Path, sanity: dict, offsets: dict) -> str:
    """Judge score vs audio shift (CAPP and lip judge, real clips), CAPP vs pose scale (a contrastive CAPP
    only), lip judge per offset."""
    plt = _pyplot()
    scale = sanity.get("capp_pose_scale")  # contrastive CAPP only: a read-out judge's r does not see scale
    fig, axes = plt.subplots(1, 3 if scale else 2, figsize=(13 if scale else 9, 3), squeeze=False)
    for kind in ("capp", "lipsync"):
        rows = sanity.get(f"{kind}_shift")
        if rows:
            axes[0, 0].plot(list(rows), list(rows.values()), "o-", label=kind)
    axes[0, 0].set(title="real clips: score vs audio shift", xlabel="|shift| frames", ylabel="score")
    if axes[0, 0].lines:  # no real clips: nothing to label
        axes[0, 0].legend(fontsize=8)
    if scale:
        axes[0, 1].plot(list(scale), list(scale.values()), "o-")
        axes[0, 1].set(title="real clips: CAPP vs pose scale", xlabel="pose variation x", ylabel="CAPP")
    for name, curve in offsets.items():
        shifts = np.arange(len(curve)) - (len(curve) - 1) // 2
        axes[0, -1].plot(shifts, curve, "--" if name.startswith("real") else "-", label=name)
    axes[0, -1].set(title="lip judge score per audio offset", xlabel="offset (frames)", ylabel="score")
    if offsets:
        axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


# --- markdown --------------------------------------------------------------------------------------------
def summary_table(summary: dict) -> list[str]:
    columns = [c for c in SUMMARY_COLUMNS if any(c[0] in row for row in summary.values())]
    lines = ["| method | " + " | ".join(h for _, h, _, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for name, row in summary.items():
        lines.append(f"| {name} | " + " | ".join(fmt(row.get(k, "—"), d) for k, _, d, _ in columns) + " |")
    return lines


def per_video_table(videos: dict) -> list[str]:
    keys = ("mouth_correlation", "lip_distance", "lipsync_score", "lipsync_offset", "capp", "pose_variation_deg",
            "blinks_per_min", "jitter", "identity_distance")
    headers = {k: h for k, h, _, _ in SUMMARY_COLUMNS} | {"lipsync_offset": "lip judge offset"}
    lines = ["| video | row | " + " | ".join(headers[k] for k in keys) + " |", "|---|---|" + "---|" * len(keys)]
    for name, entry in videos.items():
        for row in ("generated", "real"):
            if row in entry:
                values = {**entry[row], **(entry.get("paired", {}) if row == "generated" else {})}
                lines.append(f"| {name} | {row} | " + " | ".join(fmt(values.get(k, "n/a")) for k in keys) + " |")
    return lines


def write_report(out: Path, results: dict, pairs: list[tuple[VideoMeasures, VideoMeasures | None]],
                 title: str, command: str) -> Path:
    """report.md, metrics.json and the plots in `out`."""
    img = out / "img"
    img.mkdir(parents=True, exist_ok=True)
    pictures = {"pose": plot_poses(img / "pose.png", pairs),
                "mouth": plot_mouth_energy(img / "mouth_energy.png", pairs),
                "bars": plot_bars(img / "metric_bars.png", results["summary"])}
    offsets = {}
    for name, entry in results["videos"].items():
        for row in ("generated", "real"):
            curve = entry.get(row, {}).get("lipsync_curve")
            if curve:
                offsets[f"{row} {name}"] = curve
    if results.get("sanity") or offsets:
        pictures["sanity"] = plot_sanity(img / "sanity.png", results.get("sanity", {}), offsets)
    lines = [f"# {title}", "", f"Produced by `{command}`.", ""]
    lines += results.get("preamble", [])
    lines += ["## Summary (means over videos)", ""] + summary_table(results["summary"]) + [""]
    if any(name.startswith("real video, audio shifted") for name in results["summary"]):
        lines += ["The shifted row is a negative control: the real videos with their audio rolled, so the "
                  "audio-dependent metrics show what out-of-sync looks like on the same clips.", ""]
    skipped = {k: v for k, v in results["skipped"].items()}
    if skipped:
        lines += ["Not computed: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + ".", ""]
    lines += ["![metric bars](img/" + pictures["bars"] + ")", "", "## Per video", ""] + per_video_table(results["videos"])
    lines += ["", "## Head pose over time", "", f"![pose](img/{pictures['pose']})", "",
              "## Mouth opening and audio energy", "", f"![mouth](img/{pictures['mouth']})", ""]
    if results.get("controls"):
        lines += ["## Controls (requested vs re-extracted)", "", "| request | measured | error |", "|---|---|---|"]
        for row in results["controls"]["rows"]:
            lines.append(f"| {row['kind']} {row['request']} | {fmt(row['measured'], 3)} | {fmt(row['error'], 3)} |")
        lines += ["", f"Mean gaze error {fmt(results['controls']['mean_gaze_error_deg'], 2)}°, mean head-distance "
                      f"error {fmt(results['controls']['mean_distance_error'], 3)}.", ""]
    if "sanity" in pictures:
        lines += ["## Judge sanity checks (real clips)", ""]
        sanity = results.get("sanity", {})
        for key, header, label in (("capp_shift", "audio shift (frames, either way)", "CAPP"),
                                   ("lipsync_shift", "audio shift (frames, either way)", "lip judge"),
                                   ("capp_pose_scale", "pose variation scale", "CAPP")):
            if key in sanity:
                rows = sanity[key]
                lines += [f"| {header} | " + " | ".join(fmt(k, 1) for k in rows) + " |",
                          "|---|" + "---|" * len(rows),
                          f"| {label} score | " + " | ".join(fmt(v, 3) for v in rows.values()) + " |", ""]
        lines += [f"![sanity](img/{pictures['sanity']})", ""]
    lines += ["## Definitions", ""] + [f"- **{k}**: {v}" for k, v in DEFINITIONS.items()] + [""]
    report = out / "report.md"
    write_atomic(report, "\n".join(lines))
    write_atomic(out / "metrics.json", json.dumps(to_json(results), indent=1) + "\n")
    return report


DEFINITIONS = {
    "SC / SD": "SyncNet confidence and distance (Chung & Zisserman 2016), the released protocol: offsets ±15 "
               "frames, SD = min mean embedding distance, SC = median - min (`vasa.metrics.syncnet`); needs weights",
    "lip judge": "our offline lip-sync judge (vasa/assets/judges.md): the shipped read-out judge scores each 0.6 s "
                 "window by the Pearson r of three lip measures (inner-lip gap, outer-lip height, mouth width) and "
                 "their ridge read-out from the speech features, a contrastive judge by the cosine of the two "
                 "embeddings; mean over windows at offset 0; conf. = best score over ±15 frame offsets - median; "
                 "offset = where the best is",
    "CAPP": "audio-pose score (VASA-1 Sec. 4.1) over 3 s windows, mean over windows: the shipped read-out judge's "
            "Pearson r of the head speed and its read-out from the speech, a contrastive judge's cosine of the "
            "pose and audio embeddings",
    "ΔP": "mean |frame-to-frame change| of yaw, pitch, roll (degrees) re-extracted from the frames",
    "FVD25": "Fréchet distance of I3D logits of 25-frame clips, real vs generated; needs weights",
    "FD-motion": "offline substitute: Fréchet distance of per-frame motion descriptors (head angles centred per "
                 "clip, their change, mouth and eye opening), real vs generated; it compares motion, not image quality",
    "mouth r": "Pearson r of the per-frame mouth opening, generated vs the real video of the same audio",
    "lip dist": "mean 2D distance of the 40 lip landmarks to the real video's (canonical units: outer eye corners "
                "1 apart), each clip's own mean lip shape removed",
    "r(mouth, audio energy)": "Pearson r of the mouth opening and the audio RMS per frame",
    "blinks/min": "dips of the eye opening below half its median lasting 1-10 frames, per minute",
    "jitter": "mean |second difference| of the canonical landmarks per frame (acceleration)",
    "identity dist": "dlib 128-d descriptor distance to the source portrait (< 0.6: same person), every 10th frame",
    "gaze / distance error": "|re-extracted eye-in-head gaze - request| (degrees); |portrait scale / frame scale - "
                             "requested distance|",
}
