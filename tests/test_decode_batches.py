"""Several inputs per ffmpeg process: the same audio and the same dataset as one process per file, bit for bit, and a
bad input in a batch fails alone with the reason it gets on its own (blamed by the messages that name it, or
the whole batch decoded one file at a time when a message names none), while the rest of its batch is converted."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import numpy as np
import pytest

from waveforms import audio
from waveforms.convert import BATCH_FILE_BYTES, ConvertConfig, Song, _batches, convert

GOOD = ("a.mp3", "b.mp3", "c.flac", "d.wav", "e.ogg", "f.mp3")
BAD = ("text.mp3", "empty.mp3", "truncated.mp3", "corrupt.mp3")


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def _make_inputs(folder, good=GOOD, bad=BAD):
    """Short clips of synthetic music-like audio (a chord plus noise), in several formats, and broken files."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(good):
        chord = (f"sine=f={220 + 30 * index}:d=3,volume=0.4[a];sine=f={330 + 20 * index}:d=3[b];"
                 f"anoisesrc=d=3:a=0.05:seed={index}[c];[a][b][c]amix=inputs=3,aformat=channel_layouts=stereo")  # fmt: skip
        _ffmpeg("-filter_complex", chord, "-ar", "44100" if index % 2 else "22050", str(folder / name))
    data = (folder / "a.mp3").read_bytes()
    if "text.mp3" in bad:
        (folder / "text.mp3").write_text("this is not audio\n" * 100)
    if "empty.mp3" in bad:
        (folder / "empty.mp3").write_bytes(b"")
    if "truncated.mp3" in bad:
        (folder / "truncated.mp3").write_bytes(data[: len(data) // 3])
    if "corrupt.mp3" in bad:  # frames in the middle overwritten: ffmpeg decodes the rest and reports the damage
        middle = len(data) // 2
        (folder / "corrupt.mp3").write_bytes(data[:middle] + b"\xff" * 4000 + data[middle + 4000 :])
    return folder


def _one_by_one(path, sample_rate):
    try:
        return np.concatenate(list(audio.iter_decode(path, sample_rate)))
    except audio.AudioDecodeError as error:
        return error


@pytest.mark.parametrize("sample_rate", [16000, 8000])
def test_decode_many_equals_one_process_per_file_bit_for_bit(tmp_path, sample_rate):
    folder = _make_inputs(tmp_path / "in", bad=("empty.mp3", "truncated.mp3"))
    paths = sorted(str(path) for path in folder.iterdir())
    together = audio.decode_many(paths, sample_rate)
    for path, shared in zip(paths, together, strict=True):
        alone = _one_by_one(path, sample_rate)
        if os.path.basename(path) in GOOD:
            assert isinstance(shared, np.ndarray) and shared.dtype == np.float32, (path, shared)
            assert shared.tobytes() == alone.tobytes(), path
        elif os.path.basename(path) == "empty.mp3":  # known bad before any decode: the same error as alone
            assert isinstance(shared, audio.AudioDecodeError) and shared.reason == alone.reason == "file is empty"
        else:  # its output is shorter than it declares: left to a decode on its own, which names the reason
            assert shared is None and "truncated" in alone.reason


def test_each_bad_input_of_a_batch_is_blamed_alone_and_the_rest_still_share_a_process(tmp_path, monkeypatch):
    folder = _make_inputs(tmp_path / "in", bad=("text.mp3", "corrupt.mp3"))
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=32x32:d=1", "-c:v", "mpeg4", str(folder / "video_only.mp4"))
    paths = sorted(str(path) for path in folder.iterdir())
    runs = []  # inputs of each ffmpeg started (subprocess.run starts through Popen too)
    real_popen = subprocess.Popen
    monkeypatch.setattr(
        subprocess, "Popen", lambda command, **kw: runs.append(command.count("-i")) or real_popen(command, **kw)
    )
    together = audio.decode_many(paths, 16000)
    # the text file and the video stop a run before any decoding (so it runs again without them); the corrupt file's
    # decode errors name its input, so only it is left out of the run that decodes
    assert len(runs) <= 3 and runs[0] == len(paths)
    monkeypatch.undo()
    for path, shared in zip(paths, together, strict=True):
        if os.path.basename(path) in GOOD:
            assert isinstance(shared, np.ndarray) and shared.tobytes() == _one_by_one(path, 16000).tobytes(), path
        else:  # decoded on its own, each names its own reason
            assert shared is None and isinstance(_one_by_one(path, 16000), audio.AudioDecodeError), path


def test_a_file_whose_log_cannot_be_told_apart_is_decoded_alone(tmp_path):
    folder = _make_inputs(tmp_path / "in", good=("a.mp3", "b.mp3"), bad=())
    (folder / "a.mp3").rename(folder / "line\nbreak.mp3")  # its name splits ffmpeg's header for it in two
    paths = sorted(str(path) for path in folder.iterdir())
    together = audio.decode_many(paths, 16000)
    assert [os.path.basename(path) for path, item in zip(paths, together, strict=True) if item is None] == [
        "line\nbreak.mp3"
    ]
    assert _one_by_one(paths[1], 16000).size > 2.9 * 16000  # and on its own it decodes


def test_a_damage_message_that_names_no_input_blames_the_whole_run():
    paths = [audio.Path("/music/a.mp3"), audio.Path("/music/b.mp3")]
    assert audio._blamed_inputs(
        "Error while decoding stream #1:0: Invalid data found when processing input\n", paths, 0
    ) == {1}
    assert audio._blamed_inputs("/music/a.mp3: Invalid argument\n", paths, 1) == {0}
    assert audio._blamed_inputs("[mp3 @ 0x1] corrupt input packet in stream 0\n", paths, 0) is None
    assert audio._blamed_inputs("Conversion failed!\n", paths, 1) is None
    assert audio._blamed_inputs("[mp3 @ 0x1] Estimating duration from bitrate\n", paths, 0) == set()


def test_decode_many_holds_at_most_max_samples(tmp_path):
    folder = _make_inputs(tmp_path / "in", bad=())
    paths = sorted(str(path) for path in folder.iterdir())
    together = audio.decode_many(paths, 16000, max_samples=int(2.5 * 3 * 16000))  # room for two 3-s songs
    assert [item is not None for item in together] == [True, True] + [False] * (len(paths) - 2)


def test_good_files_share_one_ffmpeg_process(tmp_path, monkeypatch):
    folder = _make_inputs(tmp_path / "in", bad=())
    paths = sorted(str(path) for path in folder.iterdir())
    started = []  # every process start (subprocess.run starts through Popen too)
    real_popen = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda command, **kw: started.append(command) or real_popen(command, **kw))
    together = audio.decode_many(paths, 16000)
    assert len(started) == 1 and started[0].count("-i") == len(GOOD)
    assert all(isinstance(item, np.ndarray) and item.size > 2.9 * 16000 for item in together)


def _tree(folder):
    return {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
        for name in sorted(os.listdir(folder))
        if (folder / name).is_file() and not name.startswith("manifest-part")
    }


def test_batched_conversion_gives_the_same_dataset_and_fails_bad_inputs_alone(tmp_path):
    source = _make_inputs(tmp_path / "in" / "rock")
    outputs = {}
    for batch in (1, 16):
        config = ConvertConfig(decode_batch=batch, segment_seconds=1.0, validation_fraction=0.2)
        outputs[batch] = convert(str(tmp_path / "in"), str(tmp_path / f"out{batch}"), config, progress=False)
    assert _tree(tmp_path / "out1") == _tree(tmp_path / "out16")  # shards and manifest.json, byte for byte
    manifest = json.loads((tmp_path / "out16" / "manifest.json").read_text())
    assert {song["song_id"] for song in manifest["songs"]} >= {f"rock/{name}" for name in GOOD}
    skipped = {os.path.basename(item["source"]): item["reason"] for item in manifest["skipped"]}
    assert set(skipped) >= {"text.mp3", "empty.mp3", "corrupt.mp3"}
    assert "corrupt" in skipped["corrupt.mp3"] and skipped["empty.mp3"] == "file is empty"
    assert all(str(source) in item["source"] for item in manifest["skipped"])  # each failure names its file


def test_batches_group_small_local_files_and_leave_large_and_remote_ones_alone(tmp_path):
    small = [tmp_path / f"s{index}.mp3" for index in range(5)]
    for path in small:
        path.write_bytes(b"x" * 1000)
    large = tmp_path / "large.wav"
    with open(large, "wb") as f:
        f.truncate(BATCH_FILE_BYTES + 1)
    songs = [Song(path.name, str(path), "g") for path in (*small[:3], large, *small[3:])]
    songs.append(Song("remote.mp3", "s3://bucket/remote.mp3", "g"))
    songs.append(Song("missing.mp3", str(tmp_path / "missing.mp3"), "g"))
    grouped = [[song.song_id for song in batch] for batch in _batches(songs, 2)]
    assert grouped == [["s0.mp3", "s1.mp3"], ["s2.mp3"], ["large.wav"], ["s3.mp3", "s4.mp3"], ["remote.mp3"],
                       ["missing.mp3"]]  # fmt: skip
    assert [len(batch) for batch in _batches(songs, 1)] == [1] * len(songs)
    assert [song for batch in _batches(songs, 16) for song in batch] == songs  # listing order kept
    # a short listing is cut finer, so every worker has batches to the end: 4 per worker at least
    assert [len(batch) for batch in _batches(songs[:3] + songs[4:6], 16, workers=1)] == [2, 2, 1]
