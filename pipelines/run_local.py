"""`make demo`: run the waveforms pipeline on this machine with kfp.local (SubprocessRunner, no cluster, offline).

Any source the cluster takes works here too, with the same `source_options` keys (waveforms.ingest.IngestOptions):
`--source dir --input ~/Music` (genre = first folder), `--source urls --input list.txt`, `--source fma --genre Rock`,
`--source fma-dataset`, or the default, the embedded synth notes. `--option KEY=VALUE` sets any other key.

Outputs land under local_outputs/: kfp.local writes each task's artifacts to
local_outputs/pipeline_root/<run>/<task>/<output>, with <run> = waveforms-<timestamp>; converted shards, checkpoints
and tuning trials go to local_outputs/data/<run>. The run folder gets an index.html linking every page and sound.

The terminal shows one line per step; kfp.local's own stream (every step's logs) goes to <run>/demo.log, or to the
terminal with --verbose.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import html
import io
import json
import os
import re
import sys
import time
import warnings
from urllib.parse import quote

from pipelines.waveforms_pipeline import build_pipeline, local_options
from waveforms import logs
from waveforms.cli import HelpFormatter

LOCAL_IMAGE = "waveforms:local-venv"  # kfp.local runs components in this venv; the image string is only a label
LOG_NAME = "demo.log"
# pages in pipeline order: task folder -> what the page shows
PAGES = {
    "choose-corners": "",
    "dataset-report": "Dataset: clips, spectrograms, statistics, timings",
    "train": "WaveNet training: loss curves and configuration",
    "generate": "Generated audio (WaveNet)",
    "train-2": "Autoencoder training: loss curves and configuration",
    "soundspace": "Sound space, 2 corners (explorer)",
    "soundspace-2": "Sound space, 4 corners (explorer)",
}
AUDIO_GLOBS = ("choose-corners/corners/*/*.wav", "generate/clips/*.wav", "soundspace/space/*.wav",
               "soundspace-2/space/*.wav")  # fmt: skip
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _StepPrinter(io.TextIOBase):
    """kfp.local's stdout, teed: everything to the log file, one line per started or failed step to the terminal."""

    def __init__(self, log, terminal, total: int):
        self.log, self.terminal, self.total = log, terminal, total
        self.started, self.pending, self.step, self.last_error = time.monotonic(), "", 0, ""
        self.starts: list[tuple[str, float]] = []  # (step, seconds since the run started), in the order they ran

    @property
    def interactive(self) -> bool:
        return self.terminal.isatty()

    def _clear(self) -> str:
        return "\r\033[K" if self.interactive else ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.log.write(text)
        self.pending += _ANSI.sub("", text)
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            started = re.search(r"Executing task '([^']+)'", line)
            failed = re.search(r"Task '([^']+)' finished with status FAILURE", line)
            error = re.match(r"\s*([\w.]+(Error|Exception)): (.*)", line)
            if error:
                self.last_error = f"{error.group(1).rsplit('.', 1)[-1]}: {error.group(3)}"
            progress = re.match(r"\s*step=(\d+) .*?val_bits=([\d.]+)", line)
            if started:
                self.step += 1
                elapsed = time.monotonic() - self.started
                self.starts.append((started.group(1), elapsed))
                print(f"{self._clear()}  [{self.step:>2}/{self.total}] {elapsed:5.0f} s  {started.group(1)}",
                      file=self.terminal)  # fmt: skip
            elif failed:
                print(f"{self._clear()}  step {failed.group(1)} failed: {self.last_error or 'see the log'}",
                      file=self.terminal)  # fmt: skip
            elif progress and self.interactive:  # training progress on one line that keeps being rewritten
                print(f"\r\033[K      training step {progress.group(1)}: validation {progress.group(2)} bits/sample",
                      end="", file=self.terminal, flush=True)  # fmt: skip
        return len(text)

    def flush(self) -> None:
        self.log.flush()


def run_demo(
    output_dir: str = "local_outputs",
    *,
    source: str = "synth",
    source_options: dict | None = None,
    clips: int = 80,
    notes_per_clip: int = 8,
    convert_shards: int = 2,
    seed: int = 0,
    verbose: bool = False,
    **overrides,
) -> str:
    """Run the pipeline locally and return the folder of this run's artifacts (it holds index.html)."""
    from kfp import local

    from waveforms.ingest import check_options

    options_for_source = source_options
    if source_options is None:
        options_for_source = {"count": clips, "seed": seed, "notes_per_clip": notes_per_clip}
    check_options(source, options_for_source)  # a bad source or option fails here, not in the first step
    output_dir = os.path.abspath(output_dir)
    pipeline_root = os.path.join(output_dir, "pipeline_root")
    os.makedirs(pipeline_root, exist_ok=True)
    environment = dict(os.environ)
    logs.configure(verbose)  # the steps inherit this environment (restored when the run ends)
    if not verbose:  # kfp.local warns once per step that our image label is not a Python image: it is this venv
        warnings.filterwarnings("ignore", message="You may be attemping to run a task", category=RuntimeWarning)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root, raise_on_error=True)
    options = local_options(
        LOCAL_IMAGE,
        os.path.join(output_dir, "data"),
        convert_shards=convert_shards,
        source=source,
        source_options=options_for_source,
        **overrides,
    )
    before = set(glob.glob(os.path.join(pipeline_root, "*")))
    started = time.monotonic()
    log_path = os.path.join(output_dir, LOG_NAME)
    total = convert_shards + 10 - (options.tuning == "off")  # see the sketch in waveforms_pipeline.py
    print(f"running the waveforms pipeline locally ({total} steps, source {source}); log: {log_path}")
    with open(log_path, "w", encoding="utf-8") as log:
        printer = _StepPrinter(log, sys.stdout, total)
        with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(printer):
            try:
                build_pipeline(options)()
            except RuntimeError as error:
                raise RuntimeError(f"{_ANSI.sub('', str(error))} (full log: {log_path})") from None
            finally:
                os.environ.clear()
                os.environ.update(environment)
    runs = sorted(set(glob.glob(os.path.join(pipeline_root, "*"))) - before, key=os.path.getmtime)
    if not runs:
        raise RuntimeError(f"kfp.local finished but wrote no run folder under {pipeline_root}")
    run_dir = runs[-1]
    os.replace(log_path, os.path.join(run_dir, LOG_NAME))
    ends = [at for _, at in printer.starts[1:]] + [time.monotonic() - started]
    timings = {name: end - at for (name, at), end in zip(printer.starts, ends, strict=True)}
    index = write_index(run_dir, timings)
    print(f"pipeline finished in {time.monotonic() - started:.0f} s")
    for path in page_paths(run_dir):
        print(f"  {os.path.basename(os.path.dirname(path)):<15} file://{path}")
    print(f"open in a browser: file://{index}")
    return run_dir


def page_paths(run_dir: str) -> list[str]:
    """Every task's HTML page as <task>/page.html (a second name for kfp.local's extension-less `page`, so a browser
    renders it), in pipeline order."""
    order = list(PAGES)
    tasks = sorted(glob.glob(os.path.join(run_dir, "*", "page")),
                   key=lambda p: (order.index(_task(p)) if _task(p) in order else len(order), _task(p)))  # fmt: skip
    named = []
    for page in tasks:
        target = page + ".html"
        if not os.path.exists(target):
            try:
                os.link(page, target)
            except OSError:  # a filesystem without hard links: a copy
                import shutil

                shutil.copyfile(page, target)
        named.append(target)
    return named


def _task(path: str) -> str:
    return os.path.basename(os.path.dirname(path))


def _title_of(page: str) -> str:
    with open(page, encoding="utf-8", errors="replace") as handle:
        head = handle.read(4096)
    found = re.search(r"<title>(.*?)</title>", head, re.S)
    return html.unescape(found.group(1)) if found else _task(page)


def write_index(run_dir: str, timings: dict[str, float] | None = None) -> str:
    """run_dir/index.html: every page (in pipeline order) and every sound of the run, as relative links, and how long
    each step took (timings: step -> seconds, in the order the steps ran)."""
    from waveforms import report

    run = os.path.basename(run_dir)
    page = report.Report(f"waveforms run {run}")
    rows = []
    for path in page_paths(run_dir):
        relative = os.path.relpath(path, run_dir)
        what = PAGES.get(_task(path)) or _task(path)
        rows.append(f'<tr><td><a href="{html.escape(quote(relative))}">{html.escape(what)}</a></td>'
                    f'<td class="note">{html.escape(_title_of(path))}</td></tr>')  # fmt: skip
    page.add_html("Pages", "<table><tr><th>page</th><th>title</th></tr>" + "".join(rows) + "</table>")
    for pattern in AUDIO_GLOBS:
        files = sorted(glob.glob(os.path.join(run_dir, pattern)))
        if not files:
            continue
        cards = "".join(
            f'<div class="clip"><b>{html.escape(os.path.relpath(f, os.path.dirname(os.path.dirname(f))))}</b>'
            f'<audio controls preload="none" src="{html.escape(quote(os.path.relpath(f, run_dir)))}"></audio></div>'
            for f in files
        )
        folder = os.path.dirname(pattern).split("/")[0]
        page.add_html(f"Sounds: {folder}", f'<div class="clips">{cards}</div>')
    corners = os.path.join(run_dir, "choose-corners", "corners")
    for count in ("2", "4"):
        chosen = os.path.join(corners, count, "corners.json")
        if os.path.exists(chosen):
            with open(chosen, encoding="utf-8") as handle:
                entries = json.load(handle)["corners"]
            page.add_table(f"Corners of the {count}-corner space", ["corner", "genre", "song", "excerpt from (s)"],
                           [[c["name"], c["genre"], c["song_id"], c["start_seconds"]] for c in entries])  # fmt: skip
    if timings:
        page.add_table("Steps", ["step", "seconds"], [[name, round(seconds, 1)] for name, seconds in timings.items()]
                       + [["whole run", round(sum(timings.values()), 1)]])  # fmt: skip
    path = os.path.join(run_dir, "index.html")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page.html())
    return path


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--option {text!r}: expected KEY=VALUE, e.g. max_tracks=20")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value  # a plain string


def source_options_from(args: argparse.Namespace) -> dict:
    """The `source_options` run parameter from the flags: the keys the cluster's pipeline takes."""
    options: dict = {}
    if args.source == "synth":
        options = {"count": args.clips, "seed": args.seed, "notes_per_clip": args.notes_per_clip}
    if args.input:
        options["input"] = os.path.abspath(os.path.expanduser(args.input))
    if args.genre:
        options["genres"] = list(args.genre)
    if args.genre_from:
        options["genre_from"] = args.genre_from
    if args.max_tracks is not None:
        options["max_tracks"] = args.max_tracks
    options.update(dict(args.option))
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.run_local",
        description=__doc__,
        formatter_class=HelpFormatter,  # the waveforms CLI's: every option's default, unless there is none
    )
    parser.add_argument("--output-dir", default="local_outputs", help="where runs, data and logs go")
    parser.add_argument("--source", default="synth", choices=("synth", "dir", "urls", "fma", "fma-dataset"),
                        help="where the songs come from")  # fmt: skip
    parser.add_argument("--input", help="dir: the music folder (genre = first sub-folder); urls: the URL list file")
    parser.add_argument("--genre-from", choices=("folder", "tag"),
                        help="dir: label songs by their first sub-folder or by their genre tag (default: folder)")  # fmt: skip
    parser.add_argument("--genre", action="append", default=[], help="fma/fma-dataset: genre to take (repeatable)")
    parser.add_argument("--max-tracks", type=int, help="fma/fma-dataset: stop after this many tracks")
    parser.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                        help="any other source option (waveforms.ingest.IngestOptions field; JSON values)")  # fmt: skip
    parser.add_argument("--clips", type=int, default=80, help="synth: clips to make")
    parser.add_argument("--seed", type=int, default=0, help="synth: random seed")
    parser.add_argument("--notes-per-clip", type=int, default=8,
                        help="synth: notes per 4-s clip; 1 = isolated notes, which end in silence (docs/quality.md)")  # fmt: skip
    parser.add_argument("--corners-2", nargs=2, metavar="CORNER",
                        help="W E corners: a genre, a song (id, file name or title) or '' each; default: the first "
                             "two genres")  # fmt: skip
    parser.add_argument("--corners-4", nargs=4, metavar="CORNER",
                        help="NW NE SW SE corners, as --corners-2; default: the first four genres")  # fmt: skip
    parser.add_argument("--convert-shards", type=int, default=2, help="parallel conversion steps")
    parser.add_argument("--steps", type=int, default=2000, help="WaveNet training steps")
    parser.add_argument("--autoencoder-steps", type=int, default=300, help="autoencoder training steps")
    parser.add_argument("--verbose", action="store_true", help="stream every step's full log (TensorFlow included)")
    return parser


def demo_settings(args: argparse.Namespace) -> dict:
    """run_demo's keyword arguments for parsed flags."""
    # about 8 minutes on 2 cores, short windows. The WaveNet's 2,000 steps at 1e-2 on 80 synth phrases are what it took
    # for 10-s clips that never fall silent (1,000 steps are noise-like); 83-88 of 90 windows passed the flatness limit
    # for 3 training seeds (docs/quality.md, "The demo's data"), none the periodicity limit: the clips are low-passed
    # noise, not yet notes ("Periodicity"). The autoencoder keeps its 300 steps.
    window = {"batch_size": 4, "target_length": 2048, "eval_windows": 32}
    wavenet = {**window, "steps": args.steps, "learning_rate": 1e-2, "warmup_steps": 50,
               "checkpoint_every": 500, "eval_every": 500}  # fmt: skip
    autoencoder = {**window, "steps": args.autoencoder_steps, "learning_rate": 3e-3, "warmup_steps": 20,
                   "checkpoint_every": 100, "eval_every": 100}  # fmt: skip
    settings = {
        "source": args.source,
        "source_options": source_options_from(args),
        "convert_shards": args.convert_shards,
        "verbose": args.verbose,
        "wavenet_train": wavenet,
        "autoencoder_train": autoencoder,
        # every search-space value pinned to the measured recipe (`small`): 30-step trials cannot rank architectures,
        # and the tests measure the model the demo trains; the step still runs, so the page shows the tuning stage
        "tuning_fixed": {
            "batch_size": 4,
            "target_length": 2048,
            "learning_rate": 1e-2,
            "residual_channels": 32,
            "layers_per_stack": 10,
        },  # fmt: skip
        "tuning_trials": 1,
        "generate_seconds": 10.0,  # the clip length: the page's checks measure the same bar as the tests
    }
    for name, corners in (("soundspace_2", args.corners_2), ("soundspace_4", args.corners_4)):
        if corners:
            settings[name] = tuple(corners)
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.source in ("dir", "urls") and not args.input:
        parser.error(f"--source {args.source} needs --input")
    if args.source == "dir" and not os.path.isdir(os.path.expanduser(args.input)):
        parser.error(f"--input {args.input}: not a folder")
    settings = demo_settings(args)
    try:
        run_demo(args.output_dir, **settings)
    except ValueError as error:  # bad options, found before any step runs
        parser.error(str(error))
    except RuntimeError as error:  # a step failed: its log says why
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
