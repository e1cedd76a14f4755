"""Outputs get the user's umask (0644/0755 under umask 022), not a temp file's private 0600, so another user or a
serving pod can read a dataset, a model or a page someone else wrote."""

import os
import stat

import numpy as np
import pytest
from helpers import synth_dataset

from waveforms import audio, storage


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


def _modes(root) -> dict[str, int]:
    modes = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            modes[os.path.relpath(path, root)] = stat.S_IMODE(os.stat(path).st_mode)
    return modes


@pytest.mark.parametrize("mask, file_mode", [(0o022, 0o644), (0o027, 0o640)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mask, file_mode):
    umask(mask)
    assert storage.current_umask() == mask
    storage.write_bytes(str(tmp_path / "a" / "manifest.json"), b"{}")
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 1000)
    storage.upload_file(str(source), str(tmp_path / "b" / "copy.bin"))
    audio.write_wav(tmp_path / "c" / "clip.wav", np.zeros(16, np.float32), 16000)
    audio.write_audio(tmp_path / "c" / "clip.mp3", np.zeros(1600, np.float32), 16000)  # written by ffmpeg
    for name in ("a/manifest.json", "b/copy.bin", "c/clip.wav", "c/clip.mp3"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == file_mode, name


def test_a_converted_dataset_is_readable_by_others(tmp_path, umask):
    data = synth_dataset(tmp_path, count=4, seed=0, seconds=0.5)
    modes = _modes(data)
    assert any(name.endswith(".tfrecord") or "shard" in name or name.endswith(".gz") for name in modes)
    assert "manifest.json" in modes
    for name, mode in modes.items():
        expected = 0o755 if os.path.isdir(os.path.join(data, name)) else 0o644
        assert mode == expected, (name, oct(mode))
