"""Generation (`waveforms generate MODEL_URI OUT.wav --seconds S`): load an exported model, sample with FastGenerator.

An exported model (MODEL_URI of `waveforms train`) is read by `model_store`: its config.json once, its weights on first
use; `generate` takes the URI or the StoredModel a caller already holds.
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

from waveforms import limits, model_store, storage

# Sampling defaults (FastGenerator.generate). At 1.0 the real-music models of docs/quality.md continue with broadband
# hiss (drascula, two training seeds: 1 of 13 ten-second clips passed the flatness limit); at 0.9 all 17 did
# (hyperrogue: none at either, but more of its windows at 0.9). By periodicity none is music at any temperature
# (docs/quality.md, "Periodicity"): a colder sampler only trades noise for quiet. min_p truncation is off: it also cuts
# the rare way out of silence.
TEMPERATURE = 0.9
MIN_P = 0.0
# Candidates per clip (`--particles`), resampled every PARTICLE_CHUNK samples by p(chunk)^sharpen
# (FastGenerator.generate). 1 is plain sampling; docs/quality.md ("Sampling whole passages") measures what more buys
# and why it is not the default.
PARTICLES = 1
PARTICLE_CHUNK = 512  # 32 ms at 16 kHz: a few pitch periods, shorter than a note's attack
SHARPEN = 0.3  # of 0.1, 0.3 and 1, the best on the one model it helped (0.1 fell silent once; 1 left a clip a drone)


def load_model(model_uri: str | model_store.StoredModel):
    """-> (keras model, model configuration) of an exported model of any kind, local or in object storage."""
    stored = model_store.read(model_uri)
    network = stored.network()
    return (network if stored.kind == "wavenet" else network.model), stored.config


def _seed_codes(seed_audio: str, sample_rate: int, length: int, batch: int) -> np.ndarray:
    """The last `length` samples of a clip as mu-law codes (B, length); a shorter clip is left-padded with silence."""
    from waveforms import audio
    from waveforms.audio import SILENCE_CODE

    with storage.local_files([seed_audio]) as local:  # s3:// and minio:// seed audio too
        signal = audio.decode(local[seed_audio], sample_rate)
    if signal.size == 0:
        raise ValueError(f"--seed-audio {seed_audio}: no audio decoded")
    codes = audio.mu_law_encode(signal[-length:]).astype(np.int32)
    codes = np.concatenate([np.full(length - codes.size, SILENCE_CODE, np.int32), codes])
    return np.tile(codes[None, :], (batch, 1))  # (B, length)


def _genre_id(genre: str | int | None, export: dict) -> int | None:
    classes = export["model"].get("global_condition_classes", 0)
    genres = export.get("genres", [])
    if not classes:
        if genre is not None:
            raise ValueError("--genre given but the model is not genre-conditioned")
        return None
    if genre is None:
        raise ValueError(f"the model is genre-conditioned: pass --genre (one of {genres} or an id below {classes})")
    if str(genre) in genres:
        return genres.index(str(genre))
    if str(genre).isdigit() and int(genre) < classes:
        return int(genre)
    raise ValueError(f"--genre {genre!r}: choose one of {genres} or an id below {classes}")


def seed_signal(seed_audio: str, sample_rate: int, receptive_field: int) -> np.ndarray:
    """What the generator is given of a seed clip: its last receptive_field samples after the mu-law round trip
    (shorter clips are left-padded with silence); float32 (receptive_field,)."""
    from waveforms import audio

    return audio.mu_law_decode(_seed_codes(seed_audio, sample_rate, receptive_field, 1)[0])


def generate(model_uri: str | model_store.StoredModel, seconds: float, batch: int = 1, temperature: float = TEMPERATURE,
             seed_audio: str | None = None, seed: int = 0, genre: str | int | None = None, progress: bool = False,
             min_p: float = MIN_P, particles: int = PARTICLES, sharpen: float = SHARPEN) -> np.ndarray:  # fmt: skip
    """Sample `seconds` of new audio per batch row; -> float32 audio (batch, samples) in [-1, 1]. The model continues
    seed_audio (its last receptive field); pass "" to start from digital silence. None (the default) continues the
    primer clip saved with the model, or silence for a model exported without one. model_uri: a MODEL_URI, or the
    model_store.StoredModel of one (read once by the caller). min_p, sharpen: FastGenerator.generate. particles:
    candidates per clip, resampled by likelihood (FastGenerator); each costs as much sampling as a clip."""
    limits.check_range("--seconds", seconds, 0, limits.MAX_GENERATE_SECONDS, low_open=True)
    limits.check_range("--batch", batch, 1, limits.MAX_GENERATE_BATCH, integer=True)
    limits.check_range("--temperature", temperature, 0, limits.MAX_TEMPERATURE, low_open=True)
    limits.check_range("--min-p", min_p, 0, 1)
    limits.check_range("--particles", particles, 1, limits.MAX_GENERATE_BATCH // batch, integer=True)
    limits.check_range("--sharpen", sharpen, 0, limits.MAX_TEMPERATURE)
    batch, particles = int(batch), int(particles)  # whole numbers, checked above (4.0 is 4; 2.5 was refused)
    if seed_audio and storage.size(seed_audio) is None:  # local, s3:// or minio://
        raise ValueError(f"--seed-audio {seed_audio}: file not found")
    stored = model_store.read(model_uri)
    if seed_audio is None:
        seed_audio = stored.primer
    export = stored.export
    if stored.kind != "wavenet":
        raise ValueError(f"model {stored.uri}: generate handles WaveNet models, not {stored.kind!r}")
    genre_id = _genre_id(genre, export)
    sample_rate = int(export["sample_rate"])
    num_samples = max(1, int(round(seconds * sample_rate)))
    needed = batch * particles * num_samples * limits.GENERATED_BYTES_PER_SAMPLE
    limits.check_memory(
        f"generating {batch} x {seconds:g} s at {sample_rate} Hz"
        + (f", {particles} candidates each" if particles > 1 else ""),
        needed,
        "ask for fewer/shorter clips or fewer particles",
    )

    from waveforms import audio
    from waveforms.fastgen import FastGenerator, configure_threads

    configure_threads()  # before the first TensorFlow op: per-op thread pools halve sampling speed
    model, config = stored.network(), stored.config
    seed_codes = _seed_codes(seed_audio, sample_rate, config.receptive_field, batch) if seed_audio else None
    chunk = {"chunk_size": PARTICLE_CHUNK} if particles > 1 else {}
    generator = FastGenerator(model, config, batch_size=batch, particles=particles, **chunk)
    report = None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_samples, unit="sample", unit_scale=True, file=sys.stderr, desc="generate")

        def report(done: int, _total: int) -> None:
            bar.update(done - bar.n)

    try:
        codes = generator.generate(
            num_samples, temperature=temperature, min_p=min_p, seed=seed, seed_codes=seed_codes,
            global_condition=None if genre_id is None else np.full((batch,), genre_id, np.int32), progress=report,
            sharpen=sharpen,
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    return audio.mu_law_decode(np.asarray(codes))  # (B, N)


def output_paths(out: str, batch: int) -> list[str]:
    """OUT.wav for one clip; OUT-0.wav, OUT-1.wav ... for a batch."""
    if batch == 1:
        return [out]
    stem, suffix = os.path.splitext(out)
    return [f"{stem}-{index}{suffix}" for index in range(batch)]


def write_outputs(clips: np.ndarray, out: str, sample_rate: int) -> list[str]:
    """Write each clip as WAV/mp3/flac/ogg by extension, locally or to object storage, peak-limited to -1 dBFS so a
    lossy encoder's overshoot never clips; -> the URIs written."""
    from waveforms import audio

    written = []
    clips = [audio.limit_peak(clip) for clip in clips]
    with tempfile.TemporaryDirectory(prefix="waveforms-generate-") as scratch:
        for index, uri in enumerate(output_paths(out, len(clips))):
            if storage.is_remote(uri):
                local = os.path.join(scratch, os.path.basename(uri))
                audio.write_audio(local, clips[index], sample_rate)
                storage.upload_file(local, uri)
            else:
                audio.write_audio(uri, clips[index], sample_rate)
            written.append(uri)
    return written


def check_clips(clips: np.ndarray, export: dict) -> list:
    """audio_checks.check_clip for each generated clip, against the training data's profile saved with the model."""
    from waveforms import audio_checks

    profile = audio_checks.DataProfile.from_dict(export.get("data_profile"))
    return [audio_checks.check_clip(clip, int(export["sample_rate"]), profile) for clip in clips]
