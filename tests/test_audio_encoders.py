"""Audio encoders at the video fps: exact frame counts, streaming == offline, lookahead, wav2vec2
from a folder, Whisper's log-mel against transformers' reference, VAD on speech vs silence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from test_audio_loading import flite_speech
from test_imports import imports_of, sources, within
from vasa.audio import (SAMPLE_RATE, AudioFeatures, LogMelEncoder, TransformersEncoder, VoiceActivity,
                        WhisperEncoder, WindowSchedule, load_audio, load_encoder)
from vasa.audio import mel
from vasa.audio.encoders import encoder_spec, parse_encoder_spec
from vasa.errors import VasaError

SHARED_AUDIO = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "audio"
STREAM_TOLERANCE = 1e-5  # chunked vs offline: same windows on the same samples; in practice exactly 0


@pytest.fixture(scope="session")
def whisper() -> WhisperEncoder:
    return WhisperEncoder(threads=1)


@pytest.fixture(scope="session")
def vad() -> VoiceActivity:
    return VoiceActivity()


@pytest.fixture(scope="session")
def speech(tmp_path_factory) -> np.ndarray:
    return flite_speech(tmp_path_factory.mktemp("tts") / "speech.wav")


@pytest.fixture(scope="session")
def tiny_wav2vec2(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer wav2vec2 saved with save_pretrained (safetensors)."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    folder = tmp_path_factory.mktemp("wav2vec2")
    Wav2Vec2Model(config).eval().save_pretrained(folder)
    return folder


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(round(seconds * SAMPLE_RATE)))).astype(np.float32)


def stream_in_chunks(encoder, waveform, sizes, vad=None) -> AudioFeatures:
    """Push `waveform` in chunks cycling through `sizes` (samples); check frames arrive in order."""
    stream, parts, start, i = encoder.stream(vad), [], 0, 0
    while start < len(waveform):
        part = stream.push(waveform[start : start + sizes[i % len(sizes)]])
        assert part.start_frame == sum(len(p) for p in parts)
        parts.append(part)
        start += sizes[i % len(sizes)]
        i += 1
    parts.append(stream.flush())
    return AudioFeatures.concatenate(parts)


# --- frame counts --------------------------------------------------------------------------

@pytest.mark.parametrize("fps", [25.0, 30.0, 24.0])
@pytest.mark.parametrize("seconds", [0.013, 0.5, 1.0, 1.37, 2.011, 3.3337])
def test_frame_count_is_round_duration_times_fps(fps, seconds):
    waveform = noise(seconds)
    features = LogMelEncoder(fps=fps).encode(waveform)
    assert features.features.shape == (round(len(waveform) / SAMPLE_RATE * fps), 80)
    assert features.features.dtype == np.float32 and np.all(np.isfinite(features.features))


@pytest.mark.parametrize("seconds", [0.3, 1.37, 2.011])
def test_whisper_frame_counts_and_features(whisper, seconds):
    features = whisper.encode(noise(seconds)).features
    assert features.shape == (round(seconds * 25), 384) and np.all(np.isfinite(features))


def test_silence_encodes_and_differs_from_sound(whisper):
    silent = whisper.encode(np.zeros(SAMPLE_RATE, np.float32)).features
    loud = whisper.encode(noise(1.0)).features
    assert silent.shape == loud.shape == (25, 384)
    assert np.abs(silent - loud).mean() > 0.1


# --- streaming equals offline --------------------------------------------------------------

CHUNK_SIZES = [[320], [777], [5003], [8000], [333, 4001, 1234, 7999]]  # 20 ms .. 500 ms, none on the 0.4 s hop


@pytest.mark.parametrize("sizes", CHUNK_SIZES)
def test_mel_stream_equals_offline(sizes, vad):
    waveform = noise(2.37)
    encoder = LogMelEncoder()
    offline = encoder.encode(waveform, vad=vad)
    online = stream_in_chunks(encoder, waveform, sizes, vad=vad)
    np.testing.assert_allclose(online.features, offline.features, atol=STREAM_TOLERANCE)
    np.testing.assert_allclose(online.voice, offline.voice, atol=STREAM_TOLERANCE)


@pytest.mark.parametrize("sizes", [[777], [333, 4001, 1234, 7999]])
def test_whisper_stream_equals_offline(whisper, sizes):
    waveform = noise(3.1, seed=1)
    offline = whisper.encode(waveform)
    online = stream_in_chunks(whisper, waveform, sizes)
    assert len(online) == len(offline) == round(3.1 * 25)
    np.testing.assert_allclose(online.features, offline.features, atol=STREAM_TOLERANCE)


def test_frames_are_final_within_the_documented_latency():
    encoder = LogMelEncoder(schedule=WindowSchedule(hop_s=0.2, left_context_s=0.1, lookahead_s=0.1))
    stream = encoder.stream()
    latency_s = stream.latency_ms / 1000
    assert latency_s == pytest.approx(0.3)
    received, emitted = 0, 0
    for chunk in np.array_split(noise(2.0), 37):
        emitted += len(stream.push(chunk))
        received += len(chunk)
        seconds = received / SAMPLE_RATE
        assert emitted >= int((seconds - latency_s) * encoder.fps)  # every frame older than the latency is out
        assert emitted <= seconds * encoder.fps  # and no frame before its audio ended


def test_lookahead_bounds_what_a_frame_sees():
    """Changing audio after hop end + lookahead leaves that hop's frames untouched (mel is local, so
    only the bound is tested here; the Whisper test below also shows the context inside it matters)."""
    schedule = WindowSchedule(hop_s=0.4, left_context_s=0.5, lookahead_s=0.2)
    encoder = LogMelEncoder(schedule=schedule)
    waveform = noise(2.0)
    reference = encoder.encode(waveform).features
    hop_end = 10 * 640  # samples: first hop is frames 0..9
    after = waveform.copy()
    after[hop_end + 3200 :] = noise(2.0, seed=5)[hop_end + 3200 :]
    np.testing.assert_array_equal(encoder.encode(after).features[:10], reference[:10])
    assert schedule.latency_ms(25.0) == pytest.approx(600.0)


def test_whisper_context_is_bounded_by_the_schedule(whisper):
    waveform = noise(2.0)
    reference = whisper.encode(waveform).features
    lookahead = int(whisper.schedule.lookahead_s * SAMPLE_RATE)
    changed = waveform.copy()
    changed[10 * 640 + lookahead :] = 0.0  # after the first hop's window
    np.testing.assert_allclose(whisper.encode(changed).features[:10], reference[:10], atol=STREAM_TOLERANCE)
    changed[10 * 640 + lookahead - 1600 :] = 0.0  # inside it
    assert np.abs(whisper.encode(changed).features[:10] - reference[:10]).max() > 1e-3


def test_an_encoder_spec_carries_its_schedule_and_loads_it_back():
    schedule = WindowSchedule(hop_s=0.16, left_context_s=1.0, lookahead_s=0.04)
    spec = encoder_spec("mel", schedule)
    assert spec == "mel:hop=0.16,left=1,lookahead=0.04" and encoder_spec("mel") == "mel"
    assert parse_encoder_spec(spec) == ("mel", schedule, None) and parse_encoder_spec("whisper") == ("whisper", None, None)
    assert load_encoder(spec).schedule == schedule
    assert load_encoder("mel").schedule == LogMelEncoder.default_schedule
    with pytest.raises(VasaError, match="unknown key 'hops'"):
        load_encoder("mel:hops=0.2")
    with pytest.raises(VasaError, match="must be a number"):
        load_encoder("mel:hop=fast")


def test_stream_misuse_is_a_clear_error():
    stream = LogMelEncoder().stream()
    with pytest.raises(VasaError, match="no audio"):
        stream.flush()
    stream = LogMelEncoder().stream()
    with pytest.raises(VasaError, match="mono"):
        stream.push(np.zeros((2, 100), np.float32))
    stream.push(np.zeros(100, np.float32))
    stream.flush()
    with pytest.raises(VasaError, match="flushed"):
        stream.push(np.zeros(100, np.float32))
    with pytest.raises(VasaError, match="hop_s"):
        WindowSchedule(hop_s=0)


# --- Whisper's log-mel, known answers --------------------------------------------------------

def test_mel_filters_match_the_slaney_reference():
    from transformers.audio_utils import mel_filter_bank

    reference = mel_filter_bank(num_frequency_bins=201, num_mel_filters=80, min_frequency=0.0,
                                max_frequency=8000.0, sampling_rate=16000, norm="slaney", mel_scale="slaney")
    np.testing.assert_allclose(mel.mel_filters(), reference.T, atol=1e-7)


def test_log_mel_matches_whisper_feature_extractor():
    from transformers import WhisperFeatureExtractor

    waveform = noise(2.5)
    reference = WhisperFeatureExtractor(feature_size=80)(waveform, sampling_rate=16000, return_tensors="np")
    padded = np.pad(waveform, (0, 30 * SAMPLE_RATE - len(waveform)))
    np.testing.assert_allclose(mel.log_mel(padded), reference["input_features"][0], atol=1e-4)


def test_pure_tone_lands_in_its_mel_band():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    spectrum = mel.mel_power(np.sin(2 * np.pi * 1000 * t).astype(np.float32)).numpy()
    centres = mel.mel_filters().argmax(axis=1) * SAMPLE_RATE / mel.N_FFT
    assert abs(centres[spectrum.mean(axis=1).argmax()] - 1000) < 60


# --- wav2vec2 / HuBERT from a folder --------------------------------------------------------

def test_wav2vec2_from_a_folder(tiny_wav2vec2):
    encoder = load_encoder("wav2vec2", model_path=tiny_wav2vec2)
    assert isinstance(encoder, TransformersEncoder) and encoder.native_rate_hz == 50
    waveform = noise(1.37)
    features = encoder.encode(waveform).features
    assert features.shape == (round(1.37 * 25), 32) and np.all(np.isfinite(features))
    np.testing.assert_array_equal(encoder.encode(waveform).features, features)  # deterministic (eval mode)
    online = stream_in_chunks(encoder, waveform, [777, 3001])
    np.testing.assert_allclose(online.features, features, atol=STREAM_TOLERANCE)
    first_layer = TransformersEncoder(tiny_wav2vec2, layer=0).encode(waveform).features
    assert first_layer.shape == features.shape and not np.allclose(first_layer, features)


def test_hubert_from_a_folder(tmp_path):
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    config = HubertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                          conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    HubertModel(config).save_pretrained(tmp_path)
    assert TransformersEncoder(tmp_path).encode(noise(0.9)).features.shape == (22, 16)


def test_transformers_folder_errors(tmp_path):
    with pytest.raises(VasaError, match="config.json"):
        TransformersEncoder(tmp_path)
    with pytest.raises(VasaError, match="model_path"):
        load_encoder("wav2vec2")
    with pytest.raises(VasaError, match="unknown"):
        load_encoder("deepspeech")


# --- voice activity ---------------------------------------------------------------------------

def test_vad_speech_vs_silence(vad, speech, whisper):
    silence = np.zeros(SAMPLE_RATE, np.float32)
    waveform = np.concatenate([silence, speech, silence])
    features = whisper.encode(waveform, vad=vad)
    assert features.voice.shape == (len(features),)
    assert np.all((features.voice >= 0) & (features.voice <= 1))
    assert features.voice[:20].max() < 0.1 and features.voice[-20:].max() < 0.1  # 0.8 s inside each silence
    speech_frames = features.voice[25 + 5 : 25 + round(len(speech) / SAMPLE_RATE * 25) - 5]
    assert np.mean(speech_frames > 0.5) > 0.6  # pauses between words may read as silence
    assert vad.probabilities(noise(1.0)).mean() < 0.5


def test_vad_model_path_errors_are_one_line(tmp_path):
    with pytest.raises(VasaError, match="not found"):
        VoiceActivity(tmp_path / "absent.bin")
    (tmp_path / "bad.bin").write_bytes(b"\x00" * 4096)
    with pytest.raises(VasaError, match="not a Silero VAD model"):
        VoiceActivity(tmp_path / "bad.bin")


def test_vad_clones_keep_their_own_state(vad):
    """Two streams on clones, interleaved, give what each gives alone (the shipped demo speech)."""
    from vasa.demo import DEMO_SPEECH

    speech = load_audio(DEMO_SPEECH)[: 4 * SAMPLE_RATE]
    alone = vad.clone().probabilities(speech)
    assert alone.max() > 0.9 and alone.min() < 0.5  # speech and pauses: the state matters
    a, b = vad.clone(), vad.clone()
    a.push(np.zeros(4096, np.float32))  # b must not see a's silence
    parts = [b.push(chunk) for chunk in np.array_split(speech, 7)] + [b.flush()]
    np.testing.assert_allclose(np.concatenate(parts), alone, atol=1e-6)


def test_vad_is_chunk_independent(vad, speech):
    whole = vad.probabilities(speech)
    vad.reset()
    parts = [vad.push(chunk) for chunk in np.array_split(speech, 41)] + [vad.flush()]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)
    assert len(whole) == -(-len(speech) // 512)


# --- the real clips ----------------------------------------------------------------------------

@pytest.mark.skipif(not SHARED_AUDIO.is_dir(), reason="shared media folder not present")
def test_real_clips_load_and_encode(whisper, vad):
    clips = sorted(SHARED_AUDIO.iterdir())
    assert clips
    for clip in clips:
        waveform = load_audio(clip)
        features = whisper.encode(waveform[: 3 * SAMPLE_RATE], vad=vad)  # 3 s each keeps the suite fast
        assert features.features.shape == (75, 384) and np.all(np.isfinite(features.features))
        assert features.voice.max() > 0.5, f"no speech found in {clip.name}"


def test_audio_and_face_never_import_each_other():
    audio_files, face_files = sources("audio"), sources("face")
    assert len(audio_files) >= 6
    for path in audio_files:
        assert not within(imports_of(path), "vasa.face"), path
        assert not within(imports_of(path), "vasa.motion"), path
    for path in face_files:
        assert not within(imports_of(path), "vasa.audio"), path
