"""Checks every generated or decoded clip before anyone is shown it: silent, noise-like, clipped, DC, loudness.

A clip is measured in 1-s windows and judged against the training data's own statistics (a DataProfile computed at
conversion from up to PROFILE_WINDOWS_PER_SONG evenly spaced 1-s windows of every song, after the same mu-law round trip
a generated clip goes through, and stored in manifest.json under "statistics"), not against constants tuned to one
dataset:

    silent      a window, or the tail after the sound stops, below the silence threshold: the lower of -50 dBFS and
                10 dB under the data's 5th-percentile window RMS (so a quiet collection is not called silent)
    noise-like  a sounding window whose spectral flatness (DC removed) is above the data's 95th percentile, or whose
                periodicity (spectral.periodicity) is below the data's 5th percentile. Flatness alone passes
                low-passed noise: over a second it is ruled by the spectrum's tilt (docs/quality.md, "Periodicity")
    monotonous  a clip of at least MONOTONY_MIN_WINDOWS sounding seconds whose median spectral change (spectral.
                spectral_change: how far each quarter-second's log-mel spectrum moves from the last) is under
                MONOTONY_FRACTION of the data's 5th percentile: one held tone or drone where the data plays notes
                (docs/quality.md, "Drones"). Judged only against a profile that measured it
    clipped     more than 0.1% of samples at full scale
    DC offset   |mean| above 0.05 and above twice the data's 95th percentile
    quiet       the sounding windows' median RMS more than 20 dB under the data's median

The verdict is "ok" or the problems joined by "; " (e.g. "silent after 0.05 s; noise-like in 7 of 10 s"). Without a
profile (a dataset converted before profiles existed) fixed fallbacks are used and the verdict says so; how much a sound
changes differs too much between collections (held notes, phrases, songs) for a fixed fallback, so monotony is then not
judged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from waveforms import spectral

WINDOW_SECONDS = 1.0
FRAME_SECONDS = 0.01  # resolution of "silent after ..."
SILENCE_DBFS = -50.0
SILENCE_MARGIN_DB = 10.0  # below the data's 5th-percentile window RMS
MIN_SILENCE_DBFS = -80.0  # never lower than this, whatever the data
MIN_SILENT_TAIL_SECONDS = 0.25  # a shorter silent ending is a natural release, not a dead clip
FULL_SCALE = 0.999
MAX_CLIPPED_FRACTION = 0.001
MAX_DC = 0.05
QUIET_MARGIN_DB = 20.0
FALLBACK_FLATNESS = 0.2  # without a data profile: white noise measures about 0.56, music about 0.001-0.06
# without a profile, or with one measured before periodicity was: white noise measures about 0.38, brown noise 0.46,
# the seconds of two game soundtracks 0.6-1.0 (5th percentiles 0.60 and 0.69), synth phrases 0.8-1.0
FALLBACK_PERIODICITY = 0.5
# monotonous: under 3/4 of the data's 5th-percentile window, so a real song's 10-s clip is rarely called monotonous
# (measured: 2 of 239 drascula clips, 0 of 104 hyperrogue clips at 3/4; 9 and 3 at the 5th percentile itself), while
# the demo model's drones (median 1.4-1.8 dB) are, against the phrases' 4.1 dB limit
MONOTONY_FRACTION = 0.75
MONOTONY_MIN_WINDOWS = 3  # a shorter clip (a note, a sound-space point) is judged as a sound, not as a passage
PROFILE_WINDOWS_PER_SONG = 8
CLIP_WIDE_PROBLEMS = ("monotonous", "quiet", "clipped", "DC")  # fail every window of the clip
PERCENTILES = (5, 50, 95, 99)


def _dbfs(rms: np.ndarray | float) -> np.ndarray:
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def _windows(x: np.ndarray, sample_rate: int) -> list[np.ndarray]:
    """Consecutive 1-s windows; a clip shorter than a window is one window; a last partial window of at least half a
    second counts, a shorter tail joins nothing (it is covered by the frame-level silence check)."""
    size = int(round(WINDOW_SECONDS * sample_rate))
    if x.size <= size:
        return [x]
    windows = [x[start : start + size] for start in range(0, x.size - size + 1, size)]
    tail = x.size % size
    if tail >= size // 2:
        windows.append(x[-tail:])
    return windows


@dataclass(frozen=True)
class WindowMeasures:
    """Per-window measurements of one clip: RMS in dBFS, spectral flatness, periodicity and spectral change of the
    DC-free window, DC."""

    rms_dbfs: np.ndarray  # (W,)
    flatness: np.ndarray  # (W,)
    dc: np.ndarray  # (W,)
    periodicity: np.ndarray  # (W,)
    change: np.ndarray  # (W,) dB

    @classmethod
    def of(cls, windows: list[np.ndarray], sample_rate: int) -> WindowMeasures:
        rms, flat, dc, periodic, change = [], [], [], [], []
        for window in windows:
            w = np.asarray(window, dtype=np.float64)
            mean = float(w.mean()) if w.size else 0.0
            centred = (w - mean).astype(np.float32)
            rms.append(float(_dbfs(math.sqrt(float(np.mean(np.square(w)))) if w.size else 0.0)))
            flat.append(spectral.spectral_flatness(centred) if w.size else 0.0)
            periodic.append(spectral.periodicity(centred, sample_rate) if w.size else 0.0)
            change.append(spectral.spectral_change(centred, sample_rate))
            dc.append(mean)
        return cls(np.array(rms), np.array(flat), np.array(dc), np.array(periodic), np.array(change))


def measure(x: np.ndarray, sample_rate: int) -> WindowMeasures:
    return WindowMeasures.of(_windows(np.asarray(x, dtype=np.float32).ravel(), sample_rate), sample_rate)


def _evenly_spaced(windows: list[np.ndarray], count: int) -> list[np.ndarray]:
    if len(windows) > count:
        windows = [windows[i] for i in np.linspace(0, len(windows) - 1, count).round().astype(int)]
    return windows


@dataclass(frozen=True)
class DataProfile:
    """What the training data's 1-s windows look like: the ruler for every generated clip."""

    windows: int
    rms_dbfs: dict[str, float]  # percentiles p5, p50, p95, p99 over all windows
    flatness: dict[str, float]  # percentiles over windows above SILENCE_DBFS (silence has no spectrum to judge)
    dc: dict[str, float]  # percentiles of |DC|
    periodicity: dict[str, float] | None = None  # percentiles over the same sounding windows; None: measured before
    change: dict[str, float] | None = None  # spectral change (dB), the same way

    @classmethod
    def from_samples(cls, rms_dbfs, flatness, dc, periodicity=None, change=None) -> DataProfile:
        """Percentiles of the windows' measures. `periodicity` and `change` are left out (None) unless there is one per
        window: parts of a dataset converted before they were measured carry none."""
        rms, flat, dc = (np.asarray(values, dtype=np.float64) for values in (rms_dbfs, flatness, dc))
        if rms.size == 0:
            raise ValueError("a data profile needs at least one window")
        sounding = rms > SILENCE_DBFS
        if not sounding.any():
            sounding = np.ones_like(sounding)

        def percentiles(values: np.ndarray) -> dict[str, float]:
            return {f"p{p}": round(float(np.percentile(values, p)), 6) for p in PERCENTILES}

        def of_sounding(values) -> dict[str, float] | None:
            values = None if values is None else np.asarray(values, dtype=np.float64)
            return percentiles(values[sounding]) if values is not None and values.size == rms.size else None

        return cls(int(rms.size), percentiles(rms), percentiles(flat[sounding]), percentiles(np.abs(dc)),
                   of_sounding(periodicity), of_sounding(change))  # fmt: skip

    def to_dict(self) -> dict:
        data = {"window_seconds": WINDOW_SECONDS, "windows": self.windows, "rms_dbfs": self.rms_dbfs,
                "flatness": self.flatness, "dc": self.dc}  # fmt: skip
        if self.periodicity is not None:
            data["periodicity"] = self.periodicity
        if self.change is not None:
            data["change"] = self.change
        return data

    @classmethod
    def from_dict(cls, data: dict | None) -> DataProfile | None:
        """None for a missing or malformed profile (older datasets): checks then use the fallbacks. A profile without
        periodicity or change (measured before they were) keeps its other percentiles."""

        def floats(values: dict | None) -> dict[str, float] | None:
            return None if values is None else {k: float(v) for k, v in values.items()}

        try:
            return cls(int(data["windows"]), floats(data["rms_dbfs"]), floats(data["flatness"]), floats(data["dc"]),
                       floats(data.get("periodicity")), floats(data.get("change")))  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def profile_sample_of(codes: np.ndarray, sample_rate: int) -> dict[str, list[float]]:
    """A song's contribution to the profile, from its mu-law codes (what a generated clip is also made of)."""
    from waveforms.audio import mu_law_decode

    # windows chosen on the codes, and only those decoded: a long song (or its codes file) is never decoded whole
    chosen = _evenly_spaced(_windows(np.asarray(codes).ravel(), sample_rate), PROFILE_WINDOWS_PER_SONG)
    measures = WindowMeasures.of([mu_law_decode(window) for window in chosen], sample_rate)
    return {"rms_dbfs": [round(float(v), 3) for v in measures.rms_dbfs],
            "flatness": [round(float(v), 6) for v in measures.flatness],
            "dc": [round(float(v), 6) for v in measures.dc],
            "periodicity": [round(float(v), 4) for v in measures.periodicity],
            "change": [round(float(v), 3) for v in measures.change]}  # fmt: skip


@dataclass(frozen=True)
class Thresholds:
    silence_dbfs: float
    flatness: float
    dc: float
    quiet_dbfs: float | None
    from_data: bool
    periodicity: float = FALLBACK_PERIODICITY
    change: float | None = None  # dB; None: not judged (no profile, or one measured before change was)

    @classmethod
    def for_profile(cls, profile: DataProfile | None) -> Thresholds:
        if profile is None:
            return cls(SILENCE_DBFS, FALLBACK_FLATNESS, MAX_DC, None, False)
        silence = max(MIN_SILENCE_DBFS, min(SILENCE_DBFS, profile.rms_dbfs["p5"] - SILENCE_MARGIN_DB))
        periodicity = profile.periodicity["p5"] if profile.periodicity else FALLBACK_PERIODICITY
        change = MONOTONY_FRACTION * profile.change["p5"] if profile.change else None
        return cls(silence, profile.flatness["p95"], max(MAX_DC, 2 * profile.dc["p95"]),
                   profile.rms_dbfs["p50"] - QUIET_MARGIN_DB, True, periodicity, change)  # fmt: skip


@dataclass(frozen=True)
class ClipCheck:
    """The verdict on one clip and the numbers behind it (all over the whole clip: silence counts)."""

    verdict: str  # "ok" or the problems joined by "; "
    problems: tuple[str, ...]
    seconds: float
    rms_dbfs: float  # whole clip
    sound_ends_at: float  # seconds: end of the last frame above the silence threshold (0 for a silent clip)
    silent_windows: int
    noisy_windows: int  # sounding windows too flat or too aperiodic
    windows: int
    clipped_fraction: float
    dc: float
    median_flatness: float  # over sounding windows (0 when none)
    thresholds: Thresholds = field(repr=False)
    aperiodic_windows: int = 0  # of the noisy windows, those below the periodicity threshold
    median_periodicity: float = 0.0  # over sounding windows (0 when none)
    median_change: float = 0.0  # dB, spectral change over sounding windows (0 when none)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def monotonous(self) -> bool:
        return any(problem.startswith("monotonous") for problem in self.problems)

    @property
    def passing_windows(self) -> int:
        """1-s windows neither silent nor noise-like; none when the whole clip fails (monotonous, quiet, clipped, DC
        offset): a drone's seconds each sound like the data, its ten seconds do not."""
        return passing_windows(self.problems, self.windows, self.silent_windows + self.noisy_windows)

    def metrics(self) -> dict[str, float]:
        return {"ok": float(self.ok), "rms_dbfs": self.rms_dbfs, "sound_ends_at": self.sound_ends_at,
                "silent_windows": float(self.silent_windows), "noisy_windows": float(self.noisy_windows),
                "clipped_fraction": self.clipped_fraction, "median_flatness": self.median_flatness,
                "aperiodic_windows": float(self.aperiodic_windows),
                "median_periodicity": self.median_periodicity, "median_change": self.median_change}  # fmt: skip


def passing_windows(problems: tuple[str, ...] | list[str], windows: int, failing_windows: int) -> int:
    """ClipCheck.passing_windows from its parts; also what a verdict printed by `waveforms generate` says, when the
    windows are read back from it (silent and noisy windows are disjoint: noisy counts sounding windows only)."""
    if any(problem.startswith(CLIP_WIDE_PROBLEMS) for problem in problems):
        return 0
    return windows - failing_windows


def _sound_end(x: np.ndarray, sample_rate: int, silence_dbfs: float) -> float:
    frame = max(1, int(round(FRAME_SECONDS * sample_rate)))
    count = x.size // frame
    if count == 0:
        loud = x.size and _dbfs(math.sqrt(float(np.mean(np.square(x, dtype=np.float64))))) > silence_dbfs
        return x.size / sample_rate if loud else 0.0
    frames = x[: count * frame].astype(np.float64).reshape(count, frame)
    loud = np.flatnonzero(_dbfs(np.sqrt(np.mean(np.square(frames), axis=1))) > silence_dbfs)
    if loud.size == 0:
        return 0.0
    return min(x.size, (int(loud[-1]) + 1) * frame) / sample_rate


def check_clip(x: np.ndarray, sample_rate: int, profile: DataProfile | None = None) -> ClipCheck:
    x = np.asarray(x, dtype=np.float32).ravel()
    if x.size == 0:
        raise ValueError("check_clip: empty clip")
    if not np.all(np.isfinite(x)):
        raise ValueError("check_clip: clip contains NaN or infinity")
    limits = Thresholds.for_profile(profile)
    seconds = x.size / sample_rate
    measures = measure(x, sample_rate)
    silent = measures.rms_dbfs <= limits.silence_dbfs
    aperiodic = ~silent & (measures.periodicity < limits.periodicity)
    noisy = (~silent & (measures.flatness > limits.flatness)) | aperiodic
    sound_end = _sound_end(x, sample_rate, limits.silence_dbfs)
    clipped = float(np.mean(np.abs(x) >= FULL_SCALE))
    dc = float(np.mean(x, dtype=np.float64))
    rms = float(_dbfs(math.sqrt(float(np.mean(np.square(x, dtype=np.float64))))))
    sounding_rms = measures.rms_dbfs[~silent]
    problems = []
    if sound_end == 0.0:
        problems.append("silent")
    elif seconds - sound_end >= max(MIN_SILENT_TAIL_SECONDS, 0.1 * seconds):
        problems.append(f"silent after {sound_end:.2f} s")
    elif silent.any():
        problems.append(f"silent in {int(silent.sum())} of {len(silent)} s")
    periodic = measures.periodicity[~silent]
    median_periodicity = float(np.median(periodic)) if periodic.size else 0.0
    if noisy.any():
        problem = f"noise-like in {int(noisy.sum())} of {len(noisy)} s" if len(noisy) > 1 else "noise-like"
        if aperiodic.any():  # say which measure, and by how much: the flatness limit alone was the rule until 2026-11
            problem += f" (periodicity {median_periodicity:.2f}, the data's 5th percentile {limits.periodicity:.2f})"
        problems.append(problem)
    changes = measures.change[~silent]
    median_change = float(np.median(changes)) if changes.size else 0.0
    if limits.change is not None and changes.size >= MONOTONY_MIN_WINDOWS and median_change < limits.change:
        problems.append(f"monotonous (spectral change {median_change:.1f} dB, the data's limit {limits.change:.1f} dB)")
    if clipped > MAX_CLIPPED_FRACTION:
        problems.append(f"clipped ({100 * clipped:.1f}% of samples)")
    if abs(dc) > limits.dc:
        problems.append(f"DC offset {dc:+.3f}")
    if limits.quiet_dbfs is not None and sounding_rms.size and float(np.median(sounding_rms)) < limits.quiet_dbfs:
        problems.append(f"quiet ({float(np.median(sounding_rms)) - limits.quiet_dbfs - QUIET_MARGIN_DB:.0f} dB "
                        f"against the data)")  # fmt: skip
    verdict = "; ".join(problems) if problems else "ok"
    if problems and not limits.from_data:
        verdict += " (fixed thresholds: the dataset has no profile)"
    flat = measures.flatness[~silent]
    return ClipCheck(verdict, tuple(problems), seconds, rms, sound_end, int(silent.sum()), int(noisy.sum()),
                     len(silent), clipped, dc, float(np.median(flat)) if flat.size else 0.0, limits,
                     int(aperiodic.sum()), median_periodicity, median_change)  # fmt: skip


def summary_metrics(checks: list[ClipCheck], prefix: str = "") -> dict[str, float]:
    """Counts for a KFP Metrics artifact: clips, how many pass, how many are silent/noise-like anywhere."""
    return {
        f"{prefix}clips": float(len(checks)),
        f"{prefix}clips_ok": float(sum(check.ok for check in checks)),
        f"{prefix}clips_silent": float(sum(any(p.startswith("silent") for p in c.problems) for c in checks)),
        f"{prefix}clips_noise_like": float(sum(any(p.startswith("noise") for p in c.problems) for c in checks)),
        f"{prefix}clips_aperiodic": float(sum(c.aperiodic_windows > 0 for c in checks)),
        f"{prefix}clips_monotonous": float(sum(c.monotonous for c in checks)),
    }
