"""Whisper's encoder layers in PyTorch (`vasa.audio.whisper_layers`): the CTranslate2 file format read
back exactly, the last layer equal to CTranslate2's own encoder, layer choice through the encoder spec."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import vasa
from vasa.audio import WhisperEncoder, load_audio, load_encoder
from vasa.audio.encoders import encoder_spec, parse_encoder_spec
from vasa.audio.whisper import packaged_whisper_path
from vasa.audio.whisper_layers import WhisperLayers, read_ct2_encoder
from vasa.errors import VasaError

CT2_TOLERANCE = 1e-4  # float32 here and in CTranslate2, summed in another order (output values reach ~10)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(Path(vasa.__file__).parent / "assets" / "demo_speech.wav")  # the project's flite speech


@pytest.fixture(scope="module")
def packaged() -> WhisperLayers:
    return WhisperLayers.load(packaged_whisper_path())


def write_ct2(path: Path, variables: dict[str, np.ndarray], dtypes: dict[str, int] | None = None) -> None:
    """A model.bin in CTranslate2's layout: header, then name, rank, dims, dtype, byte count, bytes
    (`dtypes` overrides the code written for a variable, e.g. 5 for bfloat16 bits held as int16)."""
    codes = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.float16): 4}
    with path.open("wb") as f:
        spec = b"WhisperSpec\0"
        f.write(struct.pack("<IH", 6, len(spec)) + spec + struct.pack("<II", 3, len(variables)))
        for name, value in variables.items():
            encoded = name.encode() + b"\0"
            data = np.ascontiguousarray(value).tobytes()
            f.write(struct.pack("<H", len(encoded)) + encoded + struct.pack("<B", value.ndim))
            code = (dtypes or {}).get(name, codes[value.dtype])
            f.write(struct.pack(f"<{value.ndim}I", *value.shape) + struct.pack("<BI", code, len(data)))
            f.write(data)
        f.write(struct.pack("<I", 0))  # no aliases


def test_ct2_variables_read_back_exactly_and_decoder_ones_are_skipped(tmp_path):
    rng = np.random.default_rng(0)
    half = rng.standard_normal((4, 3, 2)).astype(np.float16)
    single = rng.standard_normal(5).astype(np.float32)
    write_ct2(tmp_path / "model.bin", {"decoder/embeddings/weight": rng.standard_normal((3, 3)).astype(np.float32),
                                       "encoder/conv1/weight": half, "encoder/conv1/bias": single,
                                       "encoder/num_heads": np.array(2, np.int16)})
    weights = read_ct2_encoder(tmp_path / "model.bin")
    assert set(weights) == {"conv1/weight", "conv1/bias", "num_heads"}
    assert torch.equal(weights["conv1/weight"], torch.from_numpy(half.astype(np.float32)))
    assert torch.equal(weights["conv1/bias"], torch.from_numpy(single)) and weights["num_heads"].item() == 2


def test_bfloat16_is_widened_and_quantised_matrices_are_refused(tmp_path):
    values = torch.tensor([[1.5, -2.25], [0.0078125, 3.0]])  # exact in bfloat16
    bits = values.to(torch.bfloat16).view(torch.int16).numpy()
    path = tmp_path / "model.bin"
    write_ct2(path, {"encoder/conv1/weight": bits}, dtypes={"encoder/conv1/weight": 5})
    assert torch.equal(read_ct2_encoder(path)["conv1/weight"], values)
    write_ct2(path, {"encoder/conv1/weight": np.ones((2, 2), np.int8)})  # int8 needs its scales: refused
    with pytest.raises(VasaError, match="quantised"):
        read_ct2_encoder(path)


def test_a_truncated_file_is_a_clear_error(tmp_path):
    write_ct2(tmp_path / "model.bin", {"encoder/conv1/weight": np.ones((4, 3), np.float32)})
    data = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[:-20])
    with pytest.raises(VasaError, match="not a readable CTranslate2 model"):
        read_ct2_encoder(tmp_path / "model.bin")


def test_a_file_without_an_encoder_is_a_clear_error(tmp_path):
    write_ct2(tmp_path / "model.bin", {"decoder/x": np.zeros(2, np.float32)})
    with pytest.raises(VasaError, match="no Whisper encoder"):
        read_ct2_encoder(tmp_path / "model.bin")


def test_the_last_layer_is_ctranslate2s_encoder_output(speech):
    ours = load_encoder("whisper:layers=4").encode(speech[:48000]).features
    reference = WhisperEncoder(threads=1).encode(speech[:48000]).features
    assert ours.shape == reference.shape == (75, 384)
    assert np.abs(ours - reference).max() < CT2_TOLERANCE


def test_layers_are_concatenated_in_the_order_asked(packaged, speech):
    from vasa.audio import mel

    log_mel = torch.as_tensor(mel.log_mel(speech[:16000]))[None]  # (1, 80, 100)
    each = {layer: packaged(log_mel, (layer,)) for layer in range(5)}
    assert all(value.shape == (1, 50, 384) for value in each.values())
    assert torch.equal(packaged(log_mel, (3, 1)), torch.cat([each[3], each[1]], dim=-1))
    assert all(not torch.allclose(each[k], each[k + 1]) for k in range(4))  # every block changes the stream


def test_layer_choice_is_checked(packaged):
    for layers in [(5,), (-1,), ()]:
        with pytest.raises(VasaError, match="0 \\(stem\\) to 4"):
            packaged.check_layers(layers)
    with pytest.raises(VasaError, match="0 \\(stem\\) to 4"):
        load_encoder("whisper:layers=7")
    with pytest.raises(VasaError, match="whisper only"):
        load_encoder("mel:layers=2")
    with pytest.raises(VasaError, match="whole numbers"):
        load_encoder("whisper:layers=two")


def test_the_spec_carries_layers_and_schedule_and_loads_them_back():
    from vasa.audio import WindowSchedule

    schedule = WindowSchedule(0.08, 1.0, 0.04)
    spec = encoder_spec("whisper", schedule, (2, 4))
    assert spec == "whisper:layers=2+4,hop=0.08,left=1,lookahead=0.04"
    assert parse_encoder_spec(spec) == ("whisper", schedule, (2, 4))
    assert encoder_spec("whisper", None, (3,)) == "whisper:layers=3" and encoder_spec("whisper") == "whisper"
    encoder = load_encoder(spec)
    assert encoder.layers == (2, 4) and encoder.dim == 768 and encoder.schedule == schedule


def test_layered_features_stream_like_offline(speech):
    encoder = load_encoder("whisper:layers=3")
    offline = encoder.encode(speech).features
    stream = encoder.stream()
    parts = [stream.push(speech[i:i + 5003]).features for i in range(0, len(speech), 5003)]
    assert np.array_equal(np.concatenate(parts + [stream.flush().features]), offline)


def test_a_model_split_into_parts_reads_as_the_whole_file(tmp_path):
    rng = np.random.default_rng(0)
    variables = {"encoder/conv1/weight": rng.normal(size=(4, 80, 3)).astype(np.float32),
                 "decoder/embeddings/weight": rng.normal(size=(50, 4)).astype(np.float16),
                 "encoder/layer_0/ffn/linear_0/bias": rng.normal(size=(16,)).astype(np.float16)}
    write_ct2(tmp_path / "model.bin", variables)
    whole = (tmp_path / "model.bin").read_bytes()
    for cut in (7, 300, len(whole) // 2, len(whole) - 5):  # inside the header, a name, the data
        (tmp_path / "a").write_bytes(whole[:cut])
        (tmp_path / "b").write_bytes(whole[cut:])
        parts = read_ct2_encoder([tmp_path / "a", tmp_path / "b"])
        assert set(parts) == {"conv1/weight", "layer_0/ffn/linear_0/bias"}
        for name, value in parts.items():
            assert torch.equal(value, torch.from_numpy(variables["encoder/" + name].astype(np.float32)))
    (tmp_path / "a").write_bytes(whole[:len(whole) // 2])
    (tmp_path / "b").write_bytes(whole[len(whole) // 2:-100])  # the second half cut short
    with pytest.raises(VasaError, match="not a readable CTranslate2 model"):
        read_ct2_encoder([tmp_path / "a", tmp_path / "b"])


def test_packaged_whisper_base_matches_ctranslate2_and_layer_3_is_half_of_it(tmp_path, speech):
    """The two halves of Whisper base read as one model.bin; its output equals CTranslate2's own encoder
    on the joined file, and "whisper-base:layers=3" runs 3 of its 6 blocks."""
    from vasa.audio.whisper import packaged_whisper_base_parts

    parts = packaged_whisper_base_parts()
    base = WhisperLayers.load(parts)
    assert (base.blocks, base.width) == (6, 512)
    joined = tmp_path / "base"
    joined.mkdir()
    with (joined / "model.bin").open("wb") as f:
        for part in parts:
            f.write(part.read_bytes())
    (joined / "config.json").write_bytes((parts[0].parent / "config.json").read_bytes())
    for name in ("tokenizer.json", "vocabulary.txt"):
        (joined / name).write_bytes((parts[0].parent / name).read_bytes())
    reference = WhisperEncoder(joined, threads=1).encode(speech[:48000]).features
    ours = load_encoder("whisper-base").encode(speech[:48000]).features
    assert ours.shape == reference.shape == (75, 512)
    assert np.abs(ours - reference).max() < 1e-3 * np.abs(reference).max()
    layer_3 = load_encoder("whisper-base:layers=3")
    assert layer_3.dim == 512 and layer_3.layers == (3,)
    calls = []
    original = WhisperLayers._block
    try:
        WhisperLayers._block = lambda self, x, k: calls.append(k) or original(self, x, k)
        layer_3.encode(speech[:16000])
    finally:
        WhisperLayers._block = original
    assert calls and max(calls) == 2  # blocks 0, 1, 2 only
