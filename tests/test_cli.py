"""The command line as a user meets it: every option explained with its default, subcommands in pipeline order, and
every bad input a one-line error with exit status 2 (usage) or 1 (runtime), never a traceback."""

import argparse
import os
import subprocess
import sys

import pytest
from audio_fixtures import encode, sine

from waveforms import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def waveforms(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "waveforms.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)  # fmt: skip


def test_every_option_of_every_subcommand_has_help_and_shows_its_default():
    parser = cli.build_parser()
    parsers = list(cli.all_parsers(parser))
    assert len(parsers) >= 10  # waveforms, 7 commands, tune's two actions
    for each in parsers:
        text = each.format_help()
        for action in each._actions:
            if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help and action.help.strip(), f"{each.prog} {name}: no help text"
            shows_default = action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS)
            if shows_default and action.dest != "help":
                assert "default" in each.formatter_class(each.prog)._get_help_string(action), f"{each.prog} {name}"
        assert "(default: (default" not in text
    ingest_help = waveforms("ingest", "--help").stdout
    assert "seconds to wait for a connection (default: 10.0)" in " ".join(ingest_help.split())


def test_subcommands_are_listed_in_pipeline_order_and_help_does_not_import_tensorflow():
    probe = ("import sys, contextlib, io\nfrom waveforms import cli\nout = io.StringIO()\n"
             "with contextlib.redirect_stdout(out):\n    try: cli.main(['--help'])\n    except SystemExit: pass\n"
             "print(out.getvalue()); print('TF' if 'tensorflow' in sys.modules else 'no TF')")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": ROOT})  # fmt: skip
    assert result.stdout.strip().endswith("no TF"), result.stdout[-300:]
    listed = [word for line in result.stdout.splitlines() for word in line.split()[:1] if word in cli.COMMANDS]
    assert listed[:8] == ["synth", "ingest", "convert", "verify", "tune", "train", "generate", "soundspace"]


def test_no_subcommand_help_imports_tensorflow():
    """The command modules parse and call the library; TensorFlow and Keras are imported only when a command runs."""
    probe = ("import sys, contextlib, io\nfrom waveforms import cli\n"
             "for argv in [[name, '--help'] for name in cli.COMMANDS] + [['tune', 'local', '--help']]:\n"
             "    with contextlib.redirect_stdout(io.StringIO()):\n"
             "        try: cli.main(argv)\n        except SystemExit as done: assert done.code == 0, argv\n"
             "print(sorted(name for name in ('tensorflow', 'keras') if name in sys.modules))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": ROOT})  # fmt: skip
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() == "[]", result.stdout
    top = ("import sys, contextlib, io\nfrom waveforms import cli\nwith contextlib.redirect_stdout(io.StringIO()):\n"
           "    try: cli.main(['--help'])\n    except SystemExit: pass\n"
           "print(sorted(name for name in sys.modules if name.startswith('waveforms.cli.') or name == 'numpy'))")  # fmt: skip
    listing = subprocess.run([sys.executable, "-c", top], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": ROOT})  # fmt: skip
    assert listing.stdout.strip() == "[]", listing.stdout  # the command list alone loads no command module


def _one_line_error(result: subprocess.CompletedProcess, status: int, *phrases: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip() and "usage:" not in line and
             not line.startswith(" ")]  # fmt: skip
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    root = tmp_path_factory.mktemp("songs")
    (root / "Rock 'n' Roll").mkdir()
    encode(root / "Rock 'n' Roll" / "a song.mp3", sine(440, 16000, 1.0), 16000)
    return root


@pytest.mark.parametrize(
    "args, status, phrases",
    [
        (["nosuch"], 2, ["invalid choice: 'nosuch'"]),
        (["tune", "local", "{tmp}/missing", "{tmp}/trials"], 1, ["manifest not found"]),
        (["tune", "local", "{tmp}/missing", "{tmp}/trials", "--trials", "0"], 1, ["--trials must be at least 1"]),
        (["train", "{tmp}/missing", "{tmp}/model", "--steps", "2"], 1, ["manifest not found"]),
        (["train", "{tmp}", "{tmp}/model", "--steps", "many"], 2, ["--steps: invalid int value"]),
        (["train", "{tmp}", "{tmp}/model", "--input-noise", "-1"], 1, ["input_noise", "[0, 16]"]),
        (["train", "{tmp}", "{tmp}/model", "--model", "autoencoder", "--input-noise", "1"], 1,
         ["--input-noise applies to WaveNet training"]),  # fmt: skip
        (["ingest", "--source", "dir", "--input", "{tmp}/missing", "--out", "{tmp}/songs"], 2, ["not a folder"]),
        (["ingest", "--source", "urls", "--out", "{tmp}/songs"], 2, ["needs --input"]),
        (["convert", "{tmp}/missing", "{tmp}/data"], 2, ["no audio files"]),
        (["generate", "{tmp}/missing", "{tmp}/out.wav", "--seconds", "1"], 1, ["{tmp}/missing"]),
        (["soundspace", "{tmp}/model", "{tmp}/space", "--corners", "{song}", "--resolution", "3"], 2,
         ["got 1 corners"]),
        (["soundspace", "{tmp}/model", "{tmp}/space", "--corners", "{song}", "{song}", "--resolution", "1"], 2,
         ["--resolution: got 1"]),
        (["soundspace", "{tmp}/missing", "{tmp}/space", "--corners", "{song}", "{song}", "--resolution", "3"], 2,
         ["no config.json"]),
        (["synth", "{tmp}/synth", "--count", "0"], 2, ["--count must be >= 1"]),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_the_right_status(tmp_path, songs, args, status, phrases):
    song = str(songs / "Rock 'n' Roll" / "a song.mp3")
    fill = lambda text: text.replace("{tmp}", str(tmp_path)).replace("{song}", song)  # noqa: E731
    result = waveforms(*map(fill, args))
    _one_line_error(result, status, *map(fill, phrases))
    assert not (tmp_path / "songs").exists() and not (tmp_path / "trials").exists()  # nothing left behind


def test_unexpected_failures_are_one_line_unless_verbose(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    result = waveforms("synth", str(tmp_path / "a-file" / "notes"), "--count", "2")  # caught by no command itself
    _one_line_error(result, 1, "NotADirectoryError", "a-file")
    verbose = waveforms("--verbose", "synth", str(tmp_path / "a-file" / "notes"), "--count", "2")
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr
