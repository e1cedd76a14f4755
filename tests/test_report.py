"""Reports: training (from a real tiny run), generation (real generated clips and known signals), dataset; each page
self-contained and small, and clean in headless Chromium (also inside the Kubeflow UI's sandboxed iframe)."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import shutil
import struct
from dataclasses import dataclass
from html.parser import HTMLParser

import numpy as np
import pytest
from helpers import TINY_WAVENET as TINY
from PIL import Image

from waveforms import audio_checks, convert, generate, report, spectral, storage, synth
from waveforms.report import Clip, clip_statistics, dataset_report, generation_report, training_report
from waveforms.train import TrainConfig, train

SR = 16000
TINY_TRAIN = TrainConfig(steps=6, batch_size=2, target_length=64, warmup_steps=1, checkpoint_every=3, eval_every=2,
                         eval_windows=2, jit_compile=False)  # fmt: skip
SONGS = 6


@dataclass(frozen=True)
class Run:
    dataset_uri: str
    model_uri: str
    result: dict


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    """The real pipeline in miniature: synth notes -> converted dataset -> 6 training steps, evaluated at 2, 4, 6."""
    root = tmp_path_factory.mktemp("report")
    synth.write_dataset(root / "songs", count=SONGS, seed=1, seconds=0.5)
    convert.convert(
        str(root / "songs"), str(root / "ds"), convert.ConvertConfig(validation_fraction=0.34), progress=False
    )
    result = train(str(root / "ds"), str(root / "model"), TINY, TINY_TRAIN, progress=False)
    return Run(str(root / "ds"), str(root / "model"), result)


@pytest.fixture(scope="module")
def generated(run) -> list[Clip]:
    samples = generate.generate(run.model_uri, 0.25, batch=2, temperature=1.0, seed=3)  # (2, 4000)
    return [Clip(f"sample {i}", row, SR, caption="temperature 1.0") for i, row in enumerate(samples)]


# ----------------------------------------------------------------------------------------------- reading the page


class PageParts(HTMLParser):
    """h2 headings with the tables (rows of cell texts), image and audio sources that follow each."""

    def __init__(self, page: str):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current = None
        self.heading = None
        self.row = None
        self.cell = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "h2":
            self.heading = ""
        elif tag == "tr":
            self.row = []
            self.current["rows"].append(self.row)
        elif tag in ("td", "th"):
            self.cell = ""
        elif tag in ("img", "audio") and self.current is not None:
            self.current[tag].append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "h2":
            self.current = self.sections[self.heading] = {"rows": [], "img": [], "audio": []}
            self.heading = None
        elif tag in ("td", "th"):
            self.row.append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.heading is not None:
            self.heading += data
        elif self.cell is not None:
            self.cell += data


def table(page: str, heading: str) -> dict[str, list[str]]:
    """The table under `heading` as {first cell: other cells}, header row dropped."""
    rows = PageParts(page).sections[heading]["rows"]
    return {row[0]: row[1:] for row in rows[1:]}


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def close(cell: str, value: float) -> bool:
    """The cell shows `value` to its 3 decimals or 3 significant digits."""
    return math.isclose(number(cell), value, rel_tol=5e-3, abs_tol=5e-4)


def decoded(uri: str, mime: str) -> bytes:
    prefix = f"data:{mime};base64,"
    assert uri.startswith(prefix)
    return base64.b64decode(uri[len(prefix) :])


def assert_self_contained(page: str) -> None:
    for external in ("http://", "https://", 'src="//', "<link", "<script", "url("):
        assert external not in page
    parts = PageParts(page)
    for section in parts.sections.values():
        assert all(src.startswith("data:") for src in section["img"] + section["audio"])


# ---------------------------------------------------------------------------------------------------- training


def test_training_report_tables_match_metrics_json(run):
    page_report, metrics = training_report(run.model_uri)
    recorded = json.loads(open(os.path.join(run.model_uri, "metrics.json")).read())
    final = recorded["final"]
    assert final["step"] == TINY_TRAIN.steps and len(recorded["history"]) == 3
    # the returned metrics are the recorded final ones (finite numbers) plus the loss in bits
    for name, value in final.items():
        assert metrics[name] == pytest.approx(float(value), rel=1e-12)
    assert metrics["trigram_bits"] == pytest.approx(recorded["baselines"]["trigram"])  # the baselines beside it
    assert metrics["receptive_field"] == TINY.receptive_field == 16
    assert all(isinstance(value, float) and math.isfinite(value) for value in metrics.values())

    page = page_report.html()
    shown = table(page, "Final metrics")
    assert set(shown) == set(final)
    for name, value in final.items():
        assert close(shown[name][0], value), (name, shown[name], value)
    # the baselines stand beside val_bits, on the same windows
    bits = table(page, next(h for h in PageParts(page).sections if h.startswith("Bits per sample")))
    assert close(bits["model (validation)"][0], final["val_bits"])
    for name in ("uniform", "unigram", "bigram", "trigram"):
        assert close(bits[f"{name} baseline"][0], recorded["baselines"][name])
        assert close(bits[f"{name} baseline"][2], recorded["baselines"][name] - final["val_bits"])

    configuration = {(section, setting): value for section, (setting, value) in
                     ((row[0], row[1:]) for row in PageParts(page).sections["Configuration"]["rows"][1:])}  # fmt: skip
    for setting, value in TINY.to_dict().items():
        assert number(configuration[("model", setting)]) == value
    assert number(configuration[("train", "steps")]) == TINY_TRAIN.steps
    assert close(configuration[("train", "learning_rate")], TINY_TRAIN.learning_rate)
    assert configuration[("train", "jit_compile")] == "false"
    assert configuration[("train", "decay")] == TINY_TRAIN.decay

    run_table = table(page, "Run")
    assert run_table["status"] == [f"exported at step {TINY_TRAIN.steps}"]
    assert run_table["model kind"] == ["wavenet"]
    assert "16 samples = 1.0 ms at 16000 Hz" in page  # the receptive field of helpers.TINY_WAVENET
    markdown = page_report.markdown()
    assert "## Loss curve" in markdown and f"| val_bits | {shown['val_bits'][0]} |" in markdown


def test_loss_curve_is_a_small_valid_png(run):
    page = training_report(run.model_uri)[0].html()
    sources = PageParts(page).sections["Loss curve"]["img"]
    assert len(sources) == 1
    png = decoded(sources[0], "image/png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (640, 300)
    assert len(png) <= 100_000
    image = Image.open(io.BytesIO(png))
    image.load()  # decodes every row: a truncated or corrupt stream raises here
    assert image.size == (width, height)
    colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 10  # lines, labels and the grid were drawn, not a blank canvas
    assert b"tEXt" not in png  # no metadata naming a web address


def test_training_report_is_self_contained_and_small(run):
    page = training_report(run.model_uri)[0].html()
    assert_self_contained(page)
    assert len(page.encode()) < 200_000


def test_training_report_reads_object_storage(run, s3_env, s3_prefix):
    remote = f"{s3_prefix}/model"
    storage.sync_dir_up(run.model_uri, remote)
    local_report, local_metrics = training_report(run.model_uri)
    remote_report, remote_metrics = training_report(remote)
    assert remote_metrics == local_metrics
    assert remote_report.html() == local_report.html().replace(run.model_uri, remote)


def test_training_report_of_an_unfinished_run(run, tmp_path):
    """Before the export: configuration from the checkpoints, receptive field derived, status says so."""
    unfinished = tmp_path / "model"
    shutil.copytree(os.path.join(run.model_uri, "checkpoints"), unfinished / "checkpoints")
    recorded = json.loads(open(os.path.join(run.model_uri, "metrics.json")).read())
    (unfinished / "metrics.json").write_text(json.dumps({"history": recorded["history"][:2]}))
    page_report, metrics = training_report(str(unfinished))
    assert metrics["step"] == 4 and metrics["receptive_field"] == TINY.receptive_field
    page = page_report.html()
    assert table(page, "Run")["status"] == [f"in progress: step 4 of {TINY_TRAIN.steps}"]
    assert "16 samples:" in page  # no sample rate recorded yet


def test_training_report_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"metrics\.json: not found"):
        training_report(str(tmp_path))
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"metrics\.json: not valid JSON"):
        training_report(str(tmp_path))
    (tmp_path / "metrics.json").write_text(json.dumps({"history": []}))
    with pytest.raises(ValueError, match="no evaluation recorded yet"):
        training_report(str(tmp_path))
    (tmp_path / "metrics.json").write_text(json.dumps({"history": [{"step": 1, "loss": 5.0, "val_bits": 7.0}]}))
    with pytest.raises(ValueError, match="not written by `waveforms train`"):
        training_report(str(tmp_path))


# -------------------------------------------------------------------------------------------------- generation


def test_generation_report_of_generated_clips(run, generated):
    settings = {"seconds": 0.25, "batch": 2, "temperature": 1.0, "seed_audio": None}
    page = generation_report(generated, run.model_uri, settings).html()
    parts = PageParts(page)
    assert len(parts.sections["Clips"]["audio"]) == len(generated) == 2
    assert len(parts.sections["Clips"]["img"]) == 2
    wav = decoded(parts.sections["Clips"]["audio"][0], "audio/wav")
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE" and len(wav) == 44 + 2 * 4000
    model = table(page, "Model")
    recorded = json.loads(open(os.path.join(run.model_uri, "config.json")).read())
    assert number(model["trained steps"][0]) == recorded["step"] == TINY_TRAIN.steps
    assert close(model["validation bits/sample"][0], recorded["val_bits"])
    assert table(page, "Settings") == {"seconds": ["0.250"], "batch": ["2"], "temperature": ["1.000"],
                                       "seed_audio": ["None"]}  # fmt: skip
    statistics = table(page, "Statistics")
    for clip in generated:
        expected = clip_statistics(clip)
        shown = statistics[clip.title]
        assert close(shown[1], expected["seconds"]) and close(shown[4], expected["rms"])
        assert close(shown[6], expected["spectral_flatness"])
        assert abs(number(shown[7]) - expected["spectral_centroid_hz"]) <= 0.5  # 0.1 Hz, whole Hz from 1,000 up
    assert_self_contained(page)


def test_generation_report_shows_each_clips_verdict_and_never_presents_a_failing_clip_as_a_success(run, generated):
    silent = Clip("silent", np.zeros(4000, np.float32), generated[0].sample_rate)
    clips = [*generated, silent]
    checks = [audio_checks.check_clip(clip.samples, clip.sample_rate) for clip in clips]
    page = generation_report(clips, run.model_uri, checks=checks).html()
    statistics = table(page, "Statistics")
    for clip, check in zip(clips, checks, strict=True):
        assert statistics[clip.title][0] == check.verdict
        assert number(statistics[clip.title][8]) == round(check.median_periodicity, 3)
        assert f"check: {html.escape(check.verdict)}" in page
    assert statistics["silent"][0].startswith("silent") and 'verdict bad">check: silent' in page
    failing = sum(not check.ok for check in checks)
    assert f"{failing} of {len(clips)} clips fail the audio checks" in page


def test_clip_statistics_tell_tone_from_noise_and_silence():
    t = np.arange(SR) / SR
    tone = clip_statistics(Clip("tone", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR))
    noise = clip_statistics(Clip("noise", np.random.default_rng(0).uniform(-0.5, 0.5, SR).astype(np.float32), SR))
    silence = clip_statistics(Clip("silence", np.zeros(SR, np.float32), SR))
    assert tone["rms"] == pytest.approx(0.5 / math.sqrt(2), rel=1e-3)
    assert tone["rms_dbfs"] == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.01)
    assert tone["spectral_centroid_hz"] == pytest.approx(440, rel=0.05)
    assert tone["spectral_flatness"] < 0.01 < 0.3 < noise["spectral_flatness"]
    assert noise["spectral_centroid_hz"] == pytest.approx(SR / 4, rel=0.1)  # white noise: the middle of 0..Nyquist
    assert noise["rms"] == pytest.approx(0.5 / math.sqrt(3), rel=0.02)
    assert silence["rms"] == 0.0 and silence["spectral_flatness"] == 0.0 and silence["peak"] == 0.0
    assert tone["seconds"] == 1.0 and tone["spectral_flatness"] == spectral.spectral_flatness(
        (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    )


def test_generation_report_keeps_the_page_within_a_few_mb():
    """16 clips of 6 s: players are embedded (4 s each) while the audio budget lasts; every clip keeps its row."""
    rng = np.random.default_rng(1)
    clips = [Clip(f"clip {i}", rng.uniform(-0.3, 0.3, 6 * SR).astype(np.float32), SR) for i in range(16)]
    page = generation_report(clips).html()
    parts = PageParts(page)
    embedded = len(parts.sections["Clips"]["audio"])
    per_clip = 44 + 2 * int(report.MAX_CLIP_SECONDS * SR)
    assert embedded == report.MAX_REPORT_AUDIO_BYTES // per_clip == 12
    assert len(table(page, "Statistics")) == 16
    assert "4 more clips" in page
    assert len(page.encode()) < 3_000_000
    assert len(decoded(parts.sections["Clips"]["audio"][0], "audio/wav")) == per_clip
    assert "Model" not in parts.sections and "Settings" not in parts.sections


def test_generation_report_rejects_bad_clips():
    with pytest.raises(ValueError, match="no clips"):
        generation_report([])
    with pytest.raises(
        ValueError, match=r"clip 'batch': expected mono audio of shape \(samples,\), got shape \(2, 10\)"
    ):
        generation_report([Clip("batch", np.zeros((2, 10), np.float32), SR)])
    with pytest.raises(ValueError, match="clip 'empty'"):
        generation_report([Clip("empty", np.zeros(0, np.float32), SR)])
    with pytest.raises(ValueError, match="sample_rate must be a positive integer"):
        generation_report([Clip("rate", np.zeros(10, np.float32), 0)])


# ------------------------------------------------------------------------------------------------------ dataset


def test_dataset_report_still_works(run):
    page_report, metrics = dataset_report(run.dataset_uri, {"convert": 1.25}, max_clips=4)
    assert metrics["songs"] == SONGS
    page = page_report.html()
    assert page.count("<audio") == 4
    assert table(page, "Stages") == {"convert": ["1.250"]}
    assert_self_contained(page)
    every = dataset_report(run.dataset_uri, {}, max_clips=SONGS + 4)[0].html()
    assert every.count("<audio") == SONGS  # one clip per song (each song is a single segment)


# ----------------------------------------------------------------------------------------------------- browser


def open_page(browser, content: str):
    page = browser.new_page()
    problems, requests = [], []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.set_content(content, wait_until="load")
    return page, problems, requests


IMAGE_WIDTHS = "all => all.map(img => img.complete ? img.naturalWidth : -1)"
AUDIO_DURATIONS = """all => Promise.all(all.map(a => new Promise(resolve => {
    a.addEventListener('loadedmetadata', () => resolve(a.duration), {once: true});
    a.addEventListener('error', () => resolve(-1), {once: true});
    a.preload = 'auto'; a.load();
})))"""


def test_pages_render_in_chromium(browser, run, generated):
    training_page = training_report(run.model_uri)[0].html()
    page, problems, requests = open_page(browser, training_page)
    widths = page.locator("img").evaluate_all(IMAGE_WIDTHS)
    assert widths == [640]
    assert problems == [] and all(url.startswith(("data:", "about:")) for url in requests)
    page.close()

    # the generation page as the Kubeflow UI shows it: inside a sandboxed iframe
    generation_page = generation_report(generated, run.model_uri, {"seconds": 0.25}).html()
    host = (f'<!DOCTYPE html><html><body><iframe sandbox="allow-scripts" width="1200" height="900" '
            f'srcdoc="{html.escape(generation_page, quote=True)}"></iframe></body></html>')  # fmt: skip
    page, problems, requests = open_page(browser, host)
    frame = page.frame_locator("iframe")
    assert frame.locator("img").evaluate_all(IMAGE_WIDTHS) == [300, 300]  # one spectrogram per clip
    axes = frame.locator(".spec").first.inner_text().split()  # frequency and time axes with units
    assert "Hz" in axes and axes[-1] == "s" and axes[axes.index("Hz") - 1] == "8,000"
    durations = frame.locator("audio").evaluate_all(AUDIO_DURATIONS)
    assert durations == [pytest.approx(0.25, abs=1e-3)] * 2
    assert problems == [] and all(url.startswith(("data:", "about:")) for url in requests)
    page.close()


def test_nested_settings_read_as_name_value_pairs_not_python():
    from waveforms.report import Report

    page = Report("t")
    page.add_table("Configuration", ["setting", "value"], [["decoder", {"stacks": 1, "skip_channels": 128}]])
    assert "stacks=1, skip_channels=128" in page.html() and "{" not in page.markdown()
