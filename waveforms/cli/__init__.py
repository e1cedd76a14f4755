"""The `waveforms` command line: one subcommand per job, one small module per subcommand that parses and calls the library.

Every module listed in COMMANDS defines `configure_parser(parser)` and `run(args) -> int`. They import only light
library modules at module level (TensorFlow and Keras inside `run`), so building the parser, `waveforms --help` and
every `waveforms COMMAND --help` start without TensorFlow (tests/test_cli.py checks it).

Exit status: 0 success, 2 bad usage (argparse), 1 a runtime error, printed as one line `error: ...` (the traceback only
with --verbose).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Iterable

# name -> (module with configure_parser/run, one-line help), in pipeline order; `tune` still points at the library
# module that holds its command line
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": (
        "waveforms.cli.synth",
        "write the embedded dataset of synthetic instrument notes (offline, deterministic)",
    ),
    "ingest": ("waveforms.cli.ingest", "bring audio in: FMA site or dataset archives, URL lists, folders, synth"),
    "convert": ("waveforms.cli.convert", "convert audio files to mu-law TFRecord shards and a manifest.json"),
    "verify": ("waveforms.cli.verify", "check every shard of a dataset against its manifest (sizes, counts, sha256)"),
    "tune": ("waveforms.cli.tune", "hyperparameter search: write the Katib Experiment, or search locally"),
    "train": (
        "waveforms.cli.train",
        "train a WaveNet or the autoencoder on a converted dataset (resumable, distributable)",
    ),
    "generate": (
        "waveforms.cli.generate",
        "generate audio with a trained WaveNet (fast cached sampling) to WAV or mp3",
    ),
    "soundspace": (
        "waveforms.cli.soundspace",
        "encode 2 or 4 corner sounds, interpolate on a grid, decode every point",
    ),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, unless the text already gives it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, argparse.SUPPRESS)
            or default == []
            or not action.option_strings
        ):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, list | tuple) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


def all_parsers(parser: argparse.ArgumentParser):
    """The parser and every subcommand's parser below it, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from all_parsers(child)


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `commands`, only those subcommands get their options (every one is still listed),
    so a run imports the modules of its own command only."""
    configured = set(COMMANDS if commands is None else commands)
    parser = argparse.ArgumentParser(
        prog="waveforms",
        description=(
            "Turn a music collection into new music: scrape songs, convert them to sharded mu-law TFRecords, "
            "train WaveNet models, generate songs and sound spaces. Run `waveforms COMMAND --help` for details."
        ),
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show TensorFlow's logs and full tracebacks (or WAVEFORMS_LOG_LEVEL)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(_module=module_name)
        if name in configured:
            importlib.import_module(module_name).configure_parser(command_parser)
    for each in all_parsers(parser):
        each.formatter_class = HelpFormatter
    return parser


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds like an error: staging folders removed, leases released


def main(argv: list[str] | None = None) -> int:
    from waveforms import logs

    words = sys.argv[1:] if argv is None else argv
    # the first word naming a command is the command: the top level has no option that takes a value
    chosen = next((word for word in words if word in COMMANDS), None)
    args = build_parser([chosen] if chosen else []).parse_args(argv)
    if logs.configure(args.verbose) == "quiet" and argv is None:
        logs.filter_native_logs()  # a real command line only: a caller of main(argv) keeps its own stderr
    module = importlib.import_module(args._module)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if on_main_thread else None
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - any input a user can type gets one line, never a traceback
        if args.verbose:
            raise
        print(f"error: {type(error).__name__}: {error}".splitlines()[0], file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
