"""Small things several test modules need (imported as a top-level module, like audio_fixtures)."""

from __future__ import annotations

import os

from waveforms import convert, synth
from waveforms.autoencoder import AutoencoderConfig
from waveforms.model import WaveNetConfig

# Debian's chromium, headless, with nothing that phones out (the machine has no network but the registries)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

# the smallest useful models: receptive field 16, a few thousand weights, seconds to train
TINY_WAVENET = WaveNetConfig(stacks=1, layers_per_stack=4, kernel_size=2, residual_channels=8, dilation_channels=8,
                             skip_channels=16)  # fmt: skip
TINY_AUTOENCODER = AutoencoderConfig(hop_length=64, embedding_channels=4, encoder_layers=3, encoder_channels=8,
                                     decoder=TINY_WAVENET, pitch_harmonics=0, envelope_bands=0)  # fmt: skip


def synth_dataset(root, *, count: int, seed: int, seconds: float, validation_fraction: float = 0.25) -> str:
    """The embedded dataset written to root/wav and converted to root/data (shards + manifest.json); -> root/data."""
    wav, data = os.path.join(root, "wav"), os.path.join(root, "data")
    synth.write_dataset(wav, count=count, seed=seed, seconds=seconds)
    convert.convert(wav, data, convert.ConvertConfig(validation_fraction=validation_fraction), progress=False)
    return data


def save_autoencoder(autoencoder, directory) -> str:
    """A model folder as `waveforms train --model autoencoder` exports it (model_store: config.json + the weights)."""
    from waveforms import model_store

    config = autoencoder.config
    model_store.save(
        directory, "autoencoder", autoencoder.model, {"model": config.to_dict(), "sample_rate": config.sample_rate}
    )
    return str(directory)


def load_autoencoder(model_uri):
    """The autoencoder of a model folder, its weights loaded, as soundspace gets it."""
    from waveforms import model_store

    return model_store.read(str(model_uri)).require("autoencoder").network()


def load_autoencoder_config(model_uri):
    from waveforms import model_store

    return model_store.read(str(model_uri)).require("autoencoder").config
