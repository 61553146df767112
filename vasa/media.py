"""Reading images, video and audio, and writing mp4 (H.264 + AAC) atomically.

Everything a user passes in goes through here, so every way an input can be bad ends in a
`VasaError` with one line that says what is wrong, never a decoder's stack trace.
"""

from __future__ import annotations

import math
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import cv2
import numpy as np

from vasa.errors import VasaError
from vasa.latents import FPS as DEFAULT_FPS, SAMPLE_RATE
from vasa.outputs import move_into_place

RGBA_BACKGROUND = 255  # transparent pixels become white: portraits cut out on white look natural


def _check_input_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise VasaError(f"{what} not found: {path}")
    if path.is_dir():
        raise VasaError(f"{what} is a folder, not a file: {path}")
    if path.stat().st_size == 0:
        raise VasaError(f"{what} is empty (0 bytes): {path}")
    return path


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, RGB, RGBA; uint8, uint16 or float in [0, 1]) -> RGB uint8 (H, W, 3).

    Channel order is taken as RGB(A); `read_image` converts OpenCV's BGR before calling this.
    """
    image = np.asarray(image)
    if image.size == 0 or image.ndim not in (2, 3) or min(image.shape[:2]) < 2:
        raise VasaError(f"image has no pixels to work with (shape {image.shape})")
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif image.dtype.kind == "f":
        image = (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        raise VasaError(f"unsupported image dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    if channels == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        rgb = image[:, :, :3].astype(np.float32) * alpha + RGBA_BACKGROUND * (1.0 - alpha)
        return rgb.round().astype(np.uint8)
    if channels == 3:
        return np.ascontiguousarray(image)
    raise VasaError(f"unsupported number of image channels: {channels}")


MAX_IMAGE_PIXELS = 150_000_000  # a 108-megapixel phone photo passes; a larger image is refused before decoding


def read_image(source: str | os.PathLike | np.ndarray, max_pixels: int = MAX_IMAGE_PIXELS,
               max_side: int | None = None) -> np.ndarray:
    """A path or an array -> RGB uint8 (H, W, 3). Arrays are taken as RGB(A). See `decode_image`."""
    if isinstance(source, np.ndarray):
        return _shrink(to_rgb8(source), max_side)
    path = _check_input_file(source, "image")
    return decode_image(path.read_bytes(), str(path), max_pixels, max_side)


def decode_image(data: bytes, name: str, max_pixels: int = MAX_IMAGE_PIXELS, max_side: int | None = None) -> np.ndarray:
    """An encoded image (JPEG, PNG, WebP, TIFF, ...) -> RGB uint8 (H, W, 3), turned as its EXIF
    orientation says. The size in the file's header is checked against `max_pixels` before any pixel is
    decoded (an image bomb costs nothing); `max_side` shrinks the result, and a JPEG is decoded at
    1/2, 1/4 or 1/8 scale straight away when that is still at least `max_side` (fast, little memory)."""
    width, height, is_jpeg, orientation = _image_header(data, name)
    if width * height > max_pixels:
        raise VasaError(f"image {name} is {width}x{height} = {width * height / 1e6:.1f} megapixels, over the "
                        f"limit of {max_pixels / 1e6:.1f}: scale it down first")
    reduce = 1
    while is_jpeg and max_side and reduce < 8 and max(width, height) // (2 * reduce) >= max_side:
        reduce *= 2
    flag = {1: cv2.IMREAD_UNCHANGED, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}[reduce]
    if reduce > 1:
        flag |= cv2.IMREAD_IGNORE_ORIENTATION  # turned below, as for full-size images
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
    except cv2.error as error:  # a header PIL read that OpenCV cannot decode
        raise VasaError(f"cannot read image {name}: {str(error).strip().splitlines()[-1]}") from None
    if image is None:
        raise VasaError(f"cannot read image {name}: not an image format OpenCV can decode")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return to_rgb8(_shrink(_orient(image, orientation), max_side))


def _image_header(data: bytes, name: str) -> tuple[int, int, bool, int]:
    """(width, height, is JPEG, EXIF orientation) from the file's header, no pixels decoded. A file whose
    header PIL cannot read is refused: its size could not be checked before decoding."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit is checked by the caller
            with Image.open(io.BytesIO(data)) as picture:
                try:
                    orientation = picture.getexif().get(0x0112, 1)
                except (OSError, ValueError, SyntaxError):  # a broken EXIF block: keep the pixels as stored
                    orientation = 1
                return picture.width, picture.height, picture.format == "JPEG", orientation
    except Image.DecompressionBombError as error:
        raise VasaError(f"image {name} is too large to decode ({error}); scale it down first") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise VasaError(f"cannot read image {name}: not an image format vasa reads (JPEG, PNG, WebP, TIFF, BMP, "
                        "GIF, PPM)") from None


def _shrink(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Scale down (area-averaged) so the longer side is at most max_side; smaller images pass as they are."""
    if not max_side or max(image.shape[:2]) <= max_side:
        return image
    scale = max_side / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


# EXIF orientation tag value -> (counter-clockwise quarter turns, then mirror left-right)
_EXIF_ORIENTATIONS = {2: (0, True), 3: (2, False), 4: (2, True), 5: (3, True), 6: (3, False),
                      7: (1, True), 8: (1, False)}


def _orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn the pixels the way the camera's EXIF orientation tag says (phones store them sideways)."""
    turns, mirror = _EXIF_ORIENTATIONS.get(orientation, (0, False))
    image = np.rot90(image, turns) if turns else image
    return np.ascontiguousarray(image[:, ::-1] if mirror else image)


@dataclass(frozen=True)
class VideoInfo:
    fps: float  # the rate frames are delivered at (after resampling)
    native_fps: float  # average rate of the file
    width: int
    height: int
    duration_s: float
    has_audio: bool


@contextmanager
def _open_container(path: Path, what: str):
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise VasaError(f"cannot read {what} {path}: {error}") from None
    try:
        yield container
    finally:
        container.close()


def _check_fps(fps: float) -> float:
    if not np.isfinite(fps) or fps <= 0:
        raise VasaError(f"frame rate must be a positive number, got {fps}")
    return float(fps)


def expected_frames(info: VideoInfo) -> int:
    """How many frames `iter_video_frames` delivers for a video (for progress bars)."""
    return max(1, math.ceil(info.duration_s * info.fps - 1e-6))


@contextmanager
def _video_stream(path: str | os.PathLike):
    """(container, first video stream) of a video file, or a `VasaError` saying why not."""
    path = _check_input_file(path, "video")
    with _open_container(path, "video") as container:
        if not container.streams.video:
            raise VasaError(f"{path} has no video stream")
        yield container, container.streams.video[0]


def probe_video(path: str | os.PathLike, fps: float = DEFAULT_FPS) -> VideoInfo:
    fps = _check_fps(fps)
    with _video_stream(path) as (container, stream):
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        rate = float(stream.average_rate) if stream.average_rate else fps
        width, height = stream.codec_context.width, stream.codec_context.height
        if _first_frame_rotation(container, stream) % 180:
            width, height = height, width
        return VideoInfo(
            fps=fps,
            native_fps=rate,
            width=width,
            height=height,
            duration_s=duration or 0.0,
            has_audio=bool(container.streams.audio),
        )


def iter_video_frames(path: str | os.PathLike, fps: float = DEFAULT_FPS) -> Iterator[np.ndarray]:
    """Decode a video as RGB uint8 frames resampled to a constant `fps`.

    Output frame k shows the source frame on screen at time k / fps (the latest frame whose
    timestamp is not after it), so variable-frame-rate files come out evenly timed. Frames are
    decoded one at a time: memory stays flat for any length.
    """
    fps = _check_fps(fps)
    with _video_stream(path) as (container, stream):
        stream.thread_type = "AUTO"
        turns = None
        native_step = 1.0 / float(stream.average_rate) if stream.average_rate else 1.0 / fps
        start = None
        previous = None
        previous_time = 0.0
        k = 0
        try:
            for frame in container.decode(stream):
                time = float(frame.time) if frame.time is not None else (k / fps)
                if start is None:
                    start = time
                time -= start
                if previous is not None:
                    while k / fps < time - 1e-6:
                        yield previous
                        k += 1
                if turns is None:  # display rotation that phones write, counter-clockwise degrees
                    turns = int(round((getattr(frame, "rotation", 0) or 0) / 90)) % 4
                pixels = frame.to_ndarray(format="rgb24")
                previous = np.ascontiguousarray(np.rot90(pixels, turns)) if turns else pixels
                previous_time = time
        except av.error.FFmpegError as error:
            raise VasaError(f"cannot decode video {path}: {error}") from None
        if previous is None:
            raise VasaError(f"video {path} has no frames")
        end_time = previous_time + native_step
        while k / fps < end_time - 1e-6:
            yield previous
            k += 1


def _first_frame_rotation(container, stream) -> int:
    """Display rotation in degrees, read off the first frame (0 when the file has none)."""
    try:
        frame = next(container.decode(stream), None)
    except av.error.FFmpegError:
        return 0
    return int(round(getattr(frame, "rotation", 0) or 0)) if frame is not None else 0


def read_audio(
    path: str | os.PathLike, sample_rate: int | None = None, mono: bool = True
) -> tuple[np.ndarray, int] | None:
    """The first audio stream of a file as float32 (channels, samples), or None when it has none.

    `sample_rate=None` keeps the file's rate; `mono` averages the channels.
    """
    path = _check_input_file(path, "audio")
    with _open_container(path, "audio") as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        rate = sample_rate or stream.codec_context.sample_rate or stream.rate
        layout = "mono" if mono else None
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        chunks = []
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        except av.error.FFmpegError as error:
            raise VasaError(f"cannot decode audio of {path}: {error}") from None
    if not chunks:
        return None
    return np.concatenate(chunks, axis=1).astype(np.float32), int(rate)


def check_output_path(path: str | os.PathLike) -> Path:
    """Fail before any work when the output cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise VasaError(f"output path is a folder: {path}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise VasaError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise VasaError(f"output folder is not writable: {folder}")
    if path.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise VasaError(f"output must be a video file (.mp4, .mov or .mkv), got {path.name}")
    return path


@contextmanager
def atomic_output(path: str | os.PathLike):
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = check_output_path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        move_into_place(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


AAC_FRAME_SAMPLES = 1024


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Mono float samples in [-1, 1] -> a 16-bit PCM .wav file (clipped; written in one go)."""
    import wave

    pcm = (np.clip(np.asarray(samples, dtype=np.float64), -1, 1) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(pcm.tobytes())


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float = DEFAULT_FPS,
    audio: tuple[np.ndarray, int] | None = None,
    crf: int = 18,
    sealer=None,
) -> int:
    """Encode RGB uint8 frames (and optional (channels, samples) float audio) as H.264 + AAC.

    The file appears at `path` only when encoding finished; returns the number of frames written.
    Audio longer than the video is cut to the video's length. `sealer` (a vasa.provenance.Sealer)
    watermarks each frame and signs the finished file's manifest.
    """
    fps = _check_fps(fps)
    with atomic_output(path) as final:
        temporary = final if sealer is None else final.with_name(final.name + ".unsigned.mp4")
        try:
            count = _encode(temporary, frames, fps, audio, crf, sealer)
            if sealer is not None:
                sealer.seal(temporary, final)
        finally:
            if temporary != final and temporary.exists():
                temporary.unlink()
    return count


def _encode(path: Path, frames: Iterable[np.ndarray], fps: float, audio, crf: int, sealer) -> int:
    count = 0
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        video.pix_fmt = "yuv420p"
        video.options = {"crf": str(crf), "preset": "veryfast"}
        audio_stream = None
        if audio is not None:
            samples, rate = audio
            audio_stream = container.add_stream("aac", rate=rate)
            audio_stream.layout = "mono" if samples.shape[0] == 1 else "stereo"
        for frame in frames:
            if count == 0:
                if frame.shape[0] % 2 or frame.shape[1] % 2:
                    raise VasaError(f"H.264 needs even frame sides, got {frame.shape[1]}x{frame.shape[0]}")
                video.height, video.width = frame.shape[:2]
            if sealer is not None:
                frame = sealer.mark(frame)
            av_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            container.mux(video.encode(av_frame))
            count += 1
        if count == 0:
            raise VasaError("no frames to write")
        container.mux(video.encode(None))
        if audio_stream is not None:
            _mux_audio(container, audio_stream, audio[0], audio[1], count / fps)
    return count


def _mux_audio(container, stream, samples: np.ndarray, rate: int, duration_s: float) -> None:
    samples = np.ascontiguousarray(samples[:2, : int(round(duration_s * rate))], dtype=np.float32)
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    for start in range(0, samples.shape[1], AAC_FRAME_SAMPLES):
        chunk = samples[:, start : start + AAC_FRAME_SAMPLES]
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
