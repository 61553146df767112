"""A picture of the voice-agent avatar's states: frames and the mouth over time while it speaks, listens and
is interrupted (`vasa.agent.LiveAvatar`, the live model, in real time on this machine).

    python scripts/picture_agent_states.py --out docs/img/agent_states.png

Script: 2.5 s of the demo speech, 2.5 s of silence, then more speech cut off by `interrupt()` after
1.2 s, then silence. Top: one frame of each moment (speaking, listening with a blink, the two frames after
the interruption, a blink while listening); bottom: the mouth opening of every frame's motion (the largest mouth
coefficient of x; 0 = the portrait's rest mouth) and its eye opening, with the states shaded.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vasa.agent.avatar import LiveAvatar
from vasa.evaluation.pictures import label, save_png, tile

SIZE = 256
COLOURS = {"speaking": "#c8e6c9", "listening": "#e3f2fd", "interrupted": "#ffcdd2"}


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vasa.bench import _speech
    from vasa.demo import demo_portrait
    from vasa.pipeline import TalkingHead

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    head = TalkingHead.from_pretrained("live", size=SIZE)
    head.set_source(demo_portrait())
    frames = []
    avatar = LiveAvatar(head, frames.append)
    speech = _speech(6.0)
    avatar.start()
    try:
        avatar.say(speech[:40000])
        avatar.end_utterance()
        time.sleep(5.0)
        avatar.say(speech[40000:])
        time.sleep(1.2 + avatar.session.algorithmic_latency_s)
        avatar.interrupt()
        time.sleep(3.0)
    finally:
        avatar.close()
    mouth_columns = 6 + np.flatnonzero(head.face.mouth_mask)
    lids = head.face.eyelids
    rest = lids.opening(head.source.appearance)
    t = np.array([f.time_s for f in frames])
    mouth = np.array([np.abs(f.motion[mouth_columns]).max() for f in frames])
    eyes = np.array([((rest + lids.jacobian @ f.motion[6:]) / rest).mean() for f in frames])
    states = [f.state for f in frames]

    def pick(condition, key):
        candidates = [k for k, f in enumerate(frames) if condition(k, f) and f.image is not None]
        return max(candidates, key=key) if candidates else None

    cut = states.index("interrupted")
    chosen = [("speaking", pick(lambda k, f: f.state == "speaking" and k < cut, lambda k: mouth[k])),
              ("listening", pick(lambda k, f: f.state == "listening" and 3.0 <= f.time_s <= 4.0, lambda k: -abs(t[k] - 3.5))),
              ("cut +0", cut), ("cut +1", cut + 1),
              ("blink", pick(lambda k, f: f.state == "listening", lambda k: -eyes[k]))]
    strip = np.concatenate([label(tile(frames[k].image, 200), f"{name} {t[k]:.2f}s", scale=0.45) for name, k in chosen
                            if k is not None], axis=1)
    fig, ax = plt.subplots(figsize=(strip.shape[1] / 100, 2.6), dpi=100)
    for k in range(len(frames)):
        ax.axvspan(t[k], t[k] + 0.04, color=COLOURS[states[k]], lw=0)
    ax.plot(t, mouth / max(mouth.max(), 1e-9), color="#1b5e20", label="mouth (0 = at rest)")
    ax.plot(t, eyes, color="#0d47a1", label="eye opening (1 = the portrait's)")
    ax.axvline(t[cut], color="#b71c1c", ls="--", label="first frame after the interruption")
    ax.set_xlabel("stream time (s); green speaking, blue listening, red interrupted")
    ax.set_xlim(t[0], t[-1])
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.canvas.draw()
    plot = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    plt.close(fig)
    width = max(strip.shape[1], plot.shape[1])
    pad = lambda image: np.pad(image, ((0, 0), (0, width - image.shape[1]), (0, 0)), constant_values=255)
    save_png(args.out, np.concatenate([pad(strip), pad(plot)], axis=0))
    print(f"wrote {args.out}: {len(frames)} frames, {sum(s == 'speaking' for s in states)} speaking, "
          f"{avatar.stats.interrupted_frames} dropped by the interruption, slipped {avatar.stats.slipped_s:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
