"""`waveforms generate MODEL_URI OUT`: sample clips from a trained WaveNet (waveforms.generate)."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from waveforms import model_store, storage
from waveforms.generate import (
    MIN_P,
    PARTICLE_CHUNK,
    PARTICLES,
    SHARPEN,
    TEMPERATURE,
    check_clips,
    generate,
    seed_signal,
    write_outputs,
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_uri", metavar="MODEL_URI", help="MODEL_URI of a finished `waveforms train` run")
    parser.add_argument("out", metavar="OUT", help="output file: .wav, .mp3, .flac or .ogg (a batch adds -0, -1, ...)")
    parser.add_argument("--seconds", type=float, required=True, help="seconds of audio per clip")
    parser.add_argument("--batch", type=int, default=1, help="clips generated together (default 1)")
    parser.add_argument("--temperature", type=float, default=TEMPERATURE,
                        help=f"sampling temperature (default {TEMPERATURE:g})")  # fmt: skip
    parser.add_argument("--min-p", type=float, default=MIN_P,
                        help=f"never draw a sample less likely than this times the likeliest (0-1; default {MIN_P:g})")  # fmt: skip
    parser.add_argument("--particles", type=int, default=PARTICLES,
                        help="candidates sampled per clip, resampled by the model's likelihood every "
                        f"{PARTICLE_CHUNK} samples; each costs as much time as a clip (default {PARTICLES}: plain "
                        "sampling)")  # fmt: skip
    parser.add_argument("--sharpen", type=float, default=SHARPEN,
                        help=f"with --particles: candidates are weighted by the model's probability of their last "
                        f"{PARTICLE_CHUNK} samples to this power (0: unweighted; default {SHARPEN:g})")  # fmt: skip
    parser.add_argument(
        "--seed-audio",
        help="a clip whose last receptive field starts the generation (default: the primer clip of training audio "
        "saved with the model)",
    )
    parser.add_argument("--from-silence", action="store_true", help="start from digital silence instead of a clip")
    parser.add_argument(
        "--include-seed", action="store_true", help="write the seed (one receptive field) before the continuation"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same audio")
    parser.add_argument("--genre", help="genre name or id, for genre-conditioned models")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(args: argparse.Namespace) -> int:
    from waveforms import audio

    suffix = os.path.splitext(args.out)[1].lower()
    if suffix not in audio.WRITABLE_EXTENSIONS:
        print(f"error: {args.out}: unknown extension {suffix!r} (use {audio.WRITABLE_NAMES})", file=sys.stderr)
        return 2
    try:
        stored = model_store.read(args.model_uri)  # config.json read once, passed along
        export = stored.export
        sample_rate = int(export["sample_rate"])
        if args.from_silence and args.seed_audio:
            print("error: --from-silence and --seed-audio exclude each other", file=sys.stderr)
            return 2
        seed_audio = "" if args.from_silence else args.seed_audio
        clips = generate(stored, args.seconds, batch=args.batch, temperature=args.temperature,
                         seed_audio=seed_audio, seed=args.seed, genre=args.genre, progress=not args.no_progress,
                         min_p=args.min_p, particles=args.particles, sharpen=args.sharpen)  # fmt: skip
        checked = clips  # the verdict is on what the model made, not on the seed in front of it
        used = seed_audio if seed_audio is not None else stored.primer
        if args.include_seed and used:
            field = int(export["receptive_field"])
            prefix = seed_signal(used, sample_rate, field)
            clips = np.concatenate([np.tile(prefix[None], (len(clips), 1)), clips], axis=1)
            print(f"the continuation starts at {field / sample_rate:.3f} s (after the seed)", file=sys.stderr)
        written = write_outputs(clips, args.out, sample_rate)
    except (ValueError, storage.StorageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for uri, check in zip(written, check_clips(checked, export), strict=True):
        print(f"wrote {uri} ({clips.shape[1] / sample_rate:.2f} s at {sample_rate} Hz)")
        print(f"check {uri}: {check.verdict}", file=sys.stderr)
    return 0
