"""waveforms.audio against real files made by the ffmpeg command line: formats, rates, channels, alignment, errors."""

from __future__ import annotations

import io
import math
import pickle
import wave

import numpy as np
import pytest
from audio_fixtures import correlation_lag, encode, ideal_resample, noise_bursts, sine

from waveforms import audio
from waveforms.audio import AudioDecodeError
from waveforms.spectral import dominant_frequency, spectrogram_png


@pytest.mark.parametrize(
    ("extension", "source_rate", "channels"),
    [(".wav", 44100, 1), (".flac", 48000, 2), (".ogg", 44100, 2), (".mp3", 44100, 2), (".mp3", 48000, 2),
     (".mp3", 22050, 1)],
)  # fmt: skip
@pytest.mark.parametrize("target_rate", [16000, 8000])
def test_decode_length_and_pitch(tmp_path, extension, source_rate, channels, target_rate):
    seconds = 3.0
    tone = sine(440.0, source_rate, seconds)
    path = encode(tmp_path / f"tone{extension}", np.repeat(tone[:, None], channels, axis=1), source_rate)

    decoded = audio.decode(path, target_rate)

    assert decoded.dtype == np.float32 and decoded.ndim == 1
    # mp3 encoder delay and padding must be trimmed (ffmpeg reads them from the LAME header ffmpeg writes).
    assert abs(len(decoded) - seconds * target_rate) <= 1
    assert abs(dominant_frequency(decoded, target_rate) - 440.0) <= 1.0
    assert np.max(np.abs(decoded)) == pytest.approx(10 ** (-1 / 20), rel=1e-5)  # peak-normalised to -1 dBFS


@pytest.mark.parametrize(("extension", "source_rate"), [(".wav", 44100), (".flac", 48000), (".mp3", 44100)])
@pytest.mark.parametrize("target_rate", [16000, 8000])
def test_resampled_audio_stays_aligned_with_the_source(tmp_path, extension, source_rate, target_rate):
    source = noise_bursts(source_rate, 2.0)
    path = encode(tmp_path / f"bursts{extension}", source, source_rate)

    decoded = audio.decode(path, target_rate, normalize=False)
    reference = ideal_resample(source, source_rate, target_rate)

    assert abs(correlation_lag(decoded, reference)) <= 1
    assert abs(correlation_lag(decoded, reference)) == 0 or extension == ".mp3"  # lossless input: exactly aligned


def test_unusual_inputs_8_bit_6_channels_96_khz(tmp_path):
    tone = sine(440.0, 96000, 1.0, amplitude=0.6)
    six_channels = encode(tmp_path / "six.wav", np.repeat(tone[:, None], 6, axis=1), 96000)
    tone_8k = sine(440.0, 8000, 1.0, amplitude=0.6)
    eight_bit = encode(tmp_path / "eight.wav", tone_8k, 8000, codec=["-c:a", "pcm_u8"])

    assert audio.probe(six_channels) == audio.AudioInfo(96000, 6, 1.0, "pcm_s16le", 16)
    assert audio.probe(eight_bit).bits == 8
    for path in (six_channels, eight_bit):
        decoded = audio.decode(path, 16000, normalize=False)
        assert len(decoded) == 16000
        assert abs(dominant_frequency(decoded, 16000) - 440.0) <= 1.0
        # The downmix keeps the level of identical channels (it does not sum them).
        assert np.max(np.abs(decoded)) == pytest.approx(0.6, abs=0.02)


def test_stereo_downmix_never_exceeds_full_scale(tmp_path):
    tone = sine(220.0, 44100, 1.0, amplitude=0.95)
    path = encode(tmp_path / "loud.flac", np.stack([tone, tone], axis=1), 44100)
    one_side = encode(tmp_path / "left.flac", np.stack([tone, np.zeros_like(tone)], axis=1), 44100)

    assert np.max(np.abs(audio.decode(path, 44100, normalize=False))) == pytest.approx(0.95, abs=0.01)
    assert np.max(np.abs(audio.decode(one_side, 44100, normalize=False))) == pytest.approx(0.475, abs=0.01)


def test_iter_decode_streams_the_same_samples_in_blocks(tmp_path):
    path = encode(tmp_path / "song.mp3", noise_bursts(44100, 3.0) + sine(300.0, 44100, 3.0, 0.2), 44100)

    blocks = list(audio.iter_decode(path, 16000, block_samples=10000))

    assert [len(block) for block in blocks] == [10000] * 4 + [8000]
    np.testing.assert_array_equal(np.concatenate(blocks), audio.decode(path, 16000, normalize=False))
    stream = audio.iter_decode(path, 16000, block_samples=1000)
    assert len(next(stream)) == 1000
    stream.close()  # stopping early ends the ffmpeg process without an error


def test_silence_decodes_to_silence(tmp_path):
    path = encode(tmp_path / "silence.wav", np.zeros(8000, dtype=np.float32), 8000)
    decoded = audio.decode(path, 16000)
    assert len(decoded) == 16000 and not np.any(decoded) and np.all(np.isfinite(decoded))


@pytest.fixture
def broken_files(tmp_path):
    tone = sine(440.0, 44100, 4.0)
    good_mp3 = encode(tmp_path / "good.mp3", tone, 44100).read_bytes()
    good_flac = encode(tmp_path / "good.flac", tone, 44100).read_bytes()
    files = {
        "empty.mp3": b"",
        "notes.mp3": b"these are my lecture notes, renamed to .mp3 by accident\n" * 20,
        "truncated.mp3": good_mp3[: len(good_mp3) // 2],
        "truncated.flac": good_flac[: len(good_flac) // 2],
        "header-only.wav": _wav_header_only(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "picture.png").write_bytes(spectrogram_png(tone, 44100))  # a real file with no audio stream
    return tmp_path


def _wav_header_only() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "reason"),
    [("empty.mp3", "empty"), ("notes.mp3", "not an audio format"), ("truncated.mp3", "truncated"),
     ("truncated.flac", "corrupt or truncated"), ("header-only.wav", "no audio samples"), ("picture.png", "no audio stream"),
     ("missing.mp3", "no such file")],
)  # fmt: skip
def test_undecodable_files_raise_one_clear_error(broken_files, name, reason):
    path = broken_files / name
    with pytest.raises(AudioDecodeError) as caught:
        audio.decode(path)
    assert caught.value.path == str(path)
    assert reason in caught.value.reason
    assert str(caught.value) == f"cannot decode {path}: {caught.value.reason}"
    assert isinstance(caught.value, ValueError)
    copy = pickle.loads(pickle.dumps(caught.value))  # crosses process-pool boundaries intact
    assert (copy.path, copy.reason, str(copy)) == (caught.value.path, caught.value.reason, str(caught.value))
    with pytest.raises(AudioDecodeError, match="cannot decode"):
        for _ in audio.iter_decode(path):
            pass


def test_probe_reports_the_stream(tmp_path):
    path = encode(tmp_path / "tone.mp3", np.zeros((48000, 2), dtype=np.float32), 48000)
    info = audio.probe(path)
    assert (info.sample_rate, info.channels, info.codec, info.bits) == (48000, 2, "mp3", None)
    assert info.duration == pytest.approx(1.0, abs=0.06)  # includes the encoder's padding
    with pytest.raises(AudioDecodeError, match="empty"):
        audio.probe(_empty(tmp_path))


def _empty(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    return path


def _mu_law_reference(value: float) -> int:
    """The mu-law formula written out for one number, independently of the vectorised version."""
    value = min(1.0, max(-1.0, value))
    companded = math.copysign(math.log(1 + 255 * abs(value)) / math.log(256), value)
    return int(math.floor((companded + 1) / 2 * 255 + 0.5))


def test_mu_law_matches_the_formula_and_round_trips_within_the_bound():
    x = np.concatenate([np.linspace(-1.0, 1.0, 20001), np.random.default_rng(0).uniform(-1, 1, 5000)]).astype(
        np.float32
    )
    codes = audio.mu_law_encode(x)

    assert codes.dtype == np.uint8
    assert [int(code) for code in codes[::97]] == [_mu_law_reference(float(value)) for value in x[::97]]
    assert (audio.mu_law_encode(np.array([-1.0, 0.0, 1.0])) == [0, audio.SILENCE_CODE, 255]).all()
    assert audio.MuLawTable.get().silence_code == audio.SILENCE_CODE == 128
    assert np.all(np.diff(audio.mu_law_encode(np.sort(x)).astype(int)) >= 0)  # monotonic

    restored = audio.mu_law_decode(codes)
    error = np.abs(restored - x)
    # Half a code step in the companded domain is 1/255; the expander's slope there is ln(256)/255 * (1 + 255|x|),
    # at most 256^(1/255) steeper across the half step.
    bound = (1 / 255) * math.log(256) / 255 * (1 + 255 * np.abs(x)) * 256 ** (1 / 255)
    assert np.all(error <= bound + 1e-6)
    assert error.max() < 0.022  # worst case, at full scale

    every_code = audio.mu_law_decode(np.arange(256, dtype=np.uint8))
    assert every_code.dtype == np.float32 and np.all(np.diff(every_code) > 0)
    assert every_code[0] == -1.0 and every_code[-1] == 1.0
    np.testing.assert_array_equal(audio.mu_law_encode(every_code), np.arange(256))


def test_mu_law_uses_a_fixed_quantiser_not_per_song_scaling():
    quiet = np.array([0.001, 0.01, 0.1], dtype=np.float32)
    assert not np.array_equal(audio.mu_law_encode(quiet), audio.mu_law_encode(quiet * 10))
    assert (audio.mu_law_encode(np.array([2.0, -3.0])) == [255, 0]).all()  # out of range clips
    with pytest.raises(ValueError, match="NaN"):
        audio.mu_law_encode(np.array([0.0, np.nan]))


def test_peak_normalize():
    x = np.array([0.1, -0.25, 0.05], dtype=np.float32)
    assert np.max(np.abs(audio.peak_normalize(x))) == pytest.approx(10 ** (-1 / 20))
    assert np.max(np.abs(audio.peak_normalize(x, peak_db=0.0))) == pytest.approx(1.0)
    silent = audio.peak_normalize(np.zeros(100, dtype=np.float32))
    assert silent.dtype == np.float32 and not np.any(silent) and np.all(np.isfinite(silent))
    assert len(audio.peak_normalize(np.zeros(0))) == 0


def test_write_wav_clips_instead_of_wrapping_and_leaves_no_temporary_files(tmp_path):
    samples = np.array([0.0, 0.5, 1.0, 1.5, -1.0, -2.0], dtype=np.float32)
    path = audio.write_wav(tmp_path / "out" / "clip.wav", samples, 16000)

    with wave.open(str(path)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 16000)
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    assert pcm.tolist() == [0, 16384, 32767, 32767, -32767, -32767]
    assert path.read_bytes() == audio.wav_bytes(samples, 16000)
    assert [p.name for p in path.parent.iterdir()] == ["clip.wav"]
    with pytest.raises(ValueError, match="NaN"):
        audio.write_wav(tmp_path / "bad.wav", np.array([np.nan]), 16000)
    assert not (tmp_path / "bad.wav").exists()


@pytest.mark.parametrize("extension", audio.WRITABLE_EXTENSIONS)
def test_written_files_decode_back(tmp_path, extension):
    tone = sine(440.0, 16000, 2.0, amplitude=0.7)
    path = audio.write_audio(tmp_path / f"tone{extension}", tone, 16000)
    decoded = audio.decode(path, 16000, normalize=False)
    assert abs(len(decoded) - len(tone)) <= 1
    assert abs(dominant_frequency(decoded, 16000) - 440.0) <= 1.0
    assert np.max(np.abs(decoded)) == pytest.approx(0.7, rel=0.06)  # LAME lowers a 440 Hz sine by about 0.4 dB
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_write_rejects_unknown_extensions(tmp_path):
    with pytest.raises(ValueError, match=r"unknown extension '\.xyz' \(use \.wav, \.mp3, \.flac or \.ogg\)"):
        audio.write_audio(tmp_path / "tone.xyz", np.zeros(10), 16000)
    assert set(audio.WRITABLE_EXTENSIONS) == {".wav", ".mp3", ".flac", ".ogg"}
    assert set(audio.WRITABLE_EXTENSIONS) <= set(audio.AUDIO_EXTENSIONS)  # what we write, we can read back


def test_one_clip_in_several_formats(tmp_path):
    tone = sine(440.0, 16000, 1.0, amplitude=0.5)
    written = audio.write_audio_files(tmp_path / "point-00", tone, 16000, ("wav", "mp3"))
    assert [path.name for path in written] == ["point-00.wav", "point-00.mp3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["point-00.mp3", "point-00.wav"]
    assert written[0].read_bytes() == audio.wav_bytes(tone, 16000)
    assert abs(dominant_frequency(audio.decode(written[1], 16000), 16000) - 440.0) <= 1.0


def test_missing_ffmpeg_says_how_to_install_it(tmp_path, monkeypatch):
    path = encode(tmp_path / "tone.wav", sine(440.0, 16000, 0.1), 16000)
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))
    audio._tool.cache_clear()
    try:
        with pytest.raises(audio.FfmpegNotFoundError, match="apt-get install -y ffmpeg"):
            audio.decode(path)
    finally:
        audio._tool.cache_clear()


def test_mp3_padding_is_trimmed_only_when_the_lame_header_says_how_much(tmp_path):
    tone = sine(440.0, 44100, 3.0)
    with_header = encode(tmp_path / "header.mp3", tone, 44100)
    without_header = encode(tmp_path / "bare.mp3", tone, 44100, codec=["-c:a", "libmp3lame", "-write_xing", "0"])

    assert abs(len(audio.decode(with_header, 16000)) - 48000) <= 1
    # No header: the encoder delay (576 + 529 samples for LAME) and the last frame's padding stay in; still decodable.
    extra = (len(audio.decode(without_header, 16000)) - 48000) * 44100 / 16000
    assert 1105 <= extra <= 1105 + 1152
