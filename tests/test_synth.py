"""The embedded dataset: determinism, metadata, tuning, and families that really sound different."""

from __future__ import annotations

import collections
import json
import wave

import numpy as np
import pytest

from waveforms import audio_checks, cli, synth
from waveforms.spectral import dominant_frequency, spectral_centroid, spectral_flatness


def _all_bytes(directory):
    return {path.relative_to(directory).as_posix(): path.read_bytes() for path in sorted(directory.rglob("*"))
            if path.is_file()}  # fmt: skip


def test_same_seed_writes_byte_identical_datasets(tmp_path):
    first = synth.write_dataset(tmp_path / "a", count=12, seed=7, seconds=1.0)
    second = synth.write_dataset(tmp_path / "b", count=12, seed=7, seconds=1.0)
    other = synth.write_dataset(tmp_path / "c", count=12, seed=8, seconds=1.0)

    assert first == second
    files_a, files_b = _all_bytes(tmp_path / "a"), _all_bytes(tmp_path / "b")
    assert len(files_a) == 13 and files_a == files_b  # 12 clips + metadata.jsonl
    assert _all_bytes(tmp_path / "c") != files_a
    assert [row["name"] for row in other] != [row["name"] for row in first]


def test_metadata_describes_every_clip(tmp_path):
    rows = synth.write_dataset(tmp_path, count=10, seed=1, sample_rate=8000, seconds=0.5)
    lines = (tmp_path / "metadata.jsonl").read_text().splitlines()

    assert [json.loads(line) for line in lines] == rows
    for row in rows:
        assert {"name", "file", "family", "pitch", "velocity", "sample_rate", "seconds"} <= set(row)
        assert row["file"] == f"{row['family']}/{row['name']}.wav"
        with wave.open(str(tmp_path / row["file"])) as clip:
            assert (clip.getnchannels(), clip.getsampwidth(), clip.getframerate(), clip.getnframes()) == (
                1,
                2,
                8000,
                4000,
            )
    assert not [path for path in tmp_path.rglob("*") if path.name.startswith(".")]  # no temp file left behind


def test_plan_is_deterministic_balanced_and_uniquely_named():
    notes = synth.plan_notes(53, seed=3)
    assert notes == synth.plan_notes(53, seed=3)
    counts = collections.Counter(note.family for note in notes)
    assert set(counts) == set(synth.FAMILIES) and max(counts.values()) - min(counts.values()) <= 1
    assert len({note.name for note in notes}) == 53
    assert all(36 <= note.pitch < 85 and note.velocity in synth.VELOCITIES for note in notes)
    assert len({note.pitch for note in notes}) > 20  # pitches spread over the range
    assert synth.Note("bell", 60, 100, 3).name == "bell-060-100-0003"
    subset = synth.plan_notes(4, families=("drum", "organ"))
    assert [note.family for note in subset] == ["drum", "organ", "drum", "organ"]


def test_bad_notes_and_plans_are_rejected():
    with pytest.raises(ValueError, match="unknown family 'flute'"):
        synth.Note("flute", 60, 100, 0)
    with pytest.raises(ValueError, match="velocity"):
        synth.Note("bell", 60, 0, 0)
    with pytest.raises(ValueError, match="unknown families"):
        synth.plan_notes(3, families=("bell", "kazoo"))


@pytest.mark.parametrize("family", synth.FAMILIES)
def test_render_note_length_level_and_velocity(family):
    soft = synth.render_note(synth.Note(family, 60, 25, 0), seconds=2.0)
    loud = synth.render_note(synth.Note(family, 60, 127, 0), seconds=2.0)
    for clip in (soft, loud):
        assert clip.dtype == np.float32 and clip.shape == (32000,)
        assert np.all(np.isfinite(clip)) and np.max(np.abs(clip)) <= 1.0
    assert np.max(np.abs(loud)) > 2 * np.max(np.abs(soft))
    assert np.abs(loud[-100:]).max() < 0.05  # released: no click at the end of the clip


@pytest.mark.parametrize(("family", "pitch"), [("string", 45), ("string", 69), ("string", 84), ("organ", 36),
                                               ("organ", 72), ("reed", 60), ("reed", 81), ("drum", 60)])  # fmt: skip
def test_harmonic_notes_are_in_tune(family, pitch):
    note = synth.Note(family, pitch, 100, 5)
    measured = dominant_frequency(synth.render_note(note, seconds=1.0), 16000)
    # A plucked string's loudest partial may be any low harmonic (the noise burst sets them); organ and reed sound their fundamental; the drum
    # body sits an octave below the key. Whichever it is, it must be in tune to within 10 cents.
    harmonic = {"string": round(measured / note.frequency), "drum": 0.5}.get(family, 1)
    assert 1 <= harmonic <= 10 or family == "drum"
    assert abs(1200 * np.log2(measured / (harmonic * note.frequency))) < 10


def test_bells_are_inharmonic():
    note = synth.Note("bell", 69, 100, 5)
    ratio = dominant_frequency(synth.render_note(note, seconds=1.0), 16000) / note.frequency
    assert ratio > 0.9 and abs(ratio - round(ratio)) > 0.1  # loudest partial is not a harmonic of the key


def _features(notes):
    clips = [synth.render_note(note) for note in notes]
    return np.array([
        (np.log2(spectral_centroid(clip, 16000) / note.frequency), np.log10(spectral_flatness(clip) + 1e-12))
        for note, clip in zip(notes, clips, strict=True)
    ])  # fmt: skip  # (notes, 2): brightness relative to pitch, noisiness


def test_families_differ_measurably():
    # Learn each family's mean (brightness, noisiness) from one plan, then name the family of notes from another plan
    # by the nearest mean. Families that only differed in name would be confused about 80% of the time.
    pitches = range(48, 73)
    train = {
        family: _features(synth.plan_notes(10, seed=1, families=[family], pitches=pitches)) for family in synth.FAMILIES
    }
    means = np.array([train[family].mean(axis=0) for family in synth.FAMILIES])  # (families, 2)
    scale = np.concatenate(list(train.values())).std(axis=0)
    confusion = np.zeros((len(synth.FAMILIES),) * 2, dtype=int)
    for index, family in enumerate(synth.FAMILIES):
        test = _features(synth.plan_notes(10, seed=2, families=[family], pitches=pitches))
        nearest = np.argmin((((test[:, None, :] - means[None]) / scale) ** 2).sum(axis=-1), axis=1)
        confusion[index] += np.bincount(nearest, minlength=len(synth.FAMILIES))
    accuracy = np.trace(confusion) / confusion.sum()
    assert accuracy >= 0.9, f"families: {synth.FAMILIES}\nconfusion (rows = truth):\n{confusion}"


def test_cli_writes_a_dataset(tmp_path, capsys):
    assert (
        cli.main(["synth", str(tmp_path / "data"), "--count", "6", "--seconds", "0.5", "--families", "bell,drum"]) == 0
    )
    rows = [json.loads(line) for line in (tmp_path / "data" / "metadata.jsonl").read_text().splitlines()]
    assert [row["family"] for row in rows] == ["bell", "drum"] * 3
    assert "wrote 6 clips" in capsys.readouterr().out
    assert cli.main(["synth", str(tmp_path / "x"), "--families", "bell,kazoo"]) == 2
    assert "kazoo" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_phrases_are_stepwise_melodies_of_one_family():
    phrases = synth.plan_phrases(10, notes_per_phrase=5, seed=4)
    assert phrases == synth.plan_phrases(10, notes_per_phrase=5, seed=4)
    assert [phrase[0].family for phrase in phrases] == list(synth.FAMILIES) * 2
    for phrase in phrases:
        assert len(phrase) == 5 and len({note.family for note in phrase}) == 1
        steps = np.diff([note.pitch for note in phrase])
        assert all(36 <= note.pitch < 85 for note in phrase)
        assert np.all(steps != 0) and np.all(np.abs(steps) <= max(synth.MELODY_STEPS))
    names = [note.name for phrase in phrases for note in phrase]
    assert len(set(names)) == 50  # every note has its own noise seed
    with pytest.raises(ValueError, match="notes per phrase"):
        synth.plan_phrases(3, notes_per_phrase=0)


def test_a_phrase_plays_on_where_a_note_falls_silent():
    """Why phrases exist: every second of a phrase sounds; an isolated note's last second is silence by design."""
    rate, seconds = 16000, 4.0
    for phrase in synth.plan_phrases(10, notes_per_phrase=4, seed=0):
        clip = synth.render_phrase(phrase, rate, seconds)
        assert clip.shape == (int(rate * seconds),) and clip.dtype == np.float32
        assert 0.2 < np.max(np.abs(clip)) <= synth.PHRASE_PEAK + 1e-6
        loudness = audio_checks.measure(clip, rate).rms_dbfs  # one figure per 1-s window
        assert np.all(loudness > audio_checks.SILENCE_DBFS), (phrase[0].family, loudness)
        if phrase[0].family != "drum":  # a low drum's body can ring the whole clip
            note = synth.render_note(phrase[0], rate, seconds)
            assert audio_checks.check_clip(note, rate).sound_ends_at < 0.9 * seconds  # "silent after ..."
    organ = synth.plan_phrases(3, notes_per_phrase=4, seed=0, families=["organ"])[0]
    clip = synth.render_phrase(organ, rate, seconds)
    for position, note in enumerate(organ):  # each note sounds in its own quarter, in tune
        middle = clip[int((position + 0.3) * rate) : int((position + 0.7) * rate)]
        assert dominant_frequency(middle, rate) == pytest.approx(note.frequency, rel=0.03)


def test_phrase_datasets_are_deterministic_and_described(tmp_path):
    rows = synth.write_dataset(tmp_path / "a", count=4, seed=2, seconds=1.0, notes_per_clip=3)
    again = synth.write_dataset(tmp_path / "b", count=4, seed=2, seconds=1.0, notes_per_clip=3)
    assert rows == again and _all_bytes(tmp_path / "a") == _all_bytes(tmp_path / "b")
    assert [row["name"] for row in rows] == [f"{family}-phrase-{i:04d}" for i, family in
                                              enumerate(synth.FAMILIES[:4])]  # fmt: skip
    for row in rows:
        assert row["file"] == f"{row['family']}/{row['name']}.wav"
        assert len(row["pitches"]) == len(row["velocities"]) == 3
    assert cli.main(["synth", str(tmp_path / "c"), "--count", "2", "--seconds", "1", "--notes-per-clip", "2"]) == 0
    assert len(list((tmp_path / "c").rglob("*-phrase-*.wav"))) == 2
    assert cli.main(["synth", str(tmp_path / "d"), "--notes-per-clip", "0"]) == 2
    assert not (tmp_path / "d").exists()
