"""`vasa eval` (`vasa.evaluation`): identical videos score as identical, shifted audio scores worse, the
report and its numbers are written, benchmark cases are found, user mistakes are one line."""

import json
import shutil

import numpy as np
import pytest

from conftest import SHARED_MEDIA
from vasa.cli import main
from vasa.evaluation import measure
from vasa.evaluation.measure import Judges
from vasa.evaluation.run import benchmark_cases, evaluate_folder
from vasa.media import write_wav
from vasa.metrics import contrastive, identity
from vasa.metrics.readout_judge import ReadoutJudge

HELD_OUT_CLIPS = [SHARED_MEDIA / "clips" / f"{name}.mp4" for name in ("retalking_2", "sadtalker_WDA_AOC_000")]


@pytest.fixture(scope="module")
def judges() -> Judges:
    return Judges.load(size=256)


def test_identical_videos_score_as_identical(tmp_path, judges, driver_clip):
    for folder in ("generated", "real"):
        (tmp_path / folder).mkdir()
        shutil.copy(driver_clip, tmp_path / folder / "clip.mp4")
    report = evaluate_folder(judges, tmp_path / "generated", tmp_path / "report", real=tmp_path / "real")
    numbers = json.loads((tmp_path / "report" / "metrics.json").read_text())
    paired = numbers["videos"]["clip"]["paired"]
    assert paired["lip_distance"] == pytest.approx(0.0, abs=1e-9)
    assert paired["mouth_correlation"] == pytest.approx(1.0)
    generated = numbers["summary"]["generated"]
    assert generated["fd_motion"] == pytest.approx(0.0, abs=1e-6)
    assert generated["pose_variation_deg"] == pytest.approx(numbers["summary"]["real video"]["pose_variation_deg"])
    assert generated["pose_variation_deg"] > 0.5  # the clip turns its head
    assert generated["syncnet_confidence"].startswith("skipped: no weights (--syncnet PATH)")
    assert generated["fvd25"].startswith("skipped: no weights (--i3d PATH)")
    text = report.read_text()
    assert "| real video |" in text and "| generated |" in text
    for picture in ("pose.png", "mouth_energy.png", "metric_bars.png"):
        assert (tmp_path / "report" / "img" / picture).stat().st_size > 1000


@pytest.fixture(scope="module")
def held_out(judges):
    if not all(p.is_file() for p in HELD_OUT_CLIPS):
        pytest.skip("needs ../shared/media")
    if judges.capp is None or judges.lipsync is None:
        pytest.skip("the shipped judges are absent")
    return [measure.measure_video_file(judges, p) for p in HELD_OUT_CLIPS]


@pytest.mark.media
@pytest.mark.slow
def test_shifting_the_audio_of_a_real_clip_lowers_the_judges_scores(judges, held_out):
    real = held_out[0]
    for kind, model, shift in (("lipsync", judges.lipsync, 8), ("capp", judges.capp, 25)):
        motion, audio = measure.judge_inputs(judges, real, kind)
        true = contrastive.window_scores(model, motion, audio, hop=5).mean()
        shifted = np.mean([contrastive.window_scores(model, motion, audio, hop=5, shift=s).mean()
                           for s in (shift, -shift)])
        assert true > shifted, kind


@pytest.mark.slow
@pytest.mark.media
def test_sanity_tables_fall_with_the_shift_and_a_readout_capp_has_no_scale_table(judges, held_out):
    tables = measure.sanity_tables(judges, held_out)
    for kind in ("capp", "lipsync"):
        rows = tables[f"{kind}_shift"]
        assert rows[0] > rows[5] and rows[0] > rows[10] and rows[0] > rows[25], (kind, rows)
    assert isinstance(judges.capp, ReadoutJudge) and "capp_pose_scale" not in tables


@pytest.mark.slow
@pytest.mark.media
def test_the_negative_control_row_scores_below_the_real_pairing(judges, held_out):
    """The report's row of real clips with their audio rolled by 1 s, averaged over the held-out clips as
    the report does (the judges are too weak to rank every single short clip)."""
    paired = [measure.judge_metrics(judges, m) for m in held_out]
    rolled = [measure.shifted_audio_metrics(judges, m) for m in held_out]
    paired_energy = [measure.video_metrics(judges, m)["mouth_audio_energy_r"] for m in held_out]
    for key, before in (("lipsync_score", [p["lipsync_score"] for p in paired]), ("capp", [p["capp"] for p in paired]),
                        ("mouth_audio_energy_r", paired_energy)):
        assert np.mean([r[key] for r in rolled]) < np.mean(before), key


@pytest.mark.skipif(not identity.available(), reason="dlib and face_recognition_models are not installed")
def test_identity_is_close_for_the_same_face_and_far_for_another(judges, astronaut, grace_hopper):
    from vasa.media import read_image

    same = identity.identity_similarity(judges.descriptor, astronaut, [astronaut[:, ::-1].copy()])
    other = identity.identity_similarity(judges.descriptor, astronaut, [read_image(grace_hopper)])
    assert same["distance"] < identity.SAME_PERSON_DISTANCE < other["distance"]


def test_benchmark_cases_pair_portraits_speech_and_real_videos(tmp_path, driver_clip, astronaut):
    import cv2

    shutil.copy(driver_clip, tmp_path / "talk.mp4")
    cv2.imwrite(str(tmp_path / "photo.png"), astronaut)
    write_wav(tmp_path / "photo.wav", np.zeros(16000, np.float32))
    cv2.imwrite(str(tmp_path / "lonely.png"), astronaut)  # no speech: not a case
    cases = benchmark_cases(tmp_path)
    assert [(c["name"], c["real"] is not None, c["portrait"] is not None) for c in cases] == \
        [("photo", False, True), ("talk", True, False)]
    assert [c["name"] for c in benchmark_cases(tmp_path, ["talk"])] == ["talk"]
    with pytest.raises(Exception, match="no case absent"):
        benchmark_cases(tmp_path, ["absent"])


def test_command_line_mistakes_are_one_line(tmp_path, capsys):
    assert main(["eval", "--out", str(tmp_path / "r")]) == 2
    assert "either a folder of generated videos or --benchmark" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["eval", str(tmp_path / "empty"), "--out", str(tmp_path / "r"), "--no-identity"]) == 2
    assert "no videos" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "empty"), "--out", str(tmp_path / "r"), "--syncnet", str(tmp_path / "x")]) == 2
    assert "no SyncNet weights" in capsys.readouterr().err


def test_a_benchmark_case_without_a_face_names_the_case(tmp_path, capsys):
    import cv2

    cv2.imwrite(str(tmp_path / "wall.png"), np.full((128, 128, 3), 120, np.uint8))
    write_wav(tmp_path / "wall.wav", np.zeros(16000, np.float32))
    assert main(["eval", "--benchmark", str(tmp_path), "--out", str(tmp_path / "r"), "--no-identity",
                 "--no-controls"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "benchmark case wall: no face" in err
    assert not (tmp_path / "r" / "report.md").exists()


def test_the_judges_bring_the_speech_features_they_were_trained_on(tmp_path):
    """Judges trained on other features than tiny.en's get those features; two that disagree are refused."""
    from vasa.audio.encoders import LogMelEncoder
    from vasa.errors import VasaError

    def judge(kind: str, encoder: str, audio_dim: int) -> str:
        path = tmp_path / f"{kind}_{encoder}.safetensors"
        config = contrastive.JudgeConfig(kind=kind, motion_dim=6 if kind == "capp" else 3, audio_dim=audio_dim,
                                         window_frames=15, frames_per_token=1)
        contrastive.save_judge(path, contrastive.ContrastiveJudge(config), {"audio_encoder": encoder})
        return str(path)

    mel = Judges.load(capp=judge("capp", "mel", 80), lipsync=judge("lipsync", "mel", 80), identity_metric=False)
    assert isinstance(mel.encoder, LogMelEncoder) and mel.capp.config.audio_dim == 80
    with pytest.raises(VasaError, match="different speech features.*capp: mel.*lipsync: whisper"):
        Judges.load(capp=judge("capp", "mel", 80), lipsync=judge("lipsync", "whisper", 384), identity_metric=False)
