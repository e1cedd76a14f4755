"""Model quality: `small` trained as `make demo` trains it (the session fixture demo_wavenet: the demo's synth phrases
and WaveNet settings, 2,000 steps at 1e-2) learns real structure, and its audio is neither silence nor white noise.
Held-out NLL must be at least 1.5 bits/sample below the entropy of the held-out data's mu-law marginal distribution
(what a model that ignores context at best achieves), and below every count-model baseline.
Generated audio is compared with the data on the same footing: each held-out clip's first 0.25 s seeds the generator
and only the generated second is measured; the data's figure is the real continuation of every clip (seconds
0.25-1.25, all of them) after the same mu-law round trip the model's output goes through. Both lose their DC before any
measure: a briefly trained model at a low temperature can settle on a constant code, which reads as "tonal" (all
energy in the DC bin) and "loud" but is not sound. The statistic is the median generated clip against the data's 95th
percentile: a typical generated clip should be no noisier than the noisiest 5% of real clips. Flatness does not tell
a held pitch from low-passed noise; by periodicity these clips are not yet tonal (tests/test_continuation.py,
docs/quality.md "Periodicity").
The recipe's history on the former isolated-note dataset (the loss on context positions, the amplitude-smooth input
embedding, what each gained) is in docs/quality.md, "The synth recipe".
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from waveforms import audio, dataset, spectral
from waveforms.generate import generate
from waveforms.model import NAMED_CONFIGS

SAMPLE_RATE = 16000
REQUIRED_GAIN_BITS = 1.5
SILENCE_RMS = 0.01  # -40 dBFS
TEMPERATURE = 0.6
SEED_SECONDS = 0.25  # of each held-out clip, given to the generator
MEASURED_SECONDS = 1.0  # generated, and of the data's real continuation
CLIPS_PER_SEED = 1  # per held-out clip (8 of the demo's 80): the median is over 8 clips


def marginal_entropy_bits(codes: np.ndarray) -> float:
    counts = np.bincount(codes.ravel(), minlength=256)
    p = counts[counts > 0] / codes.size
    return float(-(p * np.log2(p)).sum())


def rms_and_flatness(clip: np.ndarray) -> tuple[float, float]:
    """AC RMS and spectral flatness, both after removing DC (a constant is neither sound nor tonal music)."""
    centred = clip - clip.mean()
    return float(np.sqrt(np.mean(centred**2))), spectral.spectral_flatness(centred)


@pytest.mark.slow
def test_the_demo_wavenet_learns_the_synth_phrases_and_generates_neither_silence_nor_hiss(
    demo_wavenet, tmp_path, capsys
):
    result, data_dir, model_dir = demo_wavenet.train_result, demo_wavenet.data_dir, demo_wavenet.model_dir
    config = NAMED_CONFIGS["small"]
    export = json.loads(open(f"{model_dir}/config.json").read())
    target_length, eval_windows = export["train"]["target_length"], export["train"]["eval_windows"]
    # the held-out windows the NLL was measured on, their predicted positions only
    window_length = config.receptive_field + target_length - 1
    held_out = dataset.evaluation_windows(f"{data_dir}/manifest.json", window_length, eval_windows)
    targets = held_out.windows[:, -target_length:]  # (windows, T)
    assert targets.shape == (eval_windows, target_length)
    entropy = marginal_entropy_bits(targets)
    with capsys.disabled():
        print(f"\nheld-out NLL {result['val_bits']:.3f} bits/sample; mu-law marginal entropy {entropy:.3f} bits "
              f"(gain {entropy - result['val_bits']:.3f}, required {REQUIRED_GAIN_BITS}) after "
              f"{export['train']['steps']} steps, {demo_wavenet.cpu_seconds:.0f} CPU-s of training")  # fmt: skip
        print(f"baselines on the same windows: {json.dumps({k: round(v, 3) for k, v in result.items() if k.endswith('baseline_bits')})}; "
              f"{result['bits_below_baseline']:.3f} bits below the best")  # fmt: skip
    assert np.isfinite(result["val_bits"])
    assert result["val_bits"] <= entropy - REQUIRED_GAIN_BITS
    assert result["bits_below_baseline"] > 0  # a model that does not beat a count model has not learned

    seed_length = int(SEED_SECONDS * SAMPLE_RATE)
    measured = slice(seed_length, seed_length + int(MEASURED_SECONDS * SAMPLE_RATE))
    manifest = json.loads(open(f"{data_dir}/manifest.json").read())
    clips = {song["song_id"]: audio.decode(f"{demo_wavenet.wav_dir}/{song['song_id']}", SAMPLE_RATE)
             for song in manifest["songs"]}  # fmt: skip
    data_flatness = [rms_and_flatness(audio.mu_law_decode(audio.mu_law_encode(clip[measured])))[1]
                     for clip in clips.values()]  # fmt: skip
    percentile_95 = float(np.percentile(data_flatness, 95))
    rows = []  # (clip, rms, flatness) per generated clip
    for song in (song for song in manifest["songs"] if song["split"] == "validation"):
        seed_file = tmp_path / "seed.wav"
        audio.write_wav(seed_file, clips[song["song_id"]][:seed_length], SAMPLE_RATE)
        generated = generate(model_dir, seconds=MEASURED_SECONDS, batch=CLIPS_PER_SEED, temperature=TEMPERATURE,
                             seed_audio=str(seed_file), seed=0)  # fmt: skip
        assert generated.shape == (CLIPS_PER_SEED, int(MEASURED_SECONDS * SAMPLE_RATE))  # the generated part only
        rows += [(song["song_id"], *rms_and_flatness(clip)) for clip in generated]
    median_rms = float(np.median([rms for _, rms, _ in rows]))
    median_flatness = float(np.median([flatness for _, _, flatness in rows]))
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, int(MEASURED_SECONDS * SAMPLE_RATE)).astype(np.float32)
    with capsys.disabled():
        for song_id, rms, flatness in rows:
            print(f"  generated after {song_id}: RMS {rms:.4f}, spectral flatness {flatness:.4f}")
        print(f"{len(rows)} clips at temperature {TEMPERATURE}: median RMS {median_rms:.4f} (silence below "
              f"{SILENCE_RMS}); median spectral flatness {median_flatness:.4f}, the data's 95th percentile "
              f"{percentile_95:.4f} over {len(data_flatness)} clips (white noise {rms_and_flatness(noise)[1]:.3f}): "
              f"{median_flatness / percentile_95:.2f}x the percentile")  # fmt: skip
    assert median_rms > SILENCE_RMS
    assert median_flatness < percentile_95
