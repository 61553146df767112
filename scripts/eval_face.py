"""Acceptance figures of the mesh face latent (`vasa.face.mesh.MeshFace`).

    python scripts/eval_face.py [--media ../shared/media] [--out docs/img] [--json docs/face_eval.json]

a. self-reconstruction: PSNR of decode(encode(image)) against the aligned crop, on the face hull;
b. same-identity reenactment of each real clip: the first frame's appearance driven by every later
   frame's own motion, compared with the real frame (PSNR, SSIM on the face box, lip-landmark
   distance), beside the "always show frame 0" baseline;
c. real | reenacted strips; d. an edit sheet (pose, blink, mouth, gaze) and its zoom;
e. a cross-identity sheet (one driver on several portraits: full, pose only, dynamics only), made
   the way `vasa reenact` does it (`retarget` from a driver reference, then `keep_physical`);
f. a mouth sheet zoomed on the lips: lips set to a range of openings on a closed-mouthed portrait,
   one that shows its teeth and, with the media, a wide-open one (the painted interior, `vasa.face.mesh.mouth`).

Prints markdown tables and writes every number to --json. Media-based parts are skipped when
the media folder is absent; the package photos (astronaut, Grace Hopper) always run.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from vasa.evaluation import pictures
from vasa.evaluation.pictures import TILE, header, label, tile
from vasa.face.landmarker import LandmarkDetector
from vasa.face.landmarks import track_video
from vasa.face.mesh import MeshFace, edits
from vasa.face.mesh.model import INNER_LIPS_LOWER, INNER_LIPS_UPPER, LEFT_EYE_CONTOUR, OUTER_LIPS, RIGHT_EYE_CONTOUR
from vasa.latents import Motion
from vasa.media import iter_video_frames, read_image
from vasa.metrics import face_mask, psnr, ssim
from vasa.reenact import driver_reference, retarget

REPO = Path(__file__).resolve().parents[1]
FPS = 25.0
SIZE = 512
BOX_PAD = 0.05  # face box = real landmarks' bounding box grown by this fraction per side
OUTER_EYE_CORNERS = (33, 263)  # inter-ocular distance for the mouth-landmark error
SELF_RECON_TARGET_DB = 35.0
STRIP_CLIPS = ("sadtalker_WDA_AOC_000.mp4", "retalking_2.mp4")
STRIP_FRAMES = 6
EDIT_PORTRAITS = ("hallo_6.jpg", "edtalk_leijun.png", "anitalker_einstein.png")
CROSS_PORTRAITS = ("hallo3_0001.jpg", "liveportrait_s9_monalisa.jpg", "dreamtalk_face3_rgba.png")
CROSS_DRIVER = "sadtalker_WDA_AOC_000.mp4"
CROSS_FRAMES = 5
CROSS_TILE = 192  # 10 rows x 6 columns: smaller tiles keep the PNG a few MB
MOUTH_OPENINGS = (0.0, 0.02, 0.05, 0.1, 0.16, 0.24)  # lip gap over the eye-corner distance
WIDE_OPEN_CLIP = "sadtalker_WDA_AOC_000.mp4"  # its first frame: mouth wide open, teeth and tongue


def lip_indices() -> np.ndarray:
    """The 40 lip landmarks (outer and inner contours: mediapipe's lip connection set)."""
    return np.array(sorted(set(OUTER_LIPS + INNER_LIPS_UPPER + INNER_LIPS_LOWER)))  # (40,)


def package_photos() -> dict[str, np.ndarray]:
    import matplotlib
    from skimage.data import astronaut

    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return {"astronaut (skimage)": astronaut(), "grace_hopper (matplotlib)": read_image(hopper)}


# --- a. self-reconstruction ----------------------------------------------------------------------
def self_reconstruction(face: MeshFace, images: dict[str, np.ndarray | Path]) -> list[dict]:
    rows = []
    for name, image in images.items():
        appearance, motion = face.encode(image)
        rendered = face.decode(appearance, motion)
        mask = face_mask(appearance.texture.source_points, appearance.size)  # (S, S)
        difference = np.abs(rendered.astype(int) - appearance.image.astype(int))
        value = psnr(rendered, appearance.image, mask)
        rows.append({"image": name, "psnr_face_db": value, "max_abs_diff": int(difference.max()),
                     "passes": value >= SELF_RECON_TARGET_DB})
    return rows


# --- b. same-identity reenactment -----------------------------------------------------------------
def face_box(points: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixels: landmark bounding box grown by BOX_PAD per side, inside the crop."""
    low, high = points[:, :2].min(axis=0) * size, points[:, :2].max(axis=0) * size
    pad = (high - low) * BOX_PAD
    x0, y0 = np.maximum(np.floor(low - pad), 0).astype(int)
    x1, y1 = np.minimum(np.ceil(high + pad), size).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


def reenact_clip(face: MeshFace, path: Path, max_frames: int, strip_frames: int) -> tuple[dict, list]:
    frames = list(itertools.islice(iter_video_frames(path, FPS), max_frames))
    start = time.perf_counter()
    tracked = track_video(frames, face.size)
    track_ms = (time.perf_counter() - start) * 1000 / len(frames)
    first = int(np.argmax(tracked.found))
    appearance = face.appearance_from_landmarks(tracked.first_frame, tracked.landmarks[first], tracked.crop)
    lips = lip_indices()
    # Frames the resampling to 25 fps repeated from the first one are not new motion: left out.
    used = [t for t in range(first + 1, len(frames))
            if tracked.found[t] and not np.array_equal(frames[t], frames[first])]
    show = set(np.linspace(0, len(used) - 1, strip_frames).round().astype(int).tolist())
    sums = {k: [] for k in ("psnr", "ssim", "mouth", "base_psnr", "base_ssim", "base_mouth", "decode_ms")}
    strip, openings = [], []  # (real, rendered) re-tracked mouth openings
    with LandmarkDetector() as detector:
        first_points = detector.landmarks(appearance.image)
        for i, t in enumerate(used):
            real = tracked.crop.apply(frames[t])
            start = time.perf_counter()
            rendered = face.decode(appearance, face.motion_from_landmarks(tracked.landmarks[t]))
            sums["decode_ms"].append((time.perf_counter() - start) * 1000)
            x0, y0, x1, y1 = face_box(tracked.landmarks[t], face.size)
            real_box = real[y0:y1, x0:x1]
            for prefix, image in (("", rendered), ("base_", appearance.image)):
                sums[prefix + "psnr"].append(psnr(image[y0:y1, x0:x1], real_box))
                sums[prefix + "ssim"].append(ssim(image[y0:y1, x0:x1], real_box))
            real_points = detector.landmarks(real)  # same (static) detector as for the renders
            rendered_points = detector.landmarks(rendered)
            sums["mouth"].append(None if real_points is None or rendered_points is None
                                 else lip_error_points(rendered_points, real_points, lips))
            if real_points is not None and rendered_points is not None:
                openings.append([face.model.mouth_opening(face.model.canonicalize(p)[0])
                                 for p in (real_points, rendered_points)])
            if real_points is not None and first_points is not None:
                sums["base_mouth"].append(lip_error_points(first_points, real_points, lips))
            if i in show:
                strip.append((t, real, rendered, sums["psnr"][-1]))
    result = {"clip": path.name, "frames_used": len(used), "track_ms_per_frame": track_ms}
    for key, values in sums.items():
        values = [v for v in values if v is not None]
        result[key] = float(np.mean(values)) if values else None
    result["mouth_missed_frames"] = int(sum(v is None for v in sums["mouth"]))
    # the renderer's ceiling for lip sync: the re-tracked render's mouth opening against the real one's
    result["mouth_r"] = float(np.corrcoef(np.array(openings).T)[0, 1]) if len(openings) > 2 else None
    return result, strip


def lip_error_points(points: np.ndarray, real_points: np.ndarray, lips: np.ndarray) -> float:
    """Mean 2D distance of the lip landmarks (478, 3 -> lips) over the real outer-eye-corner distance."""
    iod = np.linalg.norm(real_points[OUTER_EYE_CORNERS[0], :2] - real_points[OUTER_EYE_CORNERS[1], :2])
    return float(np.linalg.norm(points[lips, :2] - real_points[lips, :2], axis=1).mean() / iod)


# --- drawing --------------------------------------------------------------------------------------
def save_png(path: Path, image: np.ndarray) -> None:
    pictures.save_png(path, image)
    print(f"wrote {path}")


def save_strip(path: Path, strip: list) -> None:
    top = [label(tile(real), f"real t={t}") for t, real, _, _ in strip]
    bottom = [label(tile(rendered), f"ours {value:.1f} dB") for _, _, rendered, value in strip]
    save_png(path, np.vstack([np.hstack(top), np.hstack(bottom)]))


# --- d. edits -------------------------------------------------------------------------------------
def edit_columns(face: MeshFace, appearance, motion: Motion) -> list[tuple[str, Motion]]:
    return [
        ("source", motion),
        ("yaw +20", edits.turn(motion, yaw=20)),
        ("yaw -20", edits.turn(motion, yaw=-20)),
        ("pitch +15", edits.turn(motion, pitch=15)),
        ("pitch -15", edits.turn(motion, pitch=-15)),
        ("blink", edits.blink(face, appearance, motion, 1.0)),
        ("mouth 0.2", edits.open_mouth(face, appearance, motion, 0.2)),
        ("look img-left 30", edits.look(face, appearance, motion, -30, 0)),
        ("look img-right 30", edits.look(face, appearance, motion, 30, 0)),
        ("look up 25", edits.look(face, appearance, motion, 0, 25)),
    ]


def zoom_box(points: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """Centre (2,) and side (pixels) of a square around both eyes and the lips."""
    region = points[list(RIGHT_EYE_CONTOUR + LEFT_EYE_CONTOUR + OUTER_LIPS)] * size
    low, high = region.min(axis=0), region.max(axis=0)
    return (low + high) / 2, int(math.ceil(1.3 * (high - low).max()))


def edit_sheets(face: MeshFace, portraits: dict[str, np.ndarray | Path], out: Path) -> dict:
    rows, zoom_rows, boxes, names = [], [], [], []
    for name, image in portraits.items():
        appearance, motion = face.encode(image)
        columns = edit_columns(face, appearance, motion)
        rendered = [face.decode(appearance, m) for _, m in columns]
        rows.append(np.hstack([tile(r) for r in rendered]))
        boxes.append(zoom_box(appearance.texture.source_points, face.size))
        zoom_rows.append(rendered)
        names.append(name)
    titles = [title for title, _ in columns]
    save_png(out / "edits.png", np.vstack([header(titles, [TILE] * len(titles))] + rows))
    side = max(s for _, s in boxes)  # one side for all rows: full resolution, no resampling
    strips = []
    for (centre, _), rendered in zip(boxes, zoom_rows):
        x0, y0 = np.clip(np.round(centre - side / 2).astype(int), 0, face.size - side)
        strips.append(np.hstack([r[y0:y0 + side, x0:x0 + side] for r in rendered]))
    save_png(out / "edits_zoom.png", np.vstack([header(titles, [side] * len(titles))] + strips))
    return {"portraits": names, "columns": titles, "zoom_side_px": side}


# --- e. cross identity ----------------------------------------------------------------------------
def pick_frames(motions: Motion, openings: np.ndarray, count: int) -> list[int]:
    """Farthest-point sampling on (yaw, pitch, roll, mouth opening x 100), starting from frame 0
    (the reference, shown separately): `count` frames as unlike it and each other as possible."""
    features = np.concatenate([motions.pose[:, :3], 100 * openings[:, None]], axis=1)  # (T, 4)
    chosen = [0]
    while len(chosen) <= count:
        distance = np.min(np.linalg.norm(features[:, None] - features[chosen][None], axis=2), axis=1)
        chosen.append(int(np.argmax(distance)))
    return sorted(chosen[1:])


def cross_identity(face: MeshFace, driver: Path, portraits: dict[str, Path], out: Path, max_frames: int,
                   reference: str) -> dict:
    """The `vasa reenact` path on chosen driver frames: pose relative to the driver's first frame,
    dynamics relative to `reference` (`driver_reference`), then `keep_physical`."""
    frames = list(itertools.islice(iter_video_frames(driver, FPS), max_frames))
    tracked = track_video(frames, face.size)
    motions = Motion.stack([face.motion_from_landmarks(p) for p in tracked.landmarks])  # (T,)
    base = driver_reference(face, motions, tracked.found, reference)
    valid = np.flatnonzero(tracked.found)
    openings = face.model.mouth_opening(face.model.mean_shape + face.model.decode_dynamics(motions.dynamics))
    chosen = [int(valid[i]) for i in pick_frames(motions[valid], openings[valid], CROSS_FRAMES)]
    driver_row = [label(tile(tracked.first_frame, CROSS_TILE), "driver first", 0.45)]
    driver_row += [label(tile(tracked.crop.apply(frames[t]), CROSS_TILE), f"driver t={t}", 0.45) for t in chosen]
    rows = [np.hstack(driver_row)]
    for name, path in portraits.items():
        appearance, source = face.encode(path)
        for only, title in ((None, "full"), ("pose", "pose only"), ("dynamics", "dynamics only")):
            row = [label(tile(appearance.image, CROSS_TILE), f"{Path(name).stem}\n{title}", 0.4)]
            for t in chosen:
                motion = edits.keep_physical(face, appearance, retarget(source, motions[t], base, only))
                row.append(tile(face.decode(appearance, motion), CROSS_TILE))
            rows.append(np.hstack(row))
    save_png(out / "cross_identity.png", np.vstack(rows))
    return {"driver": driver.name, "driver_frames": chosen, "reference": reference, "portraits": list(portraits)}


# --- f. mouth ------------------------------------------------------------------------------------
def mouth_sheet(face: MeshFace, portraits: dict[str, np.ndarray | Path], out: Path) -> dict:
    rows, names = [], []
    for name, image in portraits.items():
        appearance, motion = face.encode(image)
        lips = appearance.texture.source_points[list(OUTER_LIPS), :2] * face.size
        centre = (lips.min(axis=0) + lips.max(axis=0)) / 2
        side = int(math.ceil(1.8 * np.ptp(lips[:, 0])))
        x0, y0 = np.clip(np.round(centre - side / 2).astype(int), 0, face.size - side)
        frames = [face.decode(appearance, motion)] + [face.decode(appearance, edits.open_mouth(face, appearance, motion, o))
                                                      for o in MOUTH_OPENINGS]
        rows.append(np.hstack([tile(f[y0:y0 + side, x0:x0 + side]) for f in frames]))
        names.append(name)
    titles = ["portrait"] + [f"opening {o:g}" for o in MOUTH_OPENINGS]
    save_png(out / "mouth.png", np.vstack([header(titles, [TILE] * len(titles))] + rows))
    return {"portraits": names, "openings": list(MOUTH_OPENINGS)}


# --- report ---------------------------------------------------------------------------------------
def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf (identical)"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_tables(results: dict) -> None:
    print(f"\n### Self-reconstruction (face hull PSNR, target >= {SELF_RECON_TARGET_DB:.0f} dB)\n")
    print("| image | PSNR face (dB) | max abs diff | passes |\n|---|---|---|---|")
    for row in results["self_reconstruction"]:
        print(f"| {row['image']} | {fmt(row['psnr_face_db'])} | {row['max_abs_diff']} | {row['passes']} |")
    if not results.get("reenactment"):
        return
    print("\n### Same-identity reenactment (face box; baseline = always frame 0)\n")
    print("| clip | frames | PSNR dB | SSIM | mouth dist / IOD | baseline PSNR | baseline SSIM | "
          "baseline mouth | mouth-opening r | decode ms/frame | track ms/frame |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results["reenactment"]:
        print(f"| {r['clip']} | {r['frames_used']} | {fmt(r['psnr'])} | {fmt(r['ssim'], 3)} | "
              f"{fmt(r['mouth'], 3)} | {fmt(r['base_psnr'])} | {fmt(r['base_ssim'], 3)} | "
              f"{fmt(r['base_mouth'], 3)} | {fmt(r['mouth_r'], 3)} | {fmt(r['decode_ms'], 1)} | "
              f"{fmt(r['track_ms_per_frame'], 1)} |")
    mean = results["reenactment_mean"]
    print(f"| **mean** | {mean['frames_used']} | {fmt(mean['psnr'])} | {fmt(mean['ssim'], 3)} | "
          f"{fmt(mean['mouth'], 3)} | {fmt(mean['base_psnr'])} | {fmt(mean['base_ssim'], 3)} | "
          f"{fmt(mean['base_mouth'], 3)} | {fmt(mean['mouth_r'], 3)} | {fmt(mean['decode_ms'], 1)} | "
          f"{fmt(mean['track_ms_per_frame'], 1)} |")


def source_fingerprint() -> str:
    """sha256 of the face backend's source and model file: ties the numbers to what made them."""
    digest = hashlib.sha256()
    package = REPO / "vasa"
    files = [*package.glob("face/*.py"), *package.glob("face/mesh/*.py"),
             package / "face" / "mesh" / "assets" / "face_model.npz", package / "latents.py", package / "reenact.py"]
    for path in sorted(files):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def to_json(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no inf: identical images
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--media", type=Path, default=REPO / ".." / "shared" / "media")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img", help="folder for the PNGs")
    parser.add_argument("--json", type=Path, default=REPO / "docs" / "face_eval.json")
    parser.add_argument("--max-frames", type=int, default=250)
    parser.add_argument("--reference", choices=("neutral", "first"), default="neutral",
                        help="driver expression the cross-identity dynamics are taken relative to")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    face = MeshFace(size=SIZE)
    have_media = (args.media / "clips").is_dir() and (args.media / "portraits").is_dir()
    if not have_media:
        print(f"media folder {args.media} not found: clip and portrait parts skipped")
    images: dict[str, np.ndarray | Path] = {}
    if have_media:
        images.update({p.name: p for p in sorted((args.media / "portraits").iterdir())})
    images.update(package_photos())
    results: dict = {"source_sha256": source_fingerprint(), "size": SIZE, "max_frames": args.max_frames,
                     "fps": FPS, "self_reconstruction": self_reconstruction(face, images)}
    if have_media:
        results["reenactment"] = []
        for path in sorted((args.media / "clips").glob("*.mp4")):
            result, strip = reenact_clip(face, path, args.max_frames, STRIP_FRAMES)
            results["reenactment"].append(result)
            if path.name in STRIP_CLIPS:
                save_strip(args.out / f"reenact_{path.stem}.png", strip)
        keys = [k for k in results["reenactment"][0] if k not in ("clip", "frames_used", "mouth_missed_frames")]
        results["reenactment_mean"] = {k: float(np.mean([r[k] for r in results["reenactment"]])) for k in keys}
        results["reenactment_mean"]["frames_used"] = sum(r["frames_used"] for r in results["reenactment"])
        portraits = {n: args.media / "portraits" / n for n in EDIT_PORTRAITS}
        results["edits"] = edit_sheets(face, portraits, args.out)
        cross = {n: args.media / "portraits" / n for n in CROSS_PORTRAITS}
        results["cross_identity"] = cross_identity(face, args.media / "clips" / CROSS_DRIVER, cross, args.out,
                                                   args.max_frames, args.reference)
    else:
        results["edits"] = edit_sheets(face, package_photos(), args.out)
    mouths = dict(reversed(package_photos().items()))  # grace_hopper's lips are closed, the astronaut's parted
    if have_media:
        mouths[f"{WIDE_OPEN_CLIP} frame 0"] = next(iter_video_frames(args.media / "clips" / WIDE_OPEN_CLIP, FPS))
    results["mouth"] = mouth_sheet(face, mouths, args.out)
    print_tables(results)
    args.json.write_text(json.dumps(to_json(results), indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
