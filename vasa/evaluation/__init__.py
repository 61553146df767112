"""`vasa eval`: measure talking-face videos (ours or any method's) and write a report.

measure: every metric on a video, frame RMS, the shifted-audio control; run: folders and the benchmark;
report: markdown, plots, JSON; heldout, controls, robustness: the checks of `vasa generate` that
scripts/eval_generate.py runs (the benchmark's control requests are `controls` too); pictures: tiles and
sheets; ridge: the speech-to-mouth yardstick.
"""
