"""The embedded dataset: deterministic NSynth-style notes in five timbre families, so everything works offline.

Each family is a different kind of synthesis, so they differ in spectrum and envelope, not just in name:
  string  Karplus-Strong plucked string (a noise burst circulating in a damped delay line)
  bell    two-operator FM with an inharmonic ratio and a decaying modulation index
  organ   additive drawbar harmonics, held with a flat envelope
  reed    odd-harmonic (clarinet-like) tone with breath noise and a delayed vibrato
  drum    percussive hit: a pitch-swept sine body plus a filtered noise burst
Same Note -> the same samples (seeded NumPy generators, no global random state): same seed, byte-identical files.

A clip is one note (notes_per_clip=1, NSynth's shape) or a phrase: notes of one family in a stepwise melody, each
ringing into the next. Isolated notes decay into silence, so a model trained on them rightly continues silence; a
model meant to play on needs data that plays on (docs/quality.md, "The demo's data").
"""

from __future__ import annotations

import json
import math
import os
import sys
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from waveforms import storage
from waveforms.audio import write_wav

FAMILIES: tuple[str, ...] = ("string", "bell", "organ", "reed", "drum")
VELOCITIES = (25, 50, 75, 100, 127)  # the NSynth velocity levels
DEFAULT_COUNT = 200  # clips in the default dataset: 40 per family, about 13 minutes of audio
NOTE_OFF_FRACTION = 0.75  # held notes are released at 3 s of a 4 s clip, as in NSynth
MELODY_STEPS = (-4, -3, -2, -1, 1, 2, 3, 4)  # semitones between neighbouring notes of a phrase
PHRASE_RING = 1.5  # a phrase's note sounds this many note-lengths: it rings into the next (a held pedal)
PHRASE_PEAK = 0.9  # overlapping notes add up; a phrase is scaled down to this peak when they would exceed it


@dataclass(frozen=True)
class Note:
    family: str  # one of FAMILIES
    pitch: int  # MIDI note number (60 = middle C, 69 = A4 = 440 Hz)
    velocity: int  # 1..127: loudness and brightness
    seed: int  # per-note noise seed (plan_notes uses the note's index in the plan, which keeps names unique)

    def __post_init__(self):
        if self.family not in _RENDERERS:
            raise ValueError(f"unknown family {self.family!r}; choose from {', '.join(FAMILIES)}")
        if not 0 <= self.pitch <= 127:
            raise ValueError(f"pitch must be a MIDI note number 0..127, got {self.pitch}")
        if not 1 <= self.velocity <= 127:
            raise ValueError(f"velocity must be 1..127, got {self.velocity}")

    @property
    def name(self) -> str:
        return f"{self.family}-{self.pitch:03d}-{self.velocity:03d}-{self.seed:04d}"

    @property
    def frequency(self) -> float:
        return 440.0 * 2.0 ** ((self.pitch - 69) / 12.0)


def _adsr(n: int, sample_rate: int, attack: float, decay: float, sustain: float, release: float, off: float):
    """Piecewise-linear envelope, (n,): 0 -> 1 over attack, -> sustain over decay, held until off, -> 0 over release."""
    t = np.arange(n, dtype=np.float32) / sample_rate
    attack_end = min(attack, off)
    points = [0.0, attack_end, max(attack_end, min(attack + decay, off)), off, off + release]
    return np.interp(t, points, [0.0, 1.0, sustain, sustain, 0.0]).astype(np.float32)


def _harmonics(f0: float, t: np.ndarray, sample_rate: int, amplitudes: dict[int, float], phase=None) -> np.ndarray:
    """Sum of sine partials n * f0 with the given amplitudes, skipping any at or above Nyquist (no aliasing)."""
    phase = 2.0 * np.pi * f0 * t if phase is None else phase  # (n,) instantaneous phase of the fundamental
    out = np.zeros_like(t)
    for number, amplitude in amplitudes.items():
        if number * f0 < 0.45 * sample_rate:
            out += amplitude * np.sin(number * phase)
    return out


def _string(note: Note, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    f0 = note.frequency
    # Loop: delay N, then the two-point filter (1 - w) * y[n - N] + w * y[n - N - 1], so the period is N + w samples.
    # w sets how fast partials die; shrinking it as f0^3 grows keeps the 4th partial ringing about 0.5 s at any pitch
    # (the classic w = 0.5 leaves high notes a dull sine). The loop runs at an internal rate where N + w is exactly one
    # period and is interpolated back to sample_rate: in tune at every pitch without a per-sample fractional delay.
    spread = min(0.25, 4.0 * sample_rate**2 / (64.0 * math.pi**2 * f0**3))  # w * (1 - w)
    weight = (1.0 - math.sqrt(1.0 - 4.0 * spread)) / 2.0
    period = max(2, math.ceil(sample_rate / f0 - weight))
    internal_rate = (period + weight) * f0
    length = math.ceil(n * internal_rate / sample_rate) + 2
    half_life = 0.25 + 1.5 * (80.0 / f0) ** 0.5  # seconds: low strings ring longer
    loss = 0.5 ** (period / (internal_rate * half_life))  # per trip round the loop
    burst = rng.uniform(-1.0, 1.0, period).astype(np.float32)
    burst -= burst.mean()  # the loop keeps DC for ever; a zero-mean burst leaves none
    brightness = note.velocity / 127.0  # soft plucks excite fewer high partials
    for _ in range(int(round(3 * (1.0 - brightness)))):
        burst = 0.5 * (burst + np.roll(burst, 1))
    blocks = [burst]
    previous_last = np.float32(0.0)  # y[n - N - 1] for the first sample of each block
    # Vectorised per period: block k depends only on block k-1 and the last sample of block k-2.
    for _ in range(length // period + 1):
        last = blocks[-1]
        delayed = np.concatenate(([previous_last], last[:-1]))
        previous_last = last[-1]
        blocks.append(loss * ((1.0 - weight) * last + weight * delayed))
    internal = np.concatenate(blocks)[:length]
    out = np.interp(np.arange(n) * (internal_rate / sample_rate), np.arange(length), internal)
    return out * _adsr(n, sample_rate, 0.001, 0.0, 1.0, 0.08, NOTE_OFF_FRACTION * n / sample_rate)


def _bell(note: Note, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    f0 = note.frequency
    t = np.arange(n, dtype=np.float64) / sample_rate
    ratio = 1.4 + 0.02 * rng.standard_normal()  # inharmonic modulator: the bell's clangorous partials
    index = (1.0 + 5.0 * note.velocity / 127.0) * np.exp(-t / 0.6)
    index *= max(
        0.0, min(1.0, (0.45 * sample_rate - f0) / (f0 * ratio * (index[0] + 2.0)))
    )  # keep sidebands below Nyquist
    decay = np.exp(-t / (0.8 + 1.2 * (200.0 / f0) ** 0.3))
    body = np.sin(2 * np.pi * f0 * t + index * np.sin(2 * np.pi * ratio * f0 * t))
    hum = 0.3 * np.sin(2 * np.pi * 0.5 * f0 * t) * np.exp(-t / 2.0)  # the low "hum" tone of a real bell
    return (body * decay + hum) * _adsr(n, sample_rate, 0.002, 0.0, 1.0, 0.3, NOTE_OFF_FRACTION * n / sample_rate)


def _organ(note: Note, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n, dtype=np.float64) / sample_rate
    drawbars = {1: 1.0, 2: 0.8, 3: 0.6, 4: 0.5, 6: 0.35, 8: 0.3, 10: 0.15, 12: 0.12}
    phase = 2 * np.pi * note.frequency * t + rng.uniform(0, 2 * np.pi)
    tone = _harmonics(note.frequency, t, sample_rate, drawbars, phase)
    click = np.zeros(n)
    click[: int(0.004 * sample_rate)] = 0.3 * rng.standard_normal(int(0.004 * sample_rate))  # key click
    envelope = _adsr(n, sample_rate, 0.01, 0.05, 0.9, 0.05, NOTE_OFF_FRACTION * n / sample_rate)
    return (tone * (0.5 + 0.5 * note.velocity / 127.0) + click) * envelope


def _reed(note: Note, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    f0 = note.frequency
    t = np.arange(n, dtype=np.float64) / sample_rate
    vibrato_depth = 0.004 * np.clip((t - 0.4) / 0.6, 0.0, 1.0)  # vibrato fades in after the attack
    instantaneous = f0 * (1.0 + vibrato_depth * np.sin(2 * np.pi * 5.2 * t))
    phase = 2 * np.pi * np.cumsum(instantaneous) / sample_rate
    brightness = 0.4 + 0.6 * note.velocity / 127.0
    odd = {k: (brightness ** ((k - 1) / 2)) / k for k in range(1, 16, 2)}  # odd partials: the clarinet's hollow tone
    tone = _harmonics(f0, t, sample_rate, odd, phase)
    breath = np.diff(rng.standard_normal(n + 1)) * 0.03  # high-passed noise
    envelope = _adsr(n, sample_rate, 0.06, 0.1, 0.8, 0.12, NOTE_OFF_FRACTION * n / sample_rate)
    return (tone + breath) * envelope


def _drum(note: Note, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    f0 = note.frequency / 2.0  # drums sit an octave below the keyboard note
    t = np.arange(n, dtype=np.float64) / sample_rate
    sweep = f0 * (1.0 + 1.5 * np.exp(-t / 0.03))  # the head's pitch drops as the tension relaxes
    body = np.sin(2 * np.pi * np.cumsum(sweep) / sample_rate) * np.exp(-t / (0.15 + 20.0 / f0))
    noise = rng.standard_normal(n)
    snare = np.diff(noise, prepend=0.0) * np.exp(-t / 0.06) * (0.2 + 0.5 * note.velocity / 127.0)
    return body + snare


_RENDERERS = {"string": _string, "bell": _bell, "organ": _organ, "reed": _reed, "drum": _drum}


def render_note(note: Note, sample_rate: int = 16000, seconds: float = 4.0) -> np.ndarray:
    """Synthesize one note, (sample_rate * seconds,) float32; its peak grows with velocity and never exceeds 1."""
    n = int(round(sample_rate * seconds))
    if n <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    rng = np.random.default_rng([note.seed, note.pitch, note.velocity, zlib.crc32(note.family.encode())])
    audio = np.asarray(_RENDERERS[note.family](note, n, sample_rate, rng), dtype=np.float64)
    audio[-min(n, int(0.005 * sample_rate)) :] *= np.linspace(1.0, 0.0, min(n, int(0.005 * sample_rate)))  # no click
    peak = np.max(np.abs(audio))
    target = 0.3 + 0.6 * note.velocity / 127.0  # louder notes are louder, as in NSynth
    return (audio * (target / peak) if peak > 0 else audio).astype(np.float32)


def plan_notes(count: int, seed: int = 0, families: Sequence[str] = FAMILIES, pitches=range(36, 85)) -> list[Note]:
    """count notes, deterministic in seed, families in turn (balanced to within one), pitches and velocities drawn."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    families = tuple(families)
    unknown = [family for family in families if family not in _RENDERERS]
    if not families or unknown:
        raise ValueError(f"unknown families {unknown or '(none given)'}; choose from {', '.join(FAMILIES)}")
    pitches = list(pitches)
    if not pitches:
        raise ValueError("pitches must not be empty")
    rng = np.random.default_rng(seed)
    return [
        Note(families[i % len(families)], int(rng.choice(pitches)), int(rng.choice(VELOCITIES)), seed=i)
        for i in range(count)
    ]


def plan_phrases(
    count: int, notes_per_phrase: int, seed: int = 0, families: Sequence[str] = FAMILIES, pitches=range(36, 85)
) -> list[list[Note]]:
    """count phrases of notes_per_phrase notes, deterministic in seed, families in turn: each starts on a drawn pitch
    and moves by small steps (MELODY_STEPS; turning back at the edges of pitches), velocities drawn per note."""
    if notes_per_phrase < 1:
        raise ValueError(f"notes per phrase must be >= 1, got {notes_per_phrase}")
    first_notes = plan_notes(count, seed, families, pitches)  # validates; sets each phrase's family and first pitch
    low, high = min(pitches), max(pitches)
    rng = np.random.default_rng([seed, notes_per_phrase])
    phrases = []
    for index, first in enumerate(first_notes):
        pitch, phrase = first.pitch, []
        for position in range(notes_per_phrase):
            if position:
                step = int(rng.choice(MELODY_STEPS))
                pitch += step if low <= pitch + step <= high else -step  # at the edge of the range: turn back
            velocity = first.velocity if not position else int(rng.choice(VELOCITIES))
            phrase.append(Note(first.family, pitch, velocity, seed=index * notes_per_phrase + position))
        phrases.append(phrase)
    return phrases


def render_phrase(notes: Sequence[Note], sample_rate: int = 16000, seconds: float = 4.0) -> np.ndarray:
    """The notes one after another, evenly spaced over seconds, each ringing PHRASE_RING note-lengths into the next;
    (sample_rate * seconds,) float32 with peak at most PHRASE_PEAK (or the loudest note's own, if lower)."""
    n = int(round(sample_rate * seconds))
    if n <= 0 or not notes:
        raise ValueError(f"a phrase needs notes and seconds > 0, got {len(notes)} notes and {seconds} s")
    spacing = n / len(notes)
    out = np.zeros(n, dtype=np.float64)
    for position, note in enumerate(notes):
        onset = int(round(position * spacing))
        length = min(n - onset, int(round(PHRASE_RING * spacing)))
        out[onset : onset + length] += render_note(note, sample_rate, length / sample_rate)
    peak = float(np.max(np.abs(out)))
    return (out * (PHRASE_PEAK / peak) if peak > PHRASE_PEAK else out).astype(np.float32)


def write_dataset(
    out_dir: str | os.PathLike,
    count: int = DEFAULT_COUNT,
    seed: int = 0,
    sample_rate: int = 16000,
    seconds: float = 4.0,
    families: Sequence[str] | None = None,
    notes_per_clip: int = 1,
) -> list[dict]:
    """Write <out_dir>/<family>/<name>.wav (16-bit) and <out_dir>/metadata.jsonl; returns the metadata rows.
    notes_per_clip > 1 writes phrases (render_phrase) named <family>-phrase-<index>."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    if notes_per_clip == 1:
        clips = [(note.name, [note]) for note in plan_notes(count, seed, families or FAMILIES)]
    else:
        phrases = plan_phrases(count, notes_per_clip, seed, families or FAMILIES)
        clips = [(f"{notes[0].family}-phrase-{index:04d}", notes) for index, notes in enumerate(phrases)]
    rows = []
    for name, notes in tqdm(clips, desc="synth", unit="clip", file=sys.stderr, delay=2.0):
        relative = Path(notes[0].family) / f"{name}.wav"
        if len(notes) == 1:
            samples, row = render_note(notes[0], sample_rate, seconds), asdict(notes[0])
        else:
            samples = render_phrase(notes, sample_rate, seconds)
            row = {"family": notes[0].family, "pitches": [note.pitch for note in notes],
                   "velocities": [note.velocity for note in notes], "seed": notes[0].seed}  # fmt: skip
        write_wav(out_dir / relative, samples, sample_rate)
        rows.append({"name": name, "file": relative.as_posix(), **row, "sample_rate": sample_rate, "seconds": seconds})
    lines = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    storage.write_bytes(str(out_dir / "metadata.jsonl"), lines.encode("utf-8"))
    return rows
