"""Does z_dyn carry the mouth? The swap toy of tests/test_face_neural.py (`vasa.face.neural.toy`), with the
switches that located why it did not (docs/face_neural.md, "Why the mouth did not follow z_dyn").

    python scripts/probe_face_neural_swap.py [--seeds 0 1 2] [--steps 180] [--dynamics supervised|encoder] [--no-basis]

A `tiny` model is fitted (1 thread) to the test's four cartoon frames (head left/right x mouth closed/
open, 12 source-driver pairs, lr 6e-3) exactly as the test's fixture does (`fit_swap_toy`).
--dynamics supervised (the test, and the trainer's default): a linear read-out of z_dyn is trained
against the known mouth height (`losses.DynamicsProbe`); encoder: no such term, z_dyn is whatever the
other losses make of it. --no-basis zeroes and freezes the warp generators' `dynamics_basis` (the model
as it was before that path existed). Printed per seed: head x (crop units) and mouth darkness (0-255)
of frame 0's renders with its own motion ("0"), frame 3's ("3"), frame 3's pose ("pose") and frame 3's
z_dyn ("dyn"); how much the encoder's z_dyn differs between mouth states and between head positions
(mean |difference| over its components); whether the two swap tests' assertions hold.
"""

from __future__ import annotations

import argparse
import time

import torch

from vasa.face.neural import toy  # the test's own frames, fit loop, measure and checks


def freeze_basis(model) -> None:
    for generator in (model.warp_to_canonical, model.warp_to_driving):
        torch.nn.init.zeros_(generator.dynamics_basis.weight)
        generator.dynamics_basis.weight.requires_grad_(False)


def probe(seed: int, steps: int, supervised: bool, basis: bool) -> None:
    start = time.perf_counter()
    model, images = toy.fit_swap_toy(seed, steps, supervised, prepare=None if basis else freeze_basis)
    seconds = time.perf_counter() - start
    measured = toy.swap_renders(model, images)
    with torch.no_grad():
        encoded = model.encode_motion(images)[1]  # (4, K) the encoder's z_dyn
    mouth_split = float(((encoded[0] - encoded[1]).abs().mean() + (encoded[2] - encoded[3]).abs().mean()) / 2)
    head_split = float(((encoded[0] - encoded[2]).abs().mean() + (encoded[1] - encoded[3]).abs().mean()) / 2)
    verdicts = ["FAIL" if check(measured) else "pass" for check in (toy.pose_swap_failures, toy.dynamics_swap_failures)]
    cells = "  ".join(f"{k}: x {x:.3f} mouth {m:5.1f}" for k, (x, m) in measured.items())
    print(f"seed {seed}  {cells}  |  encoder z_dyn split: mouth {mouth_split:.4f} head {head_split:.4f}  |  "
          f"pose test {verdicts[0]}, dynamics test {verdicts[1]}  ({seconds:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=toy.FIT_STEPS)
    parser.add_argument("--dynamics", choices=["supervised", "encoder"], default="supervised")
    parser.add_argument("--no-basis", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"tiny, {args.steps} steps, z_dyn read-out supervised: {args.dynamics == 'supervised'}, "
          f"dynamics basis: {'off' if args.no_basis else 'on'}")
    for seed in args.seeds:
        probe(seed, args.steps, args.dynamics == "supervised", not args.no_basis)


if __name__ == "__main__":
    main()
