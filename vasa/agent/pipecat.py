"""vasa as a Pipecat video service: the agent's TTS audio in, the talking portrait and that audio out.

    from vasa.agent.pipecat import VasaVideoService
    avatar = VasaVideoService("portrait.jpg")            # the live model, 256 px, 25 fps
    pipeline = Pipeline([transport.input(), stt, user_aggregator, llm, tts, avatar, transport.output(),
                         assistant_aggregator])
    # the transport: TransportParams(video_out_enabled=True, video_out_width=avatar.size,
    #     video_out_height=avatar.size, video_out_framerate=avatar.fps, audio_out_enabled=True)

The service takes the `TTSAudioRawFrame`s (any rate, any channel count) and sends them on later with
the frames that show them: each `OutputImageRawFrame` (RGB, `sync_with_audio` so the output transport
shows it when the audio before it has played) is followed by its 40 ms of speech. `TTSStartedFrame` /
`TTSStoppedFrame` leave with the first / last of their utterance's audio, so "bot speaking" follows
what the user sees. Between utterances the avatar listens: frames keep coming, blinks and head motion
go on, the mouth rests, no audio is sent. An `InterruptionFrame` drops the speech queued here and the
frames not yet sent, and the mouth closes within 2 frames (`vasa.agent.avatar`). Everything else
passes through untouched. Install with `pip install "vasa[pipecat]"`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
from pipecat.frames.frames import (CancelFrame, EndFrame, Frame, InterruptionFrame, OutputImageRawFrame, StartFrame,
                                   TTSAudioRawFrame, TTSStartedFrame, TTSStoppedFrame)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from vasa.agent.avatar import AvatarFrame, AvatarStats, LiveAvatar
from vasa.controls import Controls
from vasa.errors import VasaError
from vasa.latents import SAMPLE_RATE

log = logging.getLogger(__name__)

OUTBOX_S = 2.0  # frames waiting to be sent, at most this long of them: older ones are dropped (counted)


class VasaVideoService(FrameProcessor):
    """A Pipecat frame processor that makes the avatar; see the module doc.

    portrait: an image path (or an (H, W, 3) uint8 RGB array). model: a motion model path or shipped name
    ("live": made for streaming). head: an already loaded `TalkingHead` to share (then model and size are
    its own). controls: `vasa.Controls` (default: the avatar's, with blinks while listening).
    watermark: the frames carry vasa's invisible watermark (default; vasa.provenance).
    A portrait or model that cannot be loaded is a `VasaError` here, before the pipeline runs."""

    def __init__(self, portrait: str | Path | np.ndarray, *, model: str = "live", size: int = 256, fps: float = 25.0,
                 controls: Controls | None = None, head=None, step_frames: int | None = None,
                 max_lag_s: float = 1.0, watermark: bool = True, **kwargs):
        super().__init__(**kwargs)
        if head is None:
            from vasa.pipeline import TalkingHead

            head = TalkingHead.from_pretrained(model, size=size)
        self.source = head.encode_source(_portrait(portrait))  # a shared head keeps its own portrait
        self.head, self.fps, self.size = head, float(fps), head.face.size
        self.controls, self.step_frames, self.max_lag_s = controls, step_frames, max_lag_s
        self.watermark = watermark
        self.avatar: LiveAvatar | None = None
        self.dropped_frames = 0  # frames the pipeline was too slow to take (OUTBOX_S)
        self.refused_audio = 0  # TTS frames that could not be read (reported upstream as errors)
        self._outbox: asyncio.Queue | None = None
        self._sender: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stats: AvatarStats | None = None
        self.latency_s: float | None = None  # the audio a frame waits for by design (StreamingSession)

    # --- frames in --------------------------------------------------------------------------------
    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if direction != FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
        elif isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            await self._start()
        elif isinstance(frame, TTSAudioRawFrame):
            await self._say(frame)
        elif isinstance(frame, TTSStartedFrame):
            pass  # sent on with the utterance's first frame
        elif isinstance(frame, TTSStoppedFrame):
            if self.avatar is not None:
                self.avatar.end_utterance()  # sent on with the utterance's last frame
        elif isinstance(frame, InterruptionFrame):
            self._interrupt()
            await self.push_frame(frame, direction)
        elif isinstance(frame, EndFrame):
            await self._stop(drain=True)
            await self.push_frame(frame, direction)
        elif isinstance(frame, CancelFrame):
            await self._stop(drain=False)
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def _say(self, frame: TTSAudioRawFrame) -> None:
        if self.avatar is None:
            return
        try:
            self.avatar.say(frame.audio, frame.sample_rate, frame.num_channels)
        except VasaError as error:  # the pipeline goes on; the agent hears why
            self.refused_audio += 1
            await self.push_error(f"vasa avatar: TTS audio refused: {error}")

    def _interrupt(self) -> None:
        if self.avatar is not None:
            self.avatar.interrupt()
        if self._outbox is not None:
            while not self._outbox.empty():
                self._outbox.get_nowait()

    # --- the avatar's life ----------------------------------------------------------------------
    async def _start(self) -> None:
        if self.avatar is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._outbox = asyncio.Queue()
        self.avatar = LiveAvatar(self.head, self._made, source=self.source, controls=self.controls, fps=self.fps,
                                 step_frames=self.step_frames, max_lag_s=self.max_lag_s, watermark=self.watermark)
        self._stats = self.avatar.stats
        self.latency_s = self.avatar.session.algorithmic_latency_s
        self.avatar.start()
        self._sender = self.create_task(self._send(), name="vasa-avatar-send")

    def _made(self, frame: AvatarFrame) -> None:
        """From the avatar's pump thread: into the event loop's outbox."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._enqueue, frame)

    def _enqueue(self, frame: AvatarFrame) -> None:
        outbox = self._outbox
        if outbox is None:
            return
        while outbox.qsize() >= OUTBOX_S * self.fps:  # the pipeline is behind: the oldest go
            outbox.get_nowait()
            self.dropped_frames += 1
        outbox.put_nowait(frame)

    async def _send(self) -> None:
        while True:
            try:
                frame = await asyncio.wait_for(self._outbox.get(), timeout=1.0)
            except asyncio.TimeoutError:  # no frame for a second: look whether the avatar failed
                frame = None
            if self.avatar is not None and self.avatar.error is not None:
                error, self.avatar.error = self.avatar.error, None
                await self.push_error(f"vasa avatar failed: {error}", exception=error)
            if frame is None:
                continue
            if frame.starts:
                await self.push_frame(TTSStartedFrame())
            if frame.image is not None:
                image = OutputImageRawFrame(image=np.ascontiguousarray(frame.image).tobytes(),
                                            size=(frame.image.shape[1], frame.image.shape[0]), format="RGB")
                image.sync_with_audio = True
                image.metadata["vasa"] = {"index": frame.index, "time_s": frame.time_s, "state": frame.state,
                                          "motion": None if frame.motion is None else frame.motion.tolist()}
                await self.push_frame(image)
            if frame.audio is not None:
                audio = TTSAudioRawFrame(audio=frame.audio.tobytes(), sample_rate=SAMPLE_RATE, num_channels=1)
                audio.metadata["vasa"] = {"index": frame.index, "time_s": frame.time_s}
                await self.push_frame(audio)
            if frame.ends:
                await self.push_frame(TTSStoppedFrame())

    async def _stop(self, drain: bool) -> None:
        avatar = self.avatar
        if avatar is None:
            return
        if drain:  # the speech already given is said first (as long as it lasts, plus the latency)
            limit = self._loop.time() + avatar.queued_s + avatar.session.algorithmic_latency_s + 2.0
            while (avatar.speaking or not self._outbox.empty()) and self._loop.time() < limit:
                await asyncio.sleep(0.02)
        self.avatar = None
        await asyncio.to_thread(avatar.close)
        if self._sender is not None:
            await self.cancel_task(self._sender)
            self._sender = None

    async def cleanup(self):
        await super().cleanup()
        await self._stop(drain=False)

    @property
    def stats(self) -> AvatarStats | None:
        """The avatar's figures (`vasa.agent.avatar.AvatarStats`), None before it starts."""
        return self._stats


def _portrait(portrait) -> np.ndarray:
    if isinstance(portrait, np.ndarray):
        if portrait.ndim != 3 or portrait.shape[2] != 3 or portrait.dtype != np.uint8:
            raise VasaError(f"portrait array must be (H, W, 3) uint8 RGB, got {portrait.shape} {portrait.dtype}")
        return portrait
    from vasa.media import read_image

    path = Path(portrait)
    if not path.is_file():
        raise VasaError(f"portrait {str(path)!r} not found")
    return read_image(path)
