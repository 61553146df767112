"""An offline voice agent with a vasa avatar: it says back what you said, with the portrait's face.

    pip install "vasa[pipecat]"
    python examples/echo_agent.py [--portrait me.jpg] [--size 256] [--port 8081]
    # open http://127.0.0.1:8081/, press Start, speak, pause: the avatar repeats it; talk over it to interrupt

Everything runs here, nothing is downloaded: the browser's microphone reaches a Pipecat pipeline over
WebRTC (Pipecat's SmallWebRTC transport, aiortc), Silero VAD (inside the pipecat package) finds where
you start and stop, `EchoBack` plays your utterance back as the agent's "TTS" audio, and
`VasaVideoService` turns that audio into the talking portrait; the page shows the video and plays the
voice from the same WebRTC connection. Starting to speak while the avatar talks is a barge-in: an
`InterruptionFrame` closes its mouth and drops the rest.

To make it a real assistant, replace `EchoBack` with your services, in the usual Pipecat order:

    Pipeline([transport.input(), stt, user_aggregator, llm, tts, avatar, transport.output(), assistant_aggregator])

(any Pipecat STT / LLM / TTS; the user aggregator then sends the interruptions).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from aiohttp import web
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (InputAudioRawFrame, InterruptionFrame, TTSAudioRawFrame, TTSStartedFrame,
                                   TTSStoppedFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.workers.runner import WorkerRunner

from vasa.agent.pipecat import VasaVideoService
from vasa.errors import VasaError

PAGE = Path(__file__).with_name("echo_agent.html")
MAX_UTTERANCE_S = 15.0  # longer speech is cut: the echo is a demo
log = logging.getLogger("echo_agent")


class EchoBack(FrameProcessor):
    """The user's utterance, between the VAD's start and stop, sent on as the agent's speech."""

    def __init__(self, avatar: VasaVideoService, **kwargs):
        super().__init__(**kwargs)
        self.avatar = avatar
        self.heard: list[InputAudioRawFrame] | None = None
        self.heard_bytes = 0
        self.utterances = 0

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self.heard, self.heard_bytes = [], 0
            if self.avatar.avatar is not None and self.avatar.avatar.speaking:  # a barge-in
                await self.push_frame(InterruptionFrame())
        elif isinstance(frame, VADUserStoppedSpeakingFrame) and self.heard:
            heard, self.heard = self.heard, None
            self.utterances += 1
            await self.push_frame(TTSStartedFrame())
            for part in heard:
                await self.push_frame(TTSAudioRawFrame(audio=part.audio, sample_rate=part.sample_rate,
                                                       num_channels=part.num_channels))
            await self.push_frame(TTSStoppedFrame())
        elif isinstance(frame, InputAudioRawFrame):
            if self.heard is not None and self.heard_bytes < MAX_UTTERANCE_S * 2 * frame.sample_rate * frame.num_channels:
                self.heard.append(frame)
                self.heard_bytes += len(frame.audio)
            return  # the user's own voice is not played back as it comes
        await self.push_frame(frame, direction)


class EchoAgent:
    """One shared head; one pipeline per browser connection (one at a time)."""

    def __init__(self, portrait, size: int):
        from vasa.pipeline import TalkingHead

        self.head = TalkingHead.from_pretrained("live", size=size)
        self.portrait, self.size = portrait, size
        VasaVideoService(portrait, head=self.head)  # a bad portrait is an error now, not at the first call
        self.calls: dict[str, dict] = {}

    async def offer(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            sdp, kind = body["sdp"], body["type"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"message": "send {sdp, type} from createOffer()"}, status=400)
        if any(not call["done"].is_set() for call in self.calls.values()):
            return web.json_response({"message": "the agent is in a call; try again later"}, status=503)
        connection = SmallWebRTCConnection()
        await connection.initialize(sdp=sdp, type=kind)
        transport = SmallWebRTCTransport(connection, TransportParams(
            audio_in_enabled=True, audio_out_enabled=True, video_out_enabled=True, video_out_width=self.size,
            video_out_height=self.size, video_out_framerate=25))
        avatar = VasaVideoService(self.portrait, head=self.head)
        echo = EchoBack(avatar)
        pipeline = Pipeline([transport.input(), VADProcessor(vad_analyzer=SileroVADAnalyzer()), echo, avatar,
                             transport.output()])
        worker = PipelineWorker(pipeline, params=PipelineParams(), enable_rtvi=False)
        call = {"avatar": avatar, "echo": echo, "worker": worker, "done": asyncio.Event()}
        answer = connection.get_answer()
        self.calls[answer["pc_id"]] = call

        @transport.event_handler("on_client_disconnected")
        async def gone(transport, client):
            await worker.cancel()

        async def run():
            runner = WorkerRunner(handle_sigint=False)
            await runner.add_workers(worker)
            try:
                await runner.run()
            finally:
                call["done"].set()

        call["task"] = asyncio.ensure_future(run())
        return web.json_response(answer)

    async def shutdown(self, app: web.Application) -> None:
        """The server stops: end every call's pipeline and wait for it (no task is left to a closed loop)."""
        for call in self.calls.values():
            if not call["done"].is_set():
                await call["worker"].cancel()
                await asyncio.wait_for(asyncio.shield(call["task"]), timeout=10)

    async def status(self, request: web.Request) -> web.Response:
        """What each call did: utterances echoed, the avatar's frames and speech (for checks and curiosity)."""
        out = {}
        for pc_id, call in self.calls.items():
            stats = call["avatar"].stats
            out[pc_id] = {"utterances": call["echo"].utterances, "done": call["done"].is_set(),
                          "avatar": None if stats is None else {k: v for k, v in stats.__dict__.items()
                                                                if not isinstance(v, list)}}
        return web.json_response(out)


def build_app(agent: EchoAgent) -> web.Application:
    app = web.Application()
    app.router.add_get("/", lambda request: web.FileResponse(PAGE))
    app.router.add_post("/offer", agent.offer)
    app.router.add_get("/status", agent.status)
    app.on_cleanup.append(agent.shutdown)
    return app


def main(argv: list[str] | None = None) -> int:
    from vasa.demo import demo_portrait

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portrait", type=Path, default=None, help="default: the bundled demo portrait")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args(argv)
    try:
        agent = EchoAgent(args.portrait or demo_portrait(), args.size)
    except VasaError as error:
        raise SystemExit(f"echo_agent: {error}") from None
    print(f"echo agent: open http://{args.host}:{args.port}/ and press Start", flush=True)
    web.run_app(build_app(agent), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

