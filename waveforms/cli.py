"""The `waveforms` command line: one subcommand per job, each implemented by one library module.

Every module listed in COMMANDS defines `configure_parser(parser)` and `run(args) -> int`; modules are imported lazily
so `waveforms --help` and light commands do not pay for importing TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("waveforms.synth", "write the embedded dataset of synthetic instrument notes (offline, deterministic)"),
    "soundspace": ("waveforms.soundspace", "encode 2 or 4 corner sounds, interpolate on a grid, decode every point"),
    "ingest": ("waveforms.ingest", "bring audio in: FMA site or dataset archives, URL lists, folders, synth"),
    "convert": ("waveforms.convert", "convert audio files to mu-law TFRecord shards and a manifest.json"),
    "verify": ("waveforms.verify", "check every shard of a dataset against its manifest (sizes, counts, sha256)"),
    "train": ("waveforms.train", "train a WaveNet on a converted dataset (resumable, distributable, Katib metrics)"),
    "generate": ("waveforms.generate", "generate audio with a trained model (fast cached sampling) to WAV or mp3"),
    "tune": ("waveforms.tuning", "hyperparameter search: write the Katib Experiment, or search locally"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="waveforms",
        description=(
            "Turn a music collection into new music: scrape songs, convert them to sharded mu-law TFRecords, "
            "train WaveNet models, generate songs and sound spaces. Run `waveforms COMMAND --help` for details."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(_module=module_name)
        importlib.import_module(module_name).configure_parser(command_parser)
    return parser


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds like an error: staging folders removed, leases released


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(args._module)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if on_main_thread else None
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
