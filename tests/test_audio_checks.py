"""audio_checks: every generated clip is judged against the training data's own statistics."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from waveforms import audio, audio_checks, synth

RATE = 16000


def sine(seconds: float, frequency: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def melody(seconds: float, amplitude: float = 0.5, note_seconds: float = 0.2) -> np.ndarray:
    """A sine that changes pitch every note_seconds (phase continuous: no clicks), cycling through five notes."""
    notes = np.array([262.0, 330.0, 392.0, 523.0, 440.0])
    n = int(seconds * RATE)
    frequency = notes[(np.arange(n) // int(note_seconds * RATE)) % notes.size]
    return (amplitude * np.sin(np.cumsum(2 * np.pi * frequency / RATE))).astype(np.float32)


def profile_of(clips: list[np.ndarray]) -> audio_checks.DataProfile:
    """A data profile of these clips after the mu-law round trip, as convert computes one."""
    samples = defaultdict(list)
    for clip in clips:
        for name, values in audio_checks.profile_sample_of(
            audio.mu_law_encode(audio.peak_normalize(clip)), RATE
        ).items():
            samples[name] += values
    return audio_checks.DataProfile.from_samples(**samples)


@pytest.fixture(scope="module")
def notes_profile() -> audio_checks.DataProfile:
    """The profile of a few real (synthesised) notes after the mu-law round trip, as convert computes it."""
    return profile_of([synth.render_note(note, RATE, 3.0) for note in synth.plan_notes(10, seed=3)])


@pytest.fixture(scope="module")
def phrases_profile() -> audio_checks.DataProfile:
    """The demo's kind of data: 4-s phrases of 8 notes of one synth family each."""
    return profile_of([synth.render_phrase(phrase, RATE, 4.0) for phrase in synth.plan_phrases(24, 8, seed=3)])


def test_a_melody_and_a_real_note_pass(notes_profile):
    assert audio_checks.check_clip(melody(3.0), RATE, notes_profile).verdict == "ok"
    assert audio_checks.check_clip(sine(2.0), RATE, notes_profile).verdict == "ok"  # under 3 s: judged as a sound
    note = synth.render_note(synth.Note("organ", 60, 100, 0), RATE, 4.0)  # held for 3 s, then released
    check = audio_checks.check_clip(note[: 3 * RATE], RATE, notes_profile)
    assert check.ok, check.verdict
    assert check.windows == 3 and check.silent_windows == 0 and check.noisy_windows == 0
    # the whole note ends in silence after its release, and the check says when
    assert audio_checks.check_clip(note, RATE, notes_profile).verdict.startswith("silent after 3.")


def test_digital_silence_is_silent(notes_profile):
    check = audio_checks.check_clip(np.zeros(2 * RATE, np.float32), RATE, notes_profile)
    assert check.verdict == "silent" and check.sound_ends_at == 0.0 and check.silent_windows == 2


def test_a_burst_then_silence_is_silent_after_the_burst_even_though_its_rms_is_not_low(notes_profile):
    clip = np.zeros(RATE, np.float32)
    clip[:800] = sine(0.05, amplitude=0.9)  # 50 ms of sound, then nothing: what the demo's generator wrote
    check = audio_checks.check_clip(clip, RATE, notes_profile)
    assert check.problems[0] == "silent after 0.05 s"
    assert check.rms_dbfs > -30  # the whole-clip RMS alone would have passed it


def test_white_noise_is_noise_like_against_tonal_data(notes_profile):
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 3 * RATE).astype(np.float32)
    check = audio_checks.check_clip(noise, RATE, notes_profile)
    assert check.problems[0].startswith("noise-like in 3 of 3 s (periodicity 0.3")  # white noise: about 0.38
    assert check.noisy_windows == 3 and check.aperiodic_windows == 3


def test_low_passed_noise_is_noise_like_by_periodicity_though_its_flatness_is_tonal(notes_profile):
    """A rumble (white noise integrated twice) is flatter than a note over a second by spectral flatness, whose
    measure the spectrum's tilt rules. Periodicity tells them apart. Low-passed noise is what the demo's WaveNet and
    the real-music models generated while the flatness limit alone passed their clips (docs/quality.md,
    "Periodicity")."""
    limits = audio_checks.Thresholds.for_profile(notes_profile)
    for seed in range(5):
        rumble = np.random.default_rng(seed).standard_normal(3 * RATE)
        for _ in range(2):
            rumble = audio.remove_dc(np.cumsum(rumble).astype(np.float32), RATE).astype(np.float64)
        rumble = (0.3 * rumble / np.abs(rumble).max()).astype(np.float32)
        measures = audio_checks.measure(rumble, RATE)
        assert np.all(measures.flatness <= limits.flatness), (measures.flatness, limits.flatness)
        assert np.all(measures.periodicity < 0.5), measures.periodicity
        check = audio_checks.check_clip(rumble, RATE, notes_profile)
        assert check.noisy_windows == check.aperiodic_windows == 3, check.verdict
        assert check.verdict.startswith("noise-like in 3 of 3 s (periodicity 0.")


def test_passing_windows_count_the_seconds_that_are_neither_silent_nor_noise_like(notes_profile):
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, RATE).astype(np.float32)
    clip = np.concatenate([melody(2.0), np.zeros(RATE, np.float32), noise, melody(1.0)])  # ok, ok, silent, noisy, ok
    check = audio_checks.check_clip(clip, RATE, notes_profile)
    assert (check.windows, check.silent_windows, check.noisy_windows, check.passing_windows) == (5, 1, 1, 3)
    assert audio_checks.check_clip(melody(3.0), RATE, notes_profile).passing_windows == 3
    quiet = audio_checks.check_clip(melody(3.0, amplitude=0.005), RATE, notes_profile)  # a clip-wide problem
    assert any(problem.startswith("quiet") for problem in quiet.problems) and quiet.passing_windows == 0


def test_a_clipped_sine_is_clipped_and_dc_is_flagged(notes_profile):
    clipped = np.clip(sine(2.0, amplitude=3.0), -1.0, 1.0)
    assert audio_checks.check_clip(clipped, RATE, notes_profile).problems[0].startswith("clipped (")
    offset = sine(2.0, amplitude=0.3) + 0.2
    assert "DC offset +0.200" in audio_checks.check_clip(offset, RATE, notes_profile).verdict


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_thresholds_come_from_the_data_so_noisy_data_makes_noise_acceptable(seed, notes_profile):
    rng = np.random.default_rng(seed)
    noisy_data = defaultdict(list)
    for _ in range(10):  # 80 windows: the percentiles are those of noise, not of a handful of draws
        codes = audio.mu_law_encode(rng.uniform(-0.5, 0.5, 8 * RATE).astype(np.float32))
        for name, values in audio_checks.profile_sample_of(codes, RATE).items():
            noisy_data[name] += values
    profile = audio_checks.DataProfile.from_samples(**noisy_data)
    noise = rng.uniform(-0.5, 0.5, 20 * RATE).astype(np.float32)
    # a window of the data's own kind lies past the 95th (flatness) or under the 5th (periodicity) percentile about
    # one time in ten; against tonal data every window of it is noise-like
    assert audio_checks.check_clip(noise, RATE, profile).noisy_windows <= 8  # 20 other seeds: 0-6
    assert audio_checks.check_clip(noise, RATE, notes_profile).noisy_windows == 20
    # and the profile survives its JSON round trip; a missing one falls back to fixed thresholds, and says so
    assert audio_checks.DataProfile.from_dict(profile.to_dict()) == profile
    assert audio_checks.DataProfile.from_dict(None) is None
    verdict = audio_checks.check_clip(np.zeros(RATE, np.float32), RATE, None).verdict
    assert verdict == "silent (fixed thresholds: the dataset has no profile)"


def test_a_quiet_collection_lowers_the_silence_threshold():
    quiet = audio_checks.DataProfile.from_samples(rms_dbfs=[-55, -52, -50, -48], flatness=[0.01] * 4, dc=[0] * 4)
    assert audio_checks.Thresholds.for_profile(quiet).silence_dbfs == pytest.approx(-64.55, abs=0.01)
    loud = audio_checks.DataProfile.from_samples(rms_dbfs=[-20, -15, -12, -10], flatness=[0.01] * 4, dc=[0] * 4)
    assert audio_checks.Thresholds.for_profile(loud).silence_dbfs == audio_checks.SILENCE_DBFS


def test_bad_clips_are_refused_with_one_line():
    with pytest.raises(ValueError, match="empty clip"):
        audio_checks.check_clip(np.zeros(0, np.float32), RATE)
    with pytest.raises(ValueError, match="NaN"):
        audio_checks.check_clip(np.array([0.0, np.nan], np.float32), RATE)


def test_a_profile_measured_before_periodicity_keeps_its_other_percentiles_and_the_fallback_limit(notes_profile):
    old = {key: value for key, value in notes_profile.to_dict().items() if key != "periodicity"}
    loaded = audio_checks.DataProfile.from_dict(old)
    assert loaded.periodicity is None and loaded.flatness == notes_profile.flatness
    limits = audio_checks.Thresholds.for_profile(loaded)
    assert limits.from_data and limits.periodicity == audio_checks.FALLBACK_PERIODICITY
    assert audio_checks.Thresholds.for_profile(notes_profile).periodicity == notes_profile.periodicity["p5"]
    # a dataset merged from parts converted before and after: periodicity for only some windows is left out
    partial = audio_checks.DataProfile.from_samples([-20.0] * 4, [0.01] * 4, [0.0] * 4, periodicity=[0.9, 0.95])
    assert partial.periodicity is None and "periodicity" not in partial.to_dict()


def test_a_steady_tone_is_monotonous_where_every_note_of_the_data_moves_and_every_window_fails_with_it(notes_profile):
    """Three seconds of a test tone: each second sounds like a note, the clip never changes the way notes do (they
    decay, beat, shimmer: their quietest 5% of windows still change 0.4 dB a quarter-second, the tone 0)."""
    check = audio_checks.check_clip(sine(3.0), RATE, notes_profile)
    assert check.problems == (
        f"monotonous (spectral change 0.0 dB, the data's limit {check.thresholds.change:.1f} dB)",
    )
    assert check.monotonous and check.passing_windows == 0 and check.silent_windows == check.noisy_windows == 0
    assert audio_checks.summary_metrics([check])["clips_monotonous"] == 1.0


@pytest.mark.parametrize("family", ["organ", "reed", "string"])
def test_a_held_note_is_a_drone_against_phrases_and_unseen_phrases_are_not(family, phrases_profile):
    """What the demo's WaveNet played at temperature 0.8 (docs/quality.md, "Drones"): one note held for 10 s, each
    second of it tonal and loud enough, against data that plays 8 notes in 4 s. Phrases it never saw pass, for several
    plans: the limit is the data's own, not one tuned to these clips."""
    limits = audio_checks.Thresholds.for_profile(phrases_profile)
    for pitch in (40, 52, 64):
        drone = synth.render_note(synth.Note(family, pitch, 100, seed=pitch), RATE, 12.0)[: 10 * RATE]
        drone = audio.mu_law_decode(audio.mu_law_encode(audio.peak_normalize(drone)))
        check = audio_checks.check_clip(drone, RATE, phrases_profile)
        assert check.monotonous and check.passing_windows == 0, (pitch, check.verdict)
        assert check.median_change < limits.change
    for seed in range(10, 15):
        phrases = [synth.render_phrase(phrase, RATE, 4.0) for phrase in synth.plan_phrases(3, 8, seed=seed)]
        clip = audio.mu_law_decode(audio.mu_law_encode(audio.peak_normalize(np.concatenate(phrases)[: 10 * RATE])))
        check = audio_checks.check_clip(clip, RATE, phrases_profile)
        assert not check.monotonous and check.median_change > limits.change, (seed, check.verdict)


def test_monotony_is_judged_only_against_a_profile_that_measured_it(notes_profile):
    """A dataset converted before change was measured: held notes, phrases and songs differ too much for a fixed
    limit, so the check says nothing rather than guess. Without any profile likewise."""
    old = {key: value for key, value in notes_profile.to_dict().items() if key != "change"}
    loaded = audio_checks.DataProfile.from_dict(old)
    assert loaded.change is None and loaded.periodicity == notes_profile.periodicity
    assert audio_checks.Thresholds.for_profile(loaded).change is None
    assert audio_checks.check_clip(sine(3.0), RATE, loaded).verdict == "ok"
    assert "monotonous" not in audio_checks.check_clip(sine(3.0), RATE, None).verdict
    partial = audio_checks.DataProfile.from_samples([-20.0] * 4, [0.01] * 4, [0.0] * 4, change=[3.0, 4.0])
    assert partial.change is None and "change" not in partial.to_dict()
    assert audio_checks.DataProfile.from_dict(notes_profile.to_dict()) == notes_profile
