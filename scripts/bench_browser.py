"""A/V offset of the `vasa serve` page in headless Chromium: prints numbers, asserts nothing.

    python scripts/bench_browser.py [--models default live] [--size 256] [--frames 85] [--runs 1] [--webrtc]

The page as tests/test_browser.py drives it (vasa.server.headless): the demo speech is the microphone
(Chromium's fake capture device), blinks 20 a minute and the happy expression picked, then the page
streams until it has shown `--frames` frames. Per run it prints the first frame (ms after the first
audio the page sent), frames received and shown, the offset between the audio playing and the frame on
screen (audio clock - frame time, over the frames after the first second: median, 80th and 95th
percentile, max; one frame = 40 ms), the page's rebuffers (pauses when the server fell behind), late
audio slices and the load average. `--webrtc` streams over WebRTC instead (the page's checkbox): first
frame (ms from the connection's first audio to the first frame the browser presents), frames decoded and
presented, the rate they came at, audio packets received, the server's frames sent / skipped and the
pacer's schedule moves (the browser syncs picture and voice itself: no offset is read). Needs playwright and a system Chromium ($VASA_CHROMIUM, or
apt-get install chromium).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
import urllib.request


def chromium_version(executable: str) -> str:
    try:
        return subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return executable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["default", "live"], help="motion models (default both shipped)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=85, help="frames shown per run (the first second is warm-up)")
    parser.add_argument("--warm-up", type=int, default=None, help="frames left out of the offsets (default 25: 1 s)")
    parser.add_argument("--runs", type=int, default=1, help="page runs per model")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--webrtc", action="store_true", help="stream over WebRTC (media tracks) instead")
    args = parser.parse_args()

    import torch

    from vasa.pipeline import TalkingHead
    from vasa.server.headless import (WARM_UP_FRAMES, av_offsets, chromium_path, open_page, serve_in_thread,
                                      stream_until_shown)

    executable = chromium_path()
    if executable is None:
        raise SystemExit("no system Chromium (apt-get install chromium, or set VASA_CHROMIUM)")
    torch.set_num_threads(args.threads)
    warm_up = WARM_UP_FRAMES if args.warm_up is None else args.warm_up
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{args.threads}; {chromium_version(executable)}, headless; {args.size} px, {args.frames} frames shown "
          f"per run, offsets over the frames after the first {warm_up}\n")
    if args.webrtc:
        print("| model | run | first frame ms (WebRTC) | frames decoded / presented | fps | audio packets "
              "| server frames sent / skipped | schedule moves | load avg |")
        print("|---|---|---|---|---|---|---|---|---|", flush=True)
    else:
        print("| model | run | first frame ms | frames received / shown | A/V offset ms: median / p80 / p95 / max "
              "| rebuffers (ms of pauses) | late audio | load avg |")
        print("|---|---|---|---|---|---|---|---|", flush=True)
    for model in args.models:
        head = TalkingHead.from_pretrained(model, size=args.size)
        with serve_in_thread(head) as url:
            for k in range(args.runs):
                with open_page(url, executable=executable) as run:
                    run.page.select_option("#blinks", "20")
                    run.page.select_option("#emotion", "happy")
                    if args.webrtc:
                        run.page.check("#webrtc")
                    started = time.monotonic()
                    stats = stream_until_shown(run, args.frames)
                    seconds = time.monotonic() - started
                    run.page.click("#stop")
                    status = json.loads(urllib.request.urlopen(url + "api/status").read())
                if run.errors or stats["error"] is not None:
                    print(f"| {model} | {k + 1} | failed: {stats['error'] or run.errors} | | | | | |", flush=True)
                    continue
                load = " ".join(f"{v:.1f}" for v in os.getloadavg())
                if args.webrtc:
                    fps = stats["shown"] / max(seconds - stats["firstFrameMs"] / 1000, 1e-3)
                    print(f"| {model} | {k + 1} | {stats['firstFrameMs']} | {stats['frames']} / {stats['shown']} | "
                          f"{fps:.1f} | {stats['audioPackets']} | {status['frames_sent']} / {status['frames_dropped']} "
                          f"| {status['rtc_schedule_moves']} | {load} |", flush=True)
                    continue
                offsets = av_offsets(stats, warm_up)
                print(f"| {model} | {k + 1} | {stats['firstFrameMs']} | {stats['frames']} / {stats['shown']} | "
                      f"{offsets['median_ms']:.0f} / {offsets['p80_ms']:.0f} / {offsets['p95_ms']:.0f} / "
                      f"{offsets['max_ms']:.0f} | {stats['rebuffers']} ({stats['rebufferMs']}) | {stats['lateAudio']} "
                      f"| {load} |", flush=True)


if __name__ == "__main__":
    main()
