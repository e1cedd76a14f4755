"""Sound spaces: encode corner sounds with the autoencoder, interpolate their embeddings on a grid, decode every point.

Coordinate convention (the only one; file names, manifest.json and the explorer page all use it):

    NW (x=0, y=0) ─────── NE (x=1, y=0)          x grows east, y grows south, both in [0, 1].
         │                     │                 4 corners are given in the order NW NE SW SE.
    SW (x=0, y=1) ─────── SE (x=1, y=1)          2 corners are W E: the path y = 0 from x=0 to x=1.

- Resolution R is the number of points along each side, for 2 and 4 corners alike.
- 2 corners: R points x = i/(R−1), weights (W, E) = (1−x, x).
- 4 corners: an R×R grid x = col/(R−1), y = row/(R−1) (row 0 is north). Weights are bilinear,
  (NW, NE, SW, SE) = ((1−x)(1−y), x(1−y), (1−x)y, xy), or, with `--weighting nsynth`, NSynth Super's distance
  weighting: each corner weighs max(0, 1 − its Euclidean distance to (x, y)), normalised to sum 1 (corners are exact,
  the centre is 1/4 each, an edge midpoint ignores the far corners).
- A point is named `x0.250_y0.500`; with several corner sounds (all combinations, as NSynth Super did) or a pitch axis
  the name gains a prefix `c02_` (combination index) and/or `p+7_` (pitch shift in semitones).

Pitch axis: corner sounds are pitch-shifted by resampling ("varispeed", like a tape played faster): duration and
formants move with the pitch. That is simple and honest; it is not a formant-preserving shifter.

Work order: validate everything (counts, ranges, files readable and long enough) before loading the model, encode every
corner clip once, interpolate, decode ALL points in one batched fast-generation pass, post-process, write files.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from waveforms import limits, storage
from waveforms.audio import fit_length, pitch_shift, postprocess
from waveforms.corners import CORNER_NAMES, loudest_excerpt

MANIFEST_FORMAT = "waveforms/soundspace-v1"
CONVENTION = (
    "x grows east, y grows south, x and y in [0, 1]; corners NW=(0,0) NE=(1,0) SW=(0,1) SE=(1,1); "
    "a 2-corner space is the line y=0 from W=(0,0) to E=(1,0)"
)
CORNER_XY: dict[str, tuple[float, float]] = {
    "W": (0.0, 0.0),
    "E": (1.0, 0.0),
    "NW": (0.0, 0.0),
    "NE": (1.0, 0.0),
    "SW": (0.0, 1.0),
    "SE": (1.0, 1.0),
}
WEIGHTINGS = ("bilinear", "nsynth")
FORMATS = ("wav", "mp3", "both")
EXCERPTS = ("loudest", "start")
MIN_RESOLUTION, MAX_RESOLUTION = 2, 64
MAX_PITCH_SHIFT = 24  # semitones; varispeed beyond two octaves is no longer the same instrument


# The pitch filter's default strength (autoencoder.pitch_filter). Measured on the 600-s models, 3 x 3 sampling seeds
# (docs/soundspace_quality.md, "A pitch filter"): 18 of 36 decoded corners within 2x of their sources' flatness at
# 0.8, 0 of 36 unfiltered; 0.9 smooths some tones past their sources (0.2x) and loosens the dark-to-bright path
PITCH_FILTER = 0.8
# The envelope filter's default strength (waveforms/envelope.py): 1 gives each point the whole of its interpolated
# envelope (docs/soundspace_quality.md, "An envelope filter")
ENVELOPE_FILTER = 1.0


class SoundSpaceError(ValueError):
    """Bad sound-space parameters or corner files; raised before any model work."""


@dataclass(frozen=True)
class GridPoint:
    row: int  # 0 = north edge
    col: int  # 0 = west edge
    x: float
    y: float
    weights: tuple[float, ...]  # one per corner, in CORNER_NAMES order, sums to 1

    @property
    def name(self) -> str:
        return f"x{self.x:.3f}_y{self.y:.3f}"


@dataclass(frozen=True)
class SoundSpaceSpec:
    corners: tuple[tuple[str, ...], ...]  # per corner (NW NE SW SE or W E order), one or more source files
    resolution: int
    weighting: str = "bilinear"
    seconds: float = 1.0  # length of every output clip
    pitch_shifts: tuple[int, ...] = ()  # semitones; empty = no pitch axis
    formats: str = "both"  # wav | mp3 | both
    peak_dbfs: float = -1.0
    fade_ms: float = 10.0
    temperature: float = 1.0
    # 0 to < 1: how hard the comb at each point's pitch turns down the noise between harmonics (autoencoder.pitch_filter)
    pitch_filter: float = PITCH_FILTER
    # 0 to 1: how far each point's band levels move towards its interpolated corners' spectral envelope (envelope.py)
    envelope_filter: float = ENVELOPE_FILTER
    seed: int = 0
    max_batch: int = 1024  # memory guard: larger spaces decode in several passes of this many points
    explorer: bool = True
    title: str = ""  # the explorer's title (default: "Sound space: <folder>")
    excerpt: str = "loudest"  # which part of a longer corner file is encoded: its loudest stretch, or its start


@dataclass(frozen=True)
class Space:
    """One grid: a choice of one source per corner at one pitch shift."""

    index: int
    combination: int
    sources: tuple[str, ...]  # one file per corner
    pitch_shift: int | None  # None when there is no pitch axis
    prefix: str = ""

    def point_name(self, point: GridPoint) -> str:
        return self.prefix + point.name


# ---------------------------------------------------------------- grid maths


def bilinear_weights(x: float, y: float) -> tuple[float, float, float, float]:
    """(NW, NE, SW, SE) weights of point (x, y)."""
    return ((1 - x) * (1 - y), x * (1 - y), (1 - x) * y, x * y)


def nsynth_weights(x: float, y: float) -> tuple[float, float, float, float]:
    """NSynth Super's weighting: max(0, 1 − distance to corner), normalised. Never all zero inside the unit square
    because the nearest corner is at most √2/2 away."""
    raw = [max(0.0, 1.0 - math.hypot(x - cx, y - cy)) for cx, cy in (CORNER_XY[n] for n in CORNER_NAMES[4])]
    total = sum(raw)
    return tuple(w / total for w in raw)  # type: ignore[return-value]


def grid_points(n_corners: int, resolution: int, weighting: str = "bilinear") -> list[GridPoint]:
    """All points of a space in row-major order (north to south, west to east)."""
    check_grid(n_corners, resolution, weighting)
    if n_corners == 2:
        last = resolution - 1
        return [GridPoint(0, i, i / last, 0.0, (1 - i / last, i / last)) for i in range(resolution)]
    weigh = bilinear_weights if weighting == "bilinear" else nsynth_weights
    points = []
    for row in range(resolution):
        for col in range(resolution):
            x, y = col / (resolution - 1), row / (resolution - 1)
            points.append(GridPoint(row, col, x, y, tuple(weigh(x, y))))
    return points


def interpolate(corner_embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(K, F, E) corner embeddings, (P, K) weights -> (P, F, E) weighted sums."""
    return np.einsum("pk,kfe->pfe", weights.astype(np.float32), corner_embeddings.astype(np.float32))


def check_grid(n_corners: int, resolution: int, weighting: str) -> None:
    if n_corners not in CORNER_NAMES:
        raise SoundSpaceError(
            f"--corners: got {n_corners} corners; give 2 (W E) or 4 (NW NE SW SE), a comma-separated list of files each"
        )
    if not isinstance(resolution, int) or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise SoundSpaceError(
            f"--resolution: got {resolution}; it must be an integer from {MIN_RESOLUTION} to {MAX_RESOLUTION}"
        )
    if weighting not in WEIGHTINGS:
        raise SoundSpaceError(f"--weighting: got {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    if n_corners == 2 and weighting != "bilinear":
        raise SoundSpaceError("--weighting nsynth needs 4 corners; a 2-corner path always weighs (1-x, x)")


def encode_corners(autoencoder, windows: np.ndarray) -> np.ndarray:
    """Corner clips (N, T) -> what a point interpolates, (N, ⌈T/H⌉, W + ENVELOPE_BANDS): the embedding the decoder
    hears (W channels), then the clip's spectral envelope in dB (envelope.spectral_envelope), which the envelope filter
    gives the decoded audio. One `interpolate` morphs both."""
    from waveforms.envelope import spectral_envelope

    config = autoencoder.config
    envelope = spectral_envelope(windows, config.sample_rate, config.hop_length)
    return np.concatenate([autoencoder.encode(windows), envelope], axis=-1)


def decode_points(autoencoder, conditions: np.ndarray, length: int, *, temperature: float, seed: int,
                  pitch_filter: float, envelope_filter: float, max_batch: int | None = None,
                  progress=None) -> np.ndarray:  # fmt: skip
    """Interpolated corners (P, F, W + bands) (encode_corners) -> the points' audio (P, length), float, before
    post-processing: one batched decode of the embeddings (`Autoencoder.decode`), then the pitch filter, then the
    envelope filter. What `waveforms soundspace` writes and soundspace_quality measures."""
    from waveforms.audio import mu_law_decode
    from waveforms.autoencoder import pitch_filter as filter_by_pitch
    from waveforms.envelope import ENVELOPE_BANDS
    from waveforms.envelope import envelope_filter as filter_by_envelope

    config = autoencoder.config
    width = config.embedding_width
    if conditions.shape[-1] != width + ENVELOPE_BANDS:
        raise ValueError(f"expected {width} embedding + {ENVELOPE_BANDS} envelope channels per frame "
                         f"(encode_corners), got {conditions.shape[-1]}")  # fmt: skip
    embeddings, envelopes = conditions[..., :width], conditions[..., width:]
    codes = autoencoder.decode(embeddings, length, temperature=temperature, seed=seed, max_batch=max_batch,
                               progress=progress)  # fmt: skip
    audio = filter_by_pitch(mu_law_decode(codes), embeddings, config, pitch_filter)
    return filter_by_envelope(audio, envelopes, config.sample_rate, config.hop_length, envelope_filter)


def spaces_for(corners: Sequence[Sequence[str]], pitch_shifts: Sequence[int]) -> list[Space]:
    """Every combination of one source per corner, at every pitch shift (NSynth Super's 'all combinations')."""
    combos = list(itertools.product(*corners))
    shifts: list[int | None] = list(pitch_shifts) if pitch_shifts else [None]
    spaces = []
    for c, combo in enumerate(combos):
        for shift in shifts:
            prefix = (f"c{c:02d}_" if len(combos) > 1 else "") + (f"p{shift:+d}_" if shift is not None else "")
            spaces.append(Space(len(spaces), c, tuple(combo), shift, prefix))
    return spaces


# ---------------------------------------------------------------- validation and corner audio


def parse_corners(corner_args: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """Command-line corner arguments ('a.wav,b.wav' per corner) -> a tuple of file tuples."""
    corners = []
    for i, arg in enumerate(corner_args):
        files = tuple(f.strip() for f in arg.split(",") if f.strip())
        if not files:
            raise SoundSpaceError(f"--corners: corner {i + 1} is empty")
        corners.append(files)
    return tuple(corners)


def validate_spec(spec: SoundSpaceSpec) -> None:
    """Parameter checks that need no audio."""
    check_grid(len(spec.corners), spec.resolution, spec.weighting)
    limits.check_range(
        "--seconds", spec.seconds, 0, limits.MAX_SOUNDSPACE_SECONDS, low_open=True, error=SoundSpaceError
    )
    if spec.excerpt not in EXCERPTS:
        raise SoundSpaceError(f"--excerpt: got {spec.excerpt!r}; choose one of {', '.join(EXCERPTS)}")
    if spec.formats not in FORMATS:
        raise SoundSpaceError(f"--format: got {spec.formats!r}; choose one of {', '.join(FORMATS)}")
    if len(set(spec.pitch_shifts)) != len(spec.pitch_shifts):
        raise SoundSpaceError(f"--pitch-axis: repeated shifts in {list(spec.pitch_shifts)}")
    for shift in spec.pitch_shifts:
        if abs(shift) > MAX_PITCH_SHIFT:
            raise SoundSpaceError(f"--pitch-axis: {shift} semitones is beyond ±{MAX_PITCH_SHIFT}")
    limits.check_range(
        "--temperature", spec.temperature, 0, limits.MAX_TEMPERATURE, low_open=True, error=SoundSpaceError
    )
    if not isinstance(spec.pitch_filter, int | float) or not 0 <= spec.pitch_filter < 1:
        raise SoundSpaceError(f"--pitch-filter: got {spec.pitch_filter}; it must be in [0, 1) (0 = off)")
    if not isinstance(spec.envelope_filter, int | float) or not 0 <= spec.envelope_filter <= 1:
        raise SoundSpaceError(f"--envelope-filter: got {spec.envelope_filter}; it must be in [0, 1] (0 = off)")
    if not spec.peak_dbfs <= 0:
        raise SoundSpaceError(f"--peak-dbfs: got {spec.peak_dbfs}; it must be 0 or below")
    limits.check_range(
        "--max-batch", spec.max_batch, 1, limits.MAX_SOUNDSPACE_BATCH, integer=True, error=SoundSpaceError
    )
    for files in spec.corners:
        for path in files:
            if storage.is_remote(path):
                continue  # checked when make_soundspace downloads it
            if os.path.isdir(path):
                raise SoundSpaceError(f"corner file {path}: is a directory, not an audio file")
            if not os.path.isfile(path):
                raise SoundSpaceError(f"corner file {path}: no such file")
            if not os.access(path, os.R_OK):
                raise SoundSpaceError(f"corner file {path}: not readable")


def load_corner_audio(spec: SoundSpaceSpec, sample_rate: int, hop: int) -> dict[str, np.ndarray]:
    """Decode every corner file once; reject unreadable files and clips shorter than one embedding hop (also after
    the strongest upward pitch shift, which shortens the clip)."""
    from waveforms.audio import AudioDecodeError, decode

    clips: dict[str, np.ndarray] = {}
    highest = max(spec.pitch_shifts, default=0)
    for files in spec.corners:
        for path in files:
            if path in clips:
                continue
            try:
                clip = decode(path, sample_rate)
            except AudioDecodeError as exc:
                raise SoundSpaceError(f"corner file {path}: cannot decode it ({exc})") from exc
            shifted_length = int(len(clip) / 2 ** (max(highest, 0) / 12))
            if shifted_length < hop:
                detail = f" after a +{highest} semitone shift" if highest > 0 else ""
                raise SoundSpaceError(
                    f"corner file {path}: {len(clip)} samples{detail} is shorter than one embedding hop "
                    f"({hop} samples = {hop / sample_rate * 1000:.0f} ms at {sample_rate} Hz)"
                )
            clips[path] = clip
    return clips


def corner_window(clip: np.ndarray, length: int, excerpt: str = "loudest") -> np.ndarray:
    """The `length` samples of a corner sound that are encoded: its loudest stretch (a song's intro is often near
    silence) or its start, zero-padded when the sound is shorter."""
    if excerpt == "loudest":
        clip = loudest_excerpt(clip, length)[1]
    return fit_length(clip, length)


# ---------------------------------------------------------------- the manifest


def manifest_for(
    spec: SoundSpaceSpec,
    spaces: Sequence[Space],
    points: Sequence[GridPoint],
    *,
    sample_rate: int,
    model_uri: str = "",
    extensions: Sequence[str] = ("wav",),
) -> dict:
    """manifest.json: the convention, the parameters, and one entry per output clip with its coordinates and weights."""
    names = CORNER_NAMES[len(spec.corners)]
    entries = []
    for space in spaces:
        for point in points:
            name = space.point_name(point)
            entries.append(
                {
                    "name": name,
                    "files": {ext: f"{name}.{ext}" for ext in extensions},
                    "space": space.index,
                    "row": point.row,
                    "col": point.col,
                    "x": round(point.x, 6),
                    "y": round(point.y, 6),
                    "weights": {corner: round(w, 6) for corner, w in zip(names, point.weights, strict=True)},
                    "sources": {
                        corner: os.path.basename(src) for corner, src in zip(names, space.sources, strict=True)
                    },
                    "pitch_shift": space.pitch_shift,
                }
            )
    return {
        "format": MANIFEST_FORMAT,
        "convention": CONVENTION,
        "corner_names": list(names),
        "corner_xy": {n: list(CORNER_XY[n]) for n in names},
        "corners": {n: [os.path.basename(f) for f in files] for n, files in zip(names, spec.corners, strict=True)},
        "rows": 1 if len(spec.corners) == 2 else spec.resolution,
        "cols": spec.resolution,
        "spaces": [
            {
                "index": s.index,
                "combination": s.combination,
                "pitch_shift": s.pitch_shift,
                "prefix": s.prefix,
                "sources": {n: os.path.basename(f) for n, f in zip(names, s.sources, strict=True)},
            }
            for s in spaces
        ],
        "points": entries,
        "sample_rate": sample_rate,
        "model": model_uri,
        "parameters": {k: v for k, v in asdict(spec).items() if k != "corners"},
    }


# ---------------------------------------------------------------- the whole job


@dataclass
class SoundSpaceResult:
    out_dir: str
    manifest: dict
    audio: dict[str, np.ndarray] = field(repr=False)  # point name -> post-processed clip
    decode_seconds: float = 0.0


def make_soundspace(
    model_uri: str, out_dir: str, spec: SoundSpaceSpec, progress: Callable[[str], None] | None = None
) -> SoundSpaceResult:
    """A sound space from corner files to out_dir, each a local path, s3:// or minio:// URI: remote corners are
    downloaded first, a remote out_dir is checked with a write probe before any work and filled from a local staging
    folder at the end."""
    import dataclasses
    import tempfile

    validate_spec(spec)
    storage.check_writable(out_dir)
    uris = [path for files in spec.corners for path in files]
    with storage.local_files(uris) as local, tempfile.TemporaryDirectory(prefix="waveforms-soundspace-") as staging:
        local_spec = dataclasses.replace(spec, corners=tuple(tuple(local[p] for p in files) for files in spec.corners))
        if not storage.is_remote(out_dir):
            return _make_soundspace(model_uri, out_dir, local_spec, progress)
        result = _make_soundspace(model_uri, staging, local_spec, progress)
        storage.sync_dir_up(staging, out_dir)
        return dataclasses.replace(result, out_dir=out_dir)


def _make_soundspace(
    model_uri: str, out_dir: str, spec: SoundSpaceSpec, progress: Callable[[str], None] | None = None
) -> SoundSpaceResult:
    """Validate, encode corners, interpolate, decode all points in one batch, post-process, write files + manifest."""
    import time

    say = progress or (lambda message: None)
    validate_spec(spec)
    from waveforms import model_store

    stored = model_store.read(model_uri).require("autoencoder")  # config.json, read once; the weights load below
    config = stored.config
    sample_rate, hop = config.sample_rate, config.hop_length
    clips_held = len(spaces_for(spec.corners, spec.pitch_shifts)) * len(
        grid_points(len(spec.corners), spec.resolution, spec.weighting)
    )  # every point's audio is held until written
    limits.check_memory(f"a sound space of {clips_held} clips x {spec.seconds:g} s at {sample_rate} Hz",
                        clips_held * spec.seconds * sample_rate * limits.GENERATED_BYTES_PER_SAMPLE,
                        "lower --seconds or --resolution, or give fewer corner files")  # fmt: skip
    clips = load_corner_audio(spec, sample_rate, hop)
    os.makedirs(out_dir, exist_ok=True)

    parts = stored.network()
    length = int(round(spec.seconds * sample_rate))
    frames = math.ceil(length / hop)
    spaces = spaces_for(spec.corners, spec.pitch_shifts)
    points = grid_points(len(spec.corners), spec.resolution, spec.weighting)

    # encode each (source, shift) once
    keys = sorted({(src, space.pitch_shift or 0) for space in spaces for src in space.sources})
    say(f"encoding {len(keys)} corner clips")
    windows = np.stack(
        [corner_window(pitch_shift(clips[src], shift), frames * hop, spec.excerpt) for src, shift in keys]
    )
    embeddings = dict(zip(keys, encode_corners(parts, windows), strict=True))  # each (frames, E + envelope bands)

    weights = np.array([p.weights for p in points], np.float32)  # (P, K)
    conditions = np.concatenate(
        [
            interpolate(np.stack([embeddings[(src, space.pitch_shift or 0)] for src in space.sources]), weights)
            for space in spaces
        ]
    )  # (S*P, frames, E)
    say(f"decoding {len(conditions)} points x {length} samples in one batch")
    start = time.perf_counter()
    decoded = decode_points(
        parts,
        conditions,
        length,
        temperature=spec.temperature,
        seed=spec.seed,
        pitch_filter=spec.pitch_filter,
        envelope_filter=spec.envelope_filter,
        max_batch=spec.max_batch,
        progress=(lambda done, total: say(f"  {done}/{total} samples")) if progress else None,
    )
    decode_seconds = time.perf_counter() - start  # the pitch and envelope filters included

    from waveforms.audio import write_audio_files

    extensions = ("wav", "mp3") if spec.formats == "both" else (spec.formats,)
    manifest = manifest_for(spec, spaces, points, sample_rate=sample_rate, model_uri=model_uri, extensions=extensions)
    audio = {
        entry["name"]: postprocess(row, sample_rate, length, spec.peak_dbfs, spec.fade_ms)
        for entry, row in zip(manifest["points"], decoded, strict=True)
    }
    check_points(manifest, audio, stored)
    say(f"writing {len(audio)} clips ({', '.join(extensions)})")
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:  # mp3 = one ffmpeg process per clip
        list(
            pool.map(
                lambda item: write_audio_files(os.path.join(out_dir, item[0]), item[1], sample_rate, extensions),
                audio.items(),
            )
        )
    batch = min(spec.max_batch, len(decoded))
    manifest["decode"] = {
        "batch": batch,  # every point in one pass unless the space exceeds --max-batch
        "passes": math.ceil(len(decoded) / batch),
        "seconds": round(decode_seconds, 3),
        "samples_per_second": round(len(decoded) * length / max(decode_seconds, 1e-9), 1),
    }
    with open(os.path.join(out_dir, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=2)
    if spec.explorer:
        from waveforms.explorer import write_explorer

        originals = {os.path.basename(src): corner_window(clip, length, spec.excerpt) for src, clip in clips.items()}
        write_explorer(os.path.join(out_dir, "explorer.html"), manifest, audio, sample_rate,
                       title=spec.title or None, corners=originals)  # fmt: skip
    return SoundSpaceResult(out_dir, manifest, audio, decode_seconds)


def check_points(manifest: dict, audio: dict[str, np.ndarray], model) -> None:
    """The audio checks' verdict on every decoded point (against the training data's profile saved with the model),
    into the manifest: each point's "check" and a "checks" summary."""
    from waveforms import audio_checks, model_store
    from waveforms.generate import check_clips

    # model: a MODEL_URI or its model_store.StoredModel. A model saved outside `waveforms train` has no profile in its
    # config.json: the checks use their fallbacks
    export = model_store.read(model).export
    checks = check_clips([audio[entry["name"]] for entry in manifest["points"]], export)
    for entry, check in zip(manifest["points"], checks, strict=True):
        entry["check"] = check.verdict
    manifest["checks"] = audio_checks.summary_metrics(checks)


def failing_points(manifest: dict) -> list[tuple[str, str]]:
    return [(p["name"], p["check"]) for p in manifest["points"] if p.get("check", "ok") != "ok"]
