"""Preparing a corpus: a folder of several speakers' clips with a manifest, bad files among them;
speaker-disjoint splits; the data card."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import sine
from vasa import media
from vasa.cli import main
from vasa.data.card import data_card
from vasa.data.prepare import PrepareConfig, prepare, record_name
from vasa.data.records import read_meta, read_record, record_files
from vasa.data.splits import Split, load_split, make_split, write_split
from vasa.errors import VasaError

CONFIG = PrepareConfig(audio_encoder="mel", min_frames=5, audio_schedule=(0.08, 0.04, 0.02))
MANIFEST = ("file\tspeaker\tlanguage\tsource_repo\n"
            "a/one.mp4\tanna\ten\tstudio\n"
            "a/two.mp4\tanna\ten\tstudio\n"
            "b/talk.mp4\tben\tfr\tstreet\n"
            "broken.mp4\tcora\ten\tstudio\n"
            "mute.mp4\tdan\ten\tstudio\n"
            "blank.mp4\teve\ten\tstudio\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, face, encoded, driver_motions, grace_hopper):
    """Two clips of anna (the talking astronaut), one of ben (Grace Hopper, no manifest row needed: it
    has one), one unlisted clip, an unreadable file, a clip without audio and one without a face."""
    root = tmp_path_factory.mktemp("corpus")
    appearance, _ = encoded
    astronaut = [face.decode(appearance, m) for m in driver_motions]
    hopper = face.decode(*face.encode(grace_hopper))
    (root / "a").mkdir()
    (root / "b").mkdir()
    media.write_video(root / "a" / "one.mp4", astronaut, 25.0, sine(220.0, len(astronaut) / 25.0))
    media.write_video(root / "a" / "two.mp4", astronaut[::-1], 25.0, sine(330.0, len(astronaut) / 25.0))
    media.write_video(root / "b" / "talk.mp4", [hopper] * 8, 25.0, sine(180.0, 8 / 25.0))
    media.write_video(root / "unlisted.mp4", [hopper] * 6, 25.0, sine(200.0, 6 / 25.0))
    (root / "broken.mp4").write_bytes(b"this is not a video" * 50)
    media.write_video(root / "mute.mp4", astronaut[:8], 25.0)
    media.write_video(root / "blank.mp4", [np.full_like(hopper, 90)] * 6, 25.0, sine(250.0, 6 / 25.0))
    (root / "MANIFEST.tsv").write_text(MANIFEST)
    return root


@pytest.fixture(scope="module")
def prepared_corpus(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared_corpus")
    return out, prepare([corpus], out, CONFIG, progress=False)


def _records(out):
    return {read_record(f).source: read_record(f) for f in record_files(out)}


def test_every_record_carries_its_manifest_row(prepared_corpus):
    out, report = prepared_corpus
    records = _records(out)
    assert records["one.mp4"].speaker == records["two.mp4"].speaker == "anna"
    assert records["talk.mp4"].info["language"] == "fr" and records["talk.mp4"].speaker == "ben"
    assert records["unlisted.mp4"].info == {} and records["unlisted.mp4"].speaker == "video:unlisted.mp4"
    assert report["manifest"].endswith("MANIFEST.tsv")


def test_bad_files_are_reported_and_the_rest_prepared(prepared_corpus):
    out, report = prepared_corpus
    assert report["videos"] == 7
    records = _records(out)
    assert all(len(records[name].segments) == 1 for name in ("one.mp4", "two.mp4", "talk.mp4", "unlisted.mp4"))
    assert set(report["unusable"]) == {"broken.mp4", "mute.mp4"}  # unreadable; no audio track, no file beside it
    assert "no audio" in report["unusable"]["mute.mp4"]
    assert not records["blank.mp4"].segments  # readable, but no face: dropped with the reason
    assert any(d["reason"].startswith("no face") for d in records["blank.mp4"].dropped)


def test_the_data_card_counts_speakers_languages_and_drops(prepared_corpus):
    out, _ = prepared_corpus
    card = json.loads((out / "data_card.json").read_text())
    assert card == data_card(out)
    kept = {name: len(r.segments and r.segments[0]) for name, r in _records(out).items()}
    assert card["kept_s_by_speaker"]["anna"] == pytest.approx((kept["one.mp4"] + kept["two.mp4"]) / 25.0, abs=0.01)
    assert set(card["kept_s_by_language"]) == {"en", "fr", "(not given)"}
    assert card["speakers"] == 3 and set(card["unusable"]) == {"broken.mp4", "mute.mp4"}
    assert any(reason.startswith("no face") for reason in card["dropped_s"])
    assert "anna" in (out / "DATA_CARD.md").read_text()


@pytest.mark.slow
def test_two_workers_write_the_same_records_as_one(corpus, prepared_corpus, tmp_path):
    out, _ = prepared_corpus
    prepare([corpus], tmp_path / "two", CONFIG, progress=False, workers=2)
    for path in record_files(out):
        with np.load(path) as one, np.load(tmp_path / "two" / "records" / path.name) as two:
            assert one.files == two.files
            for name in one.files:
                assert np.array_equal(one[name], two[name]), (path.name, name)


def test_an_unusable_video_is_tried_again_once_it_can_be_used(corpus, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(corpus / "mute.mp4", folder / "mute.mp4")
    report = prepare([folder], tmp_path / "out", CONFIG, progress=False)
    assert "mute.mp4" in report["unusable"]
    samples, rate = sine(300.0, 0.4)
    media.write_wav(folder / "mute.wav", samples[0], rate)  # the missing audio, added beside it
    report = prepare([folder], tmp_path / "out", CONFIG, progress=False)
    assert not report["unusable"] and report["frames"] == 8


def test_cli_fails_when_nothing_was_usable(corpus, tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    shutil.copy(corpus / "broken.mp4", folder / "broken.mp4")
    assert main(["prepare", str(folder), str(tmp_path / "out"), "--audio-encoder", "mel"]) != 0
    captured = capsys.readouterr()
    assert "unusable: broken.mp4" in captured.out and "nothing usable" in captured.err
    assert "Traceback" not in captured.err


def test_a_malformed_manifest_is_a_clear_error(corpus, tmp_path):
    bad = tmp_path / "manifest.tsv"
    bad.write_text("video\tspeaker\nx.mp4\tanna\n")
    with pytest.raises(VasaError, match="'file' column"):
        prepare([corpus], tmp_path / "out", CONFIG, progress=False, manifest=bad)
    bad.write_text("file\tspeaker\na/one.mp4\tanna\na/one.mp4\tben\n")
    with pytest.raises(VasaError, match="listed twice"):
        prepare([corpus], tmp_path / "out", CONFIG, progress=False, manifest=bad)


# --- speaker splits -----------------------------------------------------------------------------------

def _metas(speakers: dict[str, tuple[str, str, int]]) -> list[dict]:
    """Record metadata: per speaker (source, language, clips), 100 frames per clip."""
    return [{"source": f"{s}_{k}.mp4", "fps": 25.0, "frames": 100,
             "info": {"speaker": s, "source_repo": src, "language": lang}}
            for s, (src, lang, clips) in speakers.items() for k in range(clips)]


def test_a_split_holds_out_whole_speakers_in_every_group():
    rng = np.random.default_rng(0)
    speakers = {f"{src}-{k}": (src, lang, int(rng.integers(1, 5)))
                for src, lang, count in (("lrs3", "en", 40), ("hdtf", "en", 15), ("dh", "unk", 60), ("vq", "ja", 1),
                                         ("vq", "ko", 1), ("mix", "de", 3)) for k in range(count)}
    metas = _metas(speakers)
    split = make_split(metas, 20, seed=0)
    assert len(split.validation) == 20
    groups = {speakers[s][0] for s in split.validation}
    assert {"lrs3", "hdtf", "dh", "mix"} <= groups  # every group of two or more people is represented
    held = [m for m in metas if split.holds_out(m["info"]["speaker"])]
    train = [m for m in metas if not split.holds_out(m["info"]["speaker"])]
    assert not {m["info"]["speaker"] for m in held} & {m["info"]["speaker"] for m in train}
    assert make_split(metas, 20, seed=0) == split and make_split(metas, 20, seed=1) != split
    # a new clip of a speaker already known moves nobody
    assert make_split(metas + _metas({"lrs3-0": ("lrs3", "en", 1)}), 20, seed=0) == split
    with pytest.raises(VasaError, match="keep at least one"):
        make_split(metas, len(speakers), seed=0)
    included = make_split(metas, 20, seed=0, include=("vq-0", "dh-7"))
    assert {"vq-0", "dh-7"} <= included.validation and len(included.validation) == 20
    with pytest.raises(VasaError, match="no kept data of speaker nobody"):
        make_split(metas, 20, seed=0, include=("nobody",))


def test_trainers_hold_out_every_clip_of_a_split_speaker(prepared_corpus, tmp_path):
    from vasa.train.common import Processes, split_records
    from vasa.train.motion import TrainConfig

    out, _ = prepared_corpus
    metas = [read_meta(f) for f in record_files(out)]
    path = tmp_path / "split.json"
    write_split(path, Split(frozenset({"anna"})), metas, seed=0)
    assert load_split(path).validation == {"anna"}
    training, held = split_records(TrainConfig(data=out, out=tmp_path / "run", split=path), Processes())
    assert {read_record(f).source for f in held} == {"one.mp4", "two.mp4"}
    assert all(read_record(f).speaker != "anna" for f in training)
    write_split(path, Split(frozenset({"nobody"})), metas, seed=0)
    with pytest.raises(VasaError, match="no record .* validation speaker"):
        split_records(TrainConfig(data=out, out=tmp_path / "run", split=path), Processes())
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(VasaError, match="not a speaker split"):
        load_split(tmp_path / "junk.json")


def test_cli_split_writes_a_file_the_trainer_reads(prepared_corpus, tmp_path, capsys):
    out, _ = prepared_corpus
    assert main(["split", str(out), "--speakers", "1", "--out", str(tmp_path / "s.json")]) == 0
    assert "1 validation speakers" in capsys.readouterr().out
    assert len(load_split(tmp_path / "s.json").validation) == 1
    assert main(["split", str(out), "--speakers", "9", "--out", str(tmp_path / "t.json")]) == 2
    assert not (tmp_path / "t.json").exists()


# --- the project's corpus split ---------------------------------------------------------------------------

@pytest.mark.media
def test_the_corpus_split_holds_out_whole_speakers_of_many_sources():
    """data/corpus_split.json against the corpus manifest: at least 15 validation speakers from at least 5
    sources, every label a real speaker of the manifest, and no training speaker whose label differs from
    a validation speaker's only in case or spacing (the same person would then be on both sides)."""
    from conftest import SHARED_MEDIA
    from vasa.data.manifest import read_manifest
    from vasa.data.splits import load_split
    from pathlib import Path

    manifest = SHARED_MEDIA / "train" / "MANIFEST.tsv"
    if not manifest.is_file():
        pytest.skip(f"no training corpus at {manifest.parent}")
    split = load_split(Path(__file__).resolve().parents[1] / "data" / "corpus_split.json")
    rows = read_manifest(manifest).values()
    speakers = {row["speaker"] for row in rows}
    assert len(split.validation) >= 15 and split.validation <= speakers
    assert len({row["source_repo"] for row in rows if split.holds_out(row["speaker"])}) >= 5
    plain = lambda label: "".join(label.lower().split())
    training = {plain(s) for s in speakers - split.validation}
    assert not training & {plain(s) for s in split.validation}
