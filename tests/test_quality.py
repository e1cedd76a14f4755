"""Model quality: `small` trained briefly on the embedded synth dataset learns real structure, and its audio is neither
silence nor white noise.

Held-out NLL must be at least 1.5 bits/sample below the entropy of the held-out data's mu-law marginal distribution
(what a model that ignores context at best achieves).

Generated audio is compared with the data on the same footing: each held-out note's first 0.25 s seeds the generator
(from silence the trained model rightly continues silence: notes here never rise out of it) and only the generated
second is measured; the data's figure is the real continuation of every note (seconds 0.25-1.25, all 40 notes) after
the same mu-law round trip the model's output goes through. Both lose their DC before any measure: at temperatures of
0.05-0.2 a briefly trained model settles on a constant code, which reads as "tonal" (all energy in the DC bin) and
"loud" but is not sound. spectral_flatness leaves out silent frames (60 dB below the loudest) the same way for both.
The statistic is the median generated clip against the data's 95th percentile: a typical generated clip should be no
noisier than the noisiest 5% of real notes (the reeds' breath noise sets that percentile, about 0.002; the other
families measure about 0.0002). Training CPU time is printed beside the issue's budget of 10 CPU-minutes.

What it took, measured on 2 shared cores (600 steps, lr 1e-2, temperature 0.6; median flatness as a multiple of the
percentile, two generation seeds per trained model):
  Keras' default input embedding, loss on full-context positions only (the first version of this test; training seeds
  1-3 and an unseeded run): held-out 4.10-4.25 bits/sample, flatness 0.41-5.6x; the bar held for some seeds only.
  1,000 steps of the same (445 CPU-s; seeds 0-2): 3.92-3.93 bits, 0.47-3.95x. Longer training alone does not fix it.
  + loss on the context positions too (train.TrainConfig.loss_on_context, same CPU): 3.84-3.92 bits, 0.73-1.71x.
  + the amplitude-smooth input embedding (model.AmplitudeEmbeddingInitializer) alone: 3.72-3.76 bits, 0.42-0.54x.
  both (the defaults now), seeds 0-3: 3.46-3.63 bits, 0.18-0.61x (median of the 8 medians 0.31x), 263-274 CPU-s.
(The context-position and embedding-only rows are seeds 1-2; flatness for the embedding alone is seed 1's.) This test
itself (seed 0, the repository's code): 3.59 bits, 0.59x, 289 CPU-s of training.
Generated flatness is bimodal: most clips are as tonal as the data (0.0001-0.003) while a few drift into noise (drum,
string: 0.02-0.8); the median measures the typical clip.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import resource

import numpy as np
import pytest

from waveforms import audio, convert, dataset, spectral, synth
from waveforms.generate import generate
from waveforms.model import NAMED_CONFIGS
from waveforms.train import TrainConfig, train

SAMPLE_RATE = 16000
STEPS = 600
LEARNING_RATE = 1e-2
TARGET_LENGTH = 2048
EVAL_WINDOWS = 16
REQUIRED_GAIN_BITS = 1.5
TRAINING_CPU_BUDGET_SECONDS = 600  # the 10 CPU-minutes, printed beside the measured figure
SILENCE_RMS = 0.01  # -40 dBFS
TEMPERATURE = 0.6
SEED_SECONDS = 0.25  # of each held-out note, given to the generator
MEASURED_SECONDS = 1.0  # generated, and of the data's real continuation
CLIPS_PER_NOTE = 2  # a batch per held-out note, different random draws


def marginal_entropy_bits(codes: np.ndarray) -> float:
    counts = np.bincount(codes.ravel(), minlength=256)
    p = counts[counts > 0] / codes.size
    return float(-(p * np.log2(p)).sum())


def rms_and_flatness(clip: np.ndarray) -> tuple[float, float]:
    """AC RMS and spectral flatness, both after removing DC (a constant is neither sound nor tonal music)."""
    centred = clip - clip.mean()
    return float(np.sqrt(np.mean(centred**2))), spectral.spectral_flatness(centred)


@pytest.mark.slow
def test_small_wavenet_learns_the_synth_dataset_and_generates_tonal_audio(tmp_path, capsys):
    synth.write_dataset(tmp_path / "wav", count=40, seed=0, seconds=2.0)
    data_dir = str(tmp_path / "data")
    convert.convert(str(tmp_path / "wav"), data_dir, convert.ConvertConfig(validation_fraction=0.2), progress=False)
    config = NAMED_CONFIGS["small"]
    train_config = TrainConfig(steps=STEPS, batch_size=4, target_length=TARGET_LENGTH, learning_rate=LEARNING_RATE,
                               warmup_steps=20, checkpoint_every=STEPS, eval_every=STEPS, eval_windows=EVAL_WINDOWS)  # fmt: skip
    model_dir = str(tmp_path / "model")
    before = resource.getrusage(resource.RUSAGE_SELF)
    with contextlib.redirect_stdout(io.StringIO()):
        result = train(data_dir, model_dir, config, train_config, progress=False)
    after = resource.getrusage(resource.RUSAGE_SELF)
    training_cpu_seconds = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)

    # the held-out windows the NLL was measured on, their predicted positions only
    window_length = config.receptive_field + TARGET_LENGTH - 1
    held_out = dataset.evaluation_windows(f"{data_dir}/manifest.json", window_length, EVAL_WINDOWS)
    targets = held_out.windows[:, -TARGET_LENGTH:]  # (windows, T)
    assert targets.shape == (EVAL_WINDOWS, TARGET_LENGTH)
    entropy = marginal_entropy_bits(targets)
    with capsys.disabled():
        print(f"\nheld-out NLL {result['val_bits']:.3f} bits/sample; mu-law marginal entropy {entropy:.3f} bits "
              f"(gain {entropy - result['val_bits']:.3f}, required {REQUIRED_GAIN_BITS}) after {STEPS} steps, "
              f"{training_cpu_seconds:.0f} CPU-s of training (budget {TRAINING_CPU_BUDGET_SECONDS})")  # fmt: skip
    with capsys.disabled():
        print(f"baselines on the same windows: {json.dumps({k: round(v, 3) for k, v in result.items() if k.endswith('baseline_bits')})}; "
              f"{result['bits_below_baseline']:.3f} bits below the best")  # fmt: skip
    assert math.isfinite(result["val_bits"])
    assert result["val_bits"] <= entropy - REQUIRED_GAIN_BITS
    assert result["bits_below_baseline"] > 0  # a model that does not beat a count model has not learned

    seed_length = int(SEED_SECONDS * SAMPLE_RATE)
    measured = slice(seed_length, seed_length + int(MEASURED_SECONDS * SAMPLE_RATE))
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    notes = {
        song["song_id"]: audio.decode(tmp_path / "wav" / song["song_id"], SAMPLE_RATE) for song in manifest["songs"]
    }
    data_flatness = [rms_and_flatness(audio.mu_law_decode(audio.mu_law_encode(note[measured])))[1]
                     for note in notes.values()]  # fmt: skip
    percentile_95 = float(np.percentile(data_flatness, 95))

    rows = []  # (note, rms, flatness) per generated clip
    for song in (song for song in manifest["songs"] if song["split"] == "validation"):
        seed_file = tmp_path / "seed.wav"
        audio.write_wav(seed_file, notes[song["song_id"]][:seed_length], SAMPLE_RATE)
        clips = generate(model_dir, seconds=MEASURED_SECONDS, batch=CLIPS_PER_NOTE, temperature=TEMPERATURE,
                         seed_audio=str(seed_file), seed=0)  # fmt: skip
        assert clips.shape == (CLIPS_PER_NOTE, int(MEASURED_SECONDS * SAMPLE_RATE))  # the generated part only
        rows += [(song["song_id"], *rms_and_flatness(clip)) for clip in clips]
    median_rms = float(np.median([rms for _, rms, _ in rows]))
    median_flatness = float(np.median([flatness for _, _, flatness in rows]))
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, int(MEASURED_SECONDS * SAMPLE_RATE)).astype(np.float32)
    with capsys.disabled():
        for song_id, rms, flatness in rows:
            print(f"  generated after {song_id}: RMS {rms:.4f}, spectral flatness {flatness:.4f}")
        print(f"{len(rows)} clips at temperature {TEMPERATURE}: median RMS {median_rms:.4f} (silence below "
              f"{SILENCE_RMS}); median spectral flatness {median_flatness:.4f}, the data's 95th percentile "
              f"{percentile_95:.4f} over {len(data_flatness)} notes (white noise {rms_and_flatness(noise)[1]:.3f}): "
              f"{median_flatness / percentile_95:.2f}x the percentile")  # fmt: skip
    assert median_rms > SILENCE_RMS
    assert median_flatness < percentile_95
