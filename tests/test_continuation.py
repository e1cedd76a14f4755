"""Generation that never collapses: the WaveNet `make demo` trains (the demo's synth phrases, its training settings;
the session fixture demo_wavenet), sampled with the CLI defaults, gives 10-s clips that never fall silent and whose
1-s windows mostly stay under the data's flatness limit (not hiss), from the primer (the CLI default), from digital
silence and from a held-out phrase, for several sampling seeds at once (each batch row is its own random stream).

What the clips do not do yet is hold a pitch: their periodicity (spectral.periodicity, about 0.45: low-passed noise)
lies far under the phrases' 5th percentile (0.8), so the audio checks call every window noise-like; and their
spectrum barely changes (1.7-2.7 dB a quarter-second, under the limit of 4.1 taken from the phrases), so every clip
is also monotonous. The test prints the checks' verdicts and asserts what the clips meet; the bar (every window
passes the checks) is open (docs/quality.md, "Periodicity" and "Drones").

History (docs/quality.md, "Generation" and "The demo's data"): on the demo's former isolated notes the model died into
digital silence within a second until dataset.shorten_silences, then made quiet hiss; no 10-s clip of those notes
themselves passes the checks (they end in silence after 3.3 s). On the demo's 80 phrases, with 2,000 steps at 1e-2,
three training seeds pass 6/9, 7/9 and 3/9 clips at the CLI's temperature 0.9, and 87/90, 88/90 and 83/90 of the
windows (26-30 of 30 per start), by the flatness limit alone: the bar "every window of every clip" was not met for any
seed even then, so the test asserts what all three meet with a margin: never a silent window, 70% of the windows of
every start under the flatness limit.
"""

from __future__ import annotations

import numpy as np
import pytest

from waveforms import audio, audio_checks, dataset, model_store
from waveforms.generate import check_clips, generate

SECONDS = 10.0
ROWS = 3  # sampling seeds per start, generated as one batch
MIN_PASSING_WINDOWS = 0.7  # of the 30 1-s windows per start under the flatness limit; seeds 0-2 had 26-30 (docstring)


def held_out_phrase(data_dir: str, path: str, seconds: float = 1.0) -> str:
    """The first `seconds` of the first held-out clip, written to `path`."""
    manifest_uri = f"{data_dir}/manifest.json"
    segment = next(dataset.iter_segments(dataset.load_manifest(manifest_uri), manifest_uri, "validation"))
    codes = np.frombuffer(segment.audio, dtype=np.uint8)[: int(seconds * 16000)]
    audio.write_wav(path, audio.mu_law_decode(codes), 16000)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("start", ["primer", "silence", "held-out phrase"])
def test_ten_seconds_of_the_demo_model_never_fall_silent_and_mostly_pass(demo_wavenet, start, tmp_path, capsys):
    seed_audio = {"primer": None, "silence": ""}.get(start)  # None: the CLI default, the primer saved with the model
    if start == "held-out phrase":
        seed_audio = held_out_phrase(demo_wavenet.data_dir, str(tmp_path / "phrase.wav"))
    clips = generate(demo_wavenet.model_dir, SECONDS, batch=ROWS, seed_audio=seed_audio, seed=0)  # CLI sampling
    assert clips.shape == (ROWS, int(SECONDS * 16000))
    checks = check_clips(clips, model_store.read_export(demo_wavenet.model_dir))
    passing = sum(check.passing_windows for check in checks)
    under_flatness_limit = 0
    for clip, check in zip(clips, checks, strict=True):
        measures = audio_checks.measure(clip, 16000)
        sounding = measures.rms_dbfs > check.thresholds.silence_dbfs
        under_flatness_limit += int(np.sum(sounding & (measures.flatness <= check.thresholds.flatness)))
    with capsys.disabled():
        print(
            f"\n{start}: " + " | ".join(check.verdict for check in checks) + f" ({passing}/{ROWS * 10} windows "
            f"pass every check, {under_flatness_limit} are under the flatness limit)"
        )
    silent = [check.verdict for check in checks if any(problem.startswith("silent") for problem in check.problems)]
    assert not silent, silent
    assert under_flatness_limit >= MIN_PASSING_WINDOWS * ROWS * 10, [check.verdict for check in checks]
    assert all(check.clipped_fraction == 0 and "DC offset" not in check.verdict for check in checks)
