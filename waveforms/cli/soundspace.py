"""`waveforms soundspace MODEL_URI OUT_DIR --corners ...`: a grid of decoded embeddings (waveforms.soundspace)."""

from __future__ import annotations

import argparse
import os
import sys

from waveforms import storage
from waveforms.config import Option, add_options, from_options
from waveforms.soundspace import (
    CONVENTION,
    EXCERPTS,
    MAX_RESOLUTION,
    MIN_RESOLUTION,
    SoundSpaceError,
    SoundSpaceSpec,
    failing_points,
    make_soundspace,
    parse_corners,
)

# flags for SoundSpaceSpec fields (type and default from the field), before and after --pitch-axis in --help
GRID_OPTIONS = (
    Option(
        "resolution",
        f"points along each side, corners included: 2 corners give R points, 4 corners an RxR grid "
        f"({MIN_RESOLUTION}-{MAX_RESOLUTION})",
    ),  # fmt: skip
    Option("weighting", "4 corners: bilinear (default) or nsynth (distance)"),
    Option("seconds", "length of every clip (default 1.0)"),
)
RENDER_OPTIONS = (
    Option(
        "excerpt",
        "which --seconds of a longer corner file to encode: its loudest stretch or its start",
        choices=EXCERPTS,
    ),  # fmt: skip
    Option("formats", "wav, mp3 or both (default)", flag="--format"),
    Option("peak_dbfs", "peak normalisation level (default -1 dBFS)"),
    Option("temperature", "sampling temperature (default 1.0)"),
    Option(
        "pitch_filter",
        "0 to <1: how far a comb at each point's pitch turns down the decoder's noise between "
        "harmonics (default 0.8; 0 = off)",
    ),
    Option(
        "envelope_filter",
        "0 to 1: how far each point's band levels move towards its corners' interpolated spectral envelope "
        "(default 1; 0 = off)",
    ),
    Option("seed", "sampling seed (default 0)"),
    Option("max_batch", "decode at most this many points per pass"),
    Option("explorer", "do not write explorer.html", flag="--no-explorer", negate=True),
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = CONVENTION
    parser.add_argument(
        "model_uri", help="trained autoencoder (a model directory written by `waveforms train --model autoencoder`)"
    )
    parser.add_argument("out_dir", help="output folder: one clip per grid point, manifest.json, explorer.html")
    parser.add_argument(
        "--corners",
        nargs="+",
        required=True,
        metavar="FILES",
        help="2 corners (W E) or 4 (NW NE SW SE); each a file or a comma-separated list (all combinations)",
    )
    add_options(parser, SoundSpaceSpec, GRID_OPTIONS)
    parser.add_argument(
        "--pitch-axis",
        type=int,
        nargs="+",
        default=[],
        metavar="SEMITONES",
        help="also render the space at these varispeed pitch shifts, e.g. -12 0 7",
    )
    add_options(parser, SoundSpaceSpec, RENDER_OPTIONS)


def run(args: argparse.Namespace) -> int:
    try:
        corners = parse_corners(args.corners)
        spec = from_options(
            SoundSpaceSpec, args, GRID_OPTIONS + RENDER_OPTIONS, corners=corners, pitch_shifts=tuple(args.pitch_axis),
            title=f"Sound space, {len(corners)} corners: " + " · ".join(os.path.basename(f[0]) for f in corners),
        )  # fmt: skip
        result = make_soundspace(args.model_uri, args.out_dir, spec, progress=lambda m: print(m, file=sys.stderr))
    except (SoundSpaceError, ValueError) as exc:  # ValueError: an unusable model directory (named in the message)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except storage.StorageError as exc:  # unreachable storage, wrong keys, a corner URI that does not exist
        print(f"error: {exc}", file=sys.stderr)
        return 1
    n = len(result.manifest["points"])
    failing = failing_points(result.manifest)
    if failing:
        listed = "; ".join(f"{name}: {verdict}" for name, verdict in failing[:8])
        more = f" (and {len(failing) - 8} more)" if len(failing) > 8 else ""
        print(f"check: {len(failing)} of {n} clips fail the audio checks: {listed}{more}", file=sys.stderr)
    else:
        print(f"check: all {n} clips pass the audio checks", file=sys.stderr)
    print(
        f"wrote {n} clips, manifest.json{' and explorer.html' if spec.explorer else ''} to {result.out_dir} "
        f"(decoded at {result.manifest['decode']['samples_per_second']:.0f} samples/s)"
    )
    return 0
