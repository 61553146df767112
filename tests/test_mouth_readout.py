"""The mouth read-out: its fit, its stream, its place in a motion model file and in the pipeline."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from safetensors.torch import load_file, save_file

from conftest import voiced_bursts
from test_motion_dit import randomized
from vasa.errors import VasaError
from vasa.latents import POSE_DIM
from vasa.motion import PRESETS, load_motion_model, save_motion_model
from vasa.motion.checkpoint import load_mouth_readout, read_metadata
from vasa.motion.readout import CONFIG_KEY, CONTEXT, MouthReadout, ReadoutStream, fit_mouth_readout, stack_context
from vasa.pipeline import Controls, TalkingHead
from vasa.streaming import StreamingSession

TINY_MEL = dataclasses.replace(PRESETS["tiny"], audio_dim=80)
RATE = 16000
FAST = Controls(steps=2, seed=0, smoothing=0.3)
ROOT = Path(__file__).resolve().parents[1]


def linear_data(seed: int = 0, segments: int = 8, frames: int = 120, dim: int = 6, columns=(6, 8, 9)):
    """Segments whose x columns are a known linear map of the stacked features, plus a little noise."""
    truth = np.random.default_rng(100).normal(size=(dim * len(CONTEXT), len(columns)))  # one map for every seed
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(segments):
        features = rng.normal(size=(frames, dim)) * 2.0 + 1.0
        x = rng.normal(size=(frames, 12))
        x[:, list(columns)] = stack_context(features) @ truth + 0.5 + 0.01 * rng.normal(size=(frames, len(columns)))
        parts.append((features, x))
    return parts, truth


def test_the_fit_recovers_a_linear_map():
    parts, truth = linear_data()
    readout = fit_mouth_readout(parts, [6, 8, 9], strength=1e-6)
    assert readout.columns == (6, 8, 9) and readout.audio_dim == 6
    fresh, _ = linear_data(seed=1)
    features, x = fresh[0]
    predicted = readout.predict(features)
    assert np.abs(predicted - x[:, [6, 8, 9]]).max() < 0.1
    # a strong ridge shrinks toward the training mean, never past it
    shrunk = fit_mouth_readout(parts, [6, 8, 9], strength=1e3).predict(features)
    assert np.abs(shrunk - shrunk.mean(axis=0)).max() < 0.2 * np.abs(predicted - predicted.mean(axis=0)).max()


def test_the_fit_needs_data_and_a_context_around_the_frame():
    with pytest.raises(ValueError, match="at least two frames"):
        fit_mouth_readout([], [6])
    for context in [(), (1, 2), (-2, -1), (2, 0), (0, 0)]:
        with pytest.raises(ValueError, match="context"):
            MouthReadout(4, [6], context=context)
    for share in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="share"):
            MouthReadout(4, [6], blend=share)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=12),
       st.sampled_from([CONTEXT, (-4, -2, 0, 1, 3), (0,), (-1, 0), (0, 2)]))
def test_any_chunking_gives_the_whole_sequence_read_out(chunks, context):
    parts, _ = linear_data(segments=2, frames=40)
    readout = fit_mouth_readout(parts, [6, 8, 9], context=context)
    assert readout.lookahead_frames == context[-1]
    features = np.random.default_rng(2).normal(size=(sum(chunks), 6))
    stream, out, start = ReadoutStream(readout), [], 0
    for size in chunks:
        part = stream.push(features[start:start + size])
        start += size
        assert len(part) <= max(start - context[-1], 0)  # a frame waits for its last context frame
        out.append(part)
    out.append(stream.flush())
    got = np.concatenate(out)
    assert got.shape == (len(features), 3)
    if len(features):
        assert np.allclose(got, readout.predict(features), atol=1e-12)


@pytest.fixture(scope="module")
def readout() -> MouthReadout:
    """A read-out of the tiny mel model's mouth columns with large weights (its effect is plain to see)."""
    from vasa.face.mesh.model import FaceModel

    columns = POSE_DIM + np.flatnonzero(FaceModel.load().group_mask("mouth"))
    readout = MouthReadout(TINY_MEL.audio_dim, columns, blend=0.75)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        readout.weight.copy_(torch.randn(readout.weight.shape, generator=generator, dtype=torch.float64) * 0.05)
        readout.mean.fill_(-5.0)
    return readout


@pytest.fixture(scope="module")
def paths(tmp_path_factory, readout) -> tuple[Path, Path]:
    """(the tiny model without a read-out, the same weights with one)."""
    folder = tmp_path_factory.mktemp("readout")
    model = randomized(TINY_MEL, seed=0)
    plain, carrying = folder / "plain.safetensors", folder / "readout.safetensors"
    save_motion_model(plain, model, {"audio_encoder": "mel"})
    save_motion_model(carrying, model, {"audio_encoder": "mel"}, readout)
    return plain, carrying


def test_a_model_file_carries_its_read_out(paths, readout):
    plain, carrying = paths
    assert load_mouth_readout(plain) is None
    loaded = load_mouth_readout(carrying)
    assert loaded.columns == readout.columns and loaded.blend == 0.75
    for name, tensor in readout.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    a, b = load_motion_model(plain), load_motion_model(carrying)  # the generator loads strictly from both
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_a_broken_read_out_is_a_clear_error(paths, tmp_path):
    _, carrying = paths
    tensors, metadata = load_file(str(carrying)), read_metadata(carrying)
    config = json.loads(metadata[CONFIG_KEY])
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, str(broken), {**metadata, CONFIG_KEY: json.dumps({**config, "audio_dim": 81})})
    with pytest.raises(VasaError, match="mouth read-out cannot be read"):
        load_mouth_readout(broken)
    missing = tmp_path / "missing.safetensors"
    save_file({k: v for k, v in tensors.items() if not k.endswith("weight") or "mouth" not in k}, str(missing), metadata)
    with pytest.raises(VasaError, match="mouth read-out cannot be read"):
        load_mouth_readout(missing)


@pytest.fixture(scope="module")
def heads(paths, astronaut):
    plain, carrying = paths
    out = []
    for path in (plain, carrying):
        head = TalkingHead.from_pretrained(path, size=96)
        head.set_source(astronaut)
        out.append(head)
    return out


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return voiced_bursts(1.9, voiced_until=1.4, rate=RATE)


def motion(head, speech, **controls) -> np.ndarray:
    return np.concatenate(list(head.motion(speech, dataclasses.replace(FAST, **controls))))


def test_the_read_out_moves_the_mouth_only(heads, speech, readout):
    plain, carrying = heads
    mouth = list(readout.columns)
    other = [c for c in range(TINY_MEL.motion_dim) if c not in mouth]
    generated = motion(plain, speech, close_mouth_in_silence=False)
    assert np.array_equal(motion(carrying, speech, close_mouth_in_silence=False, mouth_readout=0.0), generated)
    mixed = motion(carrying, speech, close_mouth_in_silence=False)  # the file's share, 0.75
    assert np.array_equal(mixed[:, other], generated[:, other])
    assert not np.allclose(mixed[:, mouth], generated[:, mouth])
    # all read-out: the mouth columns are the read-out of the features the generator heard
    read = motion(carrying, speech, close_mouth_in_silence=False, mouth_readout=1.0)
    features = carrying.encoder.encode(speech).features
    assert np.allclose(read[:, mouth], readout.predict(features)[:len(read)], atol=1e-6)
    assert np.allclose(mixed[:, mouth], 0.25 * generated[:, mouth] + 0.75 * read[:, mouth], atol=1e-6)


@pytest.mark.parametrize("chunk", [333, 4001])
def test_streaming_with_a_read_out_equals_offline(heads, speech, chunk):
    head = heads[1]
    offline = list(head.frames(speech, FAST))
    with StreamingSession(head, controls=FAST) as session:
        for start in range(0, len(speech), chunk):
            session.push(speech[start:start + chunk])
        session.end()
        frames = list(session.frames())
    assert len(frames) == len(offline) == round(len(speech) / RATE * 25)
    assert all(np.array_equal(f.image, e) for f, e in zip(frames, offline))


@pytest.mark.parametrize("value", [1.5, -0.1, float("nan"), "0.5", True])
def test_the_read_out_share_is_checked(value):
    with pytest.raises(VasaError, match="mouth_readout"):
        Controls(mouth_readout=value)


def test_a_read_out_of_other_features_is_refused(paths, tmp_path, astronaut):
    other = MouthReadout(TINY_MEL.audio_dim + 1, [POSE_DIM])
    path = tmp_path / "other.safetensors"
    save_motion_model(path, randomized(TINY_MEL, seed=0), {"audio_encoder": "mel"}, other)
    with pytest.raises(VasaError, match="does not fit the model"):
        TalkingHead.from_pretrained(path, size=96)


def test_the_ship_script_fits_keeps_and_drops_a_read_out(paths, tmp_path):
    _, carrying = paths
    script = ROOT / "scripts" / "ship_motion_model.py"

    def ship(*args):
        return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                              cwd=ROOT)

    kept = tmp_path / "kept.safetensors"
    assert ship(carrying, kept, "--cfg-audio", 2, "--mouth-readout", 0.5).returncode == 0
    assert load_mouth_readout(kept).blend == 0.5 and read_metadata(kept)["cfg_audio"] == "2"
    refused = ship(carrying, tmp_path / "refused.safetensors", "--cfg-audio", 2, "--mouth-readout", 1.5)
    assert refused.returncode == 2 and "between 0 and 1" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "refused.safetensors").exists()
    dropped = tmp_path / "dropped.safetensors"
    assert ship(carrying, dropped, "--cfg-audio", 2, "--mouth-readout", 0).returncode == 0
    assert load_mouth_readout(dropped) is None
    load_motion_model(dropped)


def test_the_live_design_latency_counts_the_read_out_lookahead(tmp_path):
    """The live model's 4-frame windows already wait for 3 frames of voice lookahead: a read-out that
    reads no further ahead costs nothing; one that reads 4 frames ahead makes frame 0 wait for the features
    of frame 4 (hop ending at frame 6, + 40 ms) and even frames one hop longer than the gate has them wait."""
    from vasa.streaming import design_latency_s

    live = dataclasses.replace(PRESETS["live"], width=32, depth=1, heads=2, audio_dim=80)
    spec = "mel:hop=0.08,left=1,lookahead=0.04"
    latencies = {}
    for name, context in (("none", None), ("near", (-4, -2, 0, 1, 3)), ("far", CONTEXT)):
        readout = None if context is None else MouthReadout(80, [POSE_DIM], context=context)
        save_motion_model(tmp_path / f"{name}.safetensors", randomized(live, seed=0), {"audio_encoder": spec}, readout)
        head = TalkingHead.from_pretrained(tmp_path / f"{name}.safetensors", size=96)
        latencies[name] = design_latency_s(head), design_latency_s(head, first=True)
        if context is not None:
            assert design_latency_s(head, readout=False) == pytest.approx(latencies["none"][0])
    assert latencies["near"] == pytest.approx(latencies["none"])
    assert latencies["none"] == pytest.approx((6 / 25, 4 / 25 + 0.04))
    assert latencies["far"] == pytest.approx((7 / 25, 6 / 25 + 0.04))
