"""Self-contained reports: one HTML page (audio and images as data: URIs) plus a Markdown summary.

The Kubeflow dashboard shows HTML artifacts in a sandboxed iframe and fetches them whole, and very large pages have
crashed browsers and the UI pod (kubeflow/pipelines #5513, #5367), so a report stays within a few MB: clips are short
and few.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from waveforms import audio, model_store, pagestyle, records, spectral, storage
from waveforms.manifest import iter_segments, load_dataset_manifest

MAX_CLIP_SECONDS = 4.0

_STYLE = pagestyle.BASE_CSS


@dataclass
class Clip:
    title: str
    samples: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int
    caption: str = ""
    verdict: str = ""  # audio_checks: "ok" or what is wrong; shown beside the player


@dataclass
class Report:
    title: str
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (heading, html, markdown)

    def add_text(self, heading: str, text: str, *, alert: bool = False) -> None:
        """A paragraph; alert=True shows it as a warning (bold red on the page, bold in Markdown)."""
        css = ' class="bad"' if alert else ""
        self.sections.append((heading, f"<p{css}>{html.escape(text)}</p>", f"**{text}**" if alert else text))

    def add_html(self, heading: str, content: str, markdown: str = "") -> None:
        """A section of ready-made (already escaped) HTML, e.g. links."""
        self.sections.append((heading, content, markdown))

    def add_table(self, heading: str, header: list[str], rows: list[list]) -> None:
        # a column of numbers only is right-aligned; in a mixed column numbers sit next to their labels, on the left
        numeric = [all(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in rows if i < len(row))
                   for i in range(len(header))]  # fmt: skip

        def cell(index: int, value) -> str:
            css = ' class="num"' if index < len(numeric) and numeric[index] else ""
            return f"<td{css}>{html.escape(_format(value))}</td>"

        body = "".join("<tr>" + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        markdown = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
        markdown += "".join("| " + " | ".join(_format(v) for v in row) + " |\n" for row in rows)
        self.sections.append((heading, f"<table><tr>{head}</tr>{body}</table>", markdown))

    def add_image(self, heading: str, png: bytes, alt: str) -> None:
        self.sections.append(
            (heading, f'<img alt="{html.escape(alt)}" src="{data_uri(png, "image/png")}">', f"({alt})")
        )

    def add_clips(self, heading: str, clips: list[Clip]) -> None:
        cards = []
        for clip in clips:
            samples = clip.samples[: int(MAX_CLIP_SECONDS * clip.sample_rate)]
            wav = audio.wav_bytes(samples, clip.sample_rate)
            png = spectral.spectrogram_png(samples, clip.sample_rate, width=300, height=96)
            frame = pagestyle.spectrogram_frame(data_uri(png, "image/png"), len(samples) / clip.sample_rate,
                                                clip.sample_rate, f"spectrogram of {clip.title}")  # fmt: skip
            cards.append(
                f'<div class="clip"><b>{html.escape(clip.title)}</b>{frame}'
                f'<audio controls preload="none" src="{data_uri(wav, "audio/wav")}"></audio>'
                f'<div class="caption">{html.escape(clip.caption)}</div>{_verdict_html(clip.verdict)}</div>'
            )
        markdown = "\n".join(
            f"- {clip.title}: {clip.caption}{f' — check: {clip.verdict}' if clip.verdict else ''}" for clip in clips
        )
        self.sections.append((heading, f'<div class="clips">{"".join(cards)}</div>', markdown))

    def html(self) -> str:
        body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content, _ in self.sections)
        return (
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>{body}</body></html>\n"
        )

    def markdown(self) -> str:
        return f"# {self.title}\n\n" + "\n".join(f"## {h}\n\n{md}\n" for h, _, md in self.sections)


def _verdict_html(verdict: str) -> str:
    if not verdict:
        return ""
    css = "verdict ok" if verdict == "ok" else "verdict bad"
    return f'<div class="{css}">check: {html.escape(verdict)}</div>'


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _format(value) -> str:
    if isinstance(value, dict):  # a nested configuration, e.g. the autoencoder's decoder: name=value pairs
        return ", ".join(f"{key}={_format(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_format(item) for item in value)
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# --- datasets ---


def pick_clips(manifest: dict, manifest_uri: str, max_clips: int = 8) -> list[Clip]:
    """One clip per genre first (so every timbre is heard), then more until max_clips, from the first segments."""
    by_genre: dict[str, list[records.Segment]] = {}
    for split in ("train", "validation"):
        for segment in iter_segments(manifest, manifest_uri, split):
            if segment.offset == 0:
                by_genre.setdefault(segment.genre, []).append(segment)
            if sum(len(v) for v in by_genre.values()) >= 4 * max_clips:
                break
    chosen: list[records.Segment] = []
    while len(chosen) < max_clips and any(by_genre.values()):
        for genre in sorted(by_genre):
            if by_genre[genre] and len(chosen) < max_clips:
                chosen.append(by_genre[genre].pop(0))
    return [
        Clip(
            title=os.path.basename(segment.song_id),
            samples=audio.mu_law_decode(np.frombuffer(segment.audio, dtype=np.uint8)),
            sample_rate=segment.sample_rate,
            caption=f"genre {segment.genre}",
        )
        for segment in chosen
    ]


def dataset_metrics(manifest: dict) -> dict[str, float]:
    splits = manifest["splits"]
    return {
        "songs": manifest["totals"]["songs"],
        "hours": manifest["totals"]["hours"],
        "skipped": manifest["totals"]["skipped"],
        "train_samples": splits["train"]["samples"],
        "validation_samples": splits["validation"]["samples"],
        "shards": len(splits["train"]["shards"]) + len(splits["validation"]["shards"]),
        "genres": len(manifest["genres"]),
    }


def dataset_report(dataset_uri: str, stage_seconds: dict[str, float], *, max_clips: int = 8) -> tuple[Report, dict]:
    """The report of a converted dataset: timings, statistics, skipped files and listenable clips with spectrograms."""
    manifest_uri, manifest = load_dataset_manifest(dataset_uri)
    report = Report("waveforms dataset report")
    report.add_table("Stages", ["stage", "seconds"], [[name, round(sec, 2)] for name, sec in stage_seconds.items()])
    metrics = dataset_metrics(manifest)
    report.add_table("Dataset", ["statistic", "value"], [[k.replace("_", " "), v] for k, v in metrics.items()])
    songs_per_genre = Counter(song["genre"] for song in manifest["songs"])
    seconds_per_genre = Counter()
    for song in manifest["songs"]:
        seconds_per_genre[song["genre"]] += song["seconds"]
    report.add_table(
        "Genres",
        ["genre", "songs", "minutes", "validation songs"],
        [
            [
                g,
                songs_per_genre[g],
                round(seconds_per_genre[g] / 60, 2),
                sum(1 for s in manifest["songs"] if s["genre"] == g and s["split"] == "validation"),
            ]
            for g in manifest["genres"]
        ],
    )
    silent = [song["song_id"] for song in manifest["songs"] if song["silent"]]
    if manifest["skipped"] or silent:
        rows = [[item["source"], item["reason"]] for item in manifest["skipped"]]
        rows += [[song_id, "flagged silent (kept)"] for song_id in silent]
        report.add_table("Skipped and flagged files", ["source", "reason"], rows)
    report.add_clips("Clips", pick_clips(manifest, manifest_uri, max_clips))
    return report, metrics


# --- training ---

LOSS_CURVE_INCHES = (6.4, 3.0)  # at LOSS_CURVE_DPI: a 640x300 PNG of about 30 KB
LOSS_CURVE_DPI = 100


def _cell(value):
    """A table cell: small magnitudes keep 3 significant digits (the default shows 3 decimals); booleans as words."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value != 0 and math.isfinite(value) and abs(value) < 0.01:
        return f"{value:.3g}"
    return value


def _read_json(uri: str, what: str) -> dict:
    if not storage.exists(uri):
        raise ValueError(f"{uri}: not found; is it {what}?")
    return storage.read_json_object(uri)


def read_training_output(model_uri: str) -> tuple[list[dict], dict, dict]:
    """-> (evaluation history, final metrics, run configuration) of MODEL_URI, local or in object storage.

    The configuration is the exported config.json, or, while a run is still going, checkpoints/run_config.json.
    """
    metrics_uri = storage.join(model_uri, model_store.METRICS_FILE)
    record = _read_json(metrics_uri, "the MODEL_URI of a `waveforms train` run")
    history = [entry for entry in record.get("history", []) if isinstance(entry, dict) and "step" in entry]
    final = record.get("final") or (history[-1] if history else None)
    if not final:
        raise ValueError(f"{metrics_uri}: no evaluation recorded yet (empty history); run more than --eval-every steps")
    return history, final, model_store.read_run_config(model_uri)


def _receptive_field(config: dict, final: dict) -> int:
    """As recorded by the run; derived from the model configuration only when an unfinished run recorded none."""
    recorded = config.get("receptive_field", final.get("receptive_field"))
    if recorded is not None:
        return int(recorded)
    return int(model_store.model_config(config["model_kind"], config["model"]).receptive_field)


def _train_bits(entry: dict) -> float | None:
    """Training loss in bits/sample; metrics.json from before it was logged in bits holds `loss` in nats."""
    if isinstance(entry.get("train_bits"), int | float):
        return entry["train_bits"]
    if isinstance(entry.get("loss"), int | float):
        return entry["loss"] / math.log(2)
    return None


def loss_curve_png(history: list[dict], baselines: dict | None = None) -> bytes:
    """Train loss and validation NLL, both in bits/sample, against step; the count-model baselines as dashed lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def series(value_of) -> tuple[list[int], list[float]]:
        points = [(e["step"], value_of(e)) for e in history]
        points = [(step, value) for step, value in points if isinstance(value, int | float) and math.isfinite(value)]
        return [step for step, _ in points], [value for _, value in points]

    figure = Figure(figsize=LOSS_CURVE_INCHES, dpi=LOSS_CURVE_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(*series(_train_bits), marker=".", label="train loss")
    axes.plot(*series(lambda e: e.get("val_bits")), marker="o", label="validation (held-out windows)")
    styles = {"uniform": ":", "unigram": "-.", "bigram": "--", "trigram": (0, (5, 1))}
    for name, style in styles.items():
        value = (baselines or {}).get(name)
        if isinstance(value, int | float):
            axes.axhline(value, color="grey", linestyle=style, linewidth=1, label=f"{name} baseline ({value:.2f})")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_xlabel("step")
    axes.set_ylabel("bits / sample")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right", fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})  # no tEXt chunk naming a web address
    return buffer.getvalue()


def training_report(model_uri: str) -> tuple[Report, dict[str, float]]:
    """The report of a training run in MODEL_URI: loss curve, configuration, final metrics, receptive field.

    -> (report, final metrics as flat name -> finite float, for a KFP Metrics artifact). `loss` is in nats (as in
    metrics.json); `train_bits` is the same in bits/sample, comparable with `val_bits`.
    """
    history, final, config = read_training_output(model_uri)
    model, train_settings = config["model"], config["train"]
    metrics = {name: float(value) for name, value in final.items()
               if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)}  # fmt: skip
    if "train_bits" not in metrics and _train_bits(final) is not None:
        metrics["train_bits"] = _train_bits(final)
    baselines = record_baselines(model_uri, config)
    for name in ("uniform", "unigram", "bigram", "trigram"):
        if isinstance(baselines.get(name), int | float):
            metrics[f"{name}_bits"] = float(baselines[name])
    receptive_field = _receptive_field(config, final)
    metrics["receptive_field"] = float(receptive_field)

    report = Report("waveforms training report")
    exported = "step" in config
    status = (f"exported at step {config['step']}" if exported
              else f"in progress: step {final.get('step')} of {train_settings.get('steps')}")  # fmt: skip
    summary = [["model", model_uri], ["model kind", config["model_kind"]], ["status", status]]
    if "sample_rate" in config:
        summary.append(["sample rate (Hz)", int(config["sample_rate"])])
    if config.get("genres"):
        summary.append(["genres", ", ".join(map(str, config["genres"]))])
    report.add_table("Run", ["property", "value"], summary)

    quantization = model.get("quantization_channels")
    if "uniform" not in baselines and isinstance(quantization, int) and quantization > 1:
        baselines = {**baselines, "uniform": math.log2(quantization)}
    verdict = baseline_verdict(final, baselines)
    if verdict:
        report.add_text("Verdict", verdict, alert=verdict.startswith("NOT LEARNED"))
    if history:
        report.add_image("Loss curve", loss_curve_png(history, baselines),
                         "train loss and validation NLL in bits/sample against step, with the count-model baselines")  # fmt: skip
    if any(name in baselines for name in ("unigram", "bigram", "trigram")):
        rows = [["model (validation)", _cell(final.get("val_bits")), _cell(final.get("val_bits_se", "")), ""]]
        rows += [[f"{name} baseline", _cell(baselines[name]), "",
                  _cell(baselines[name] - final["val_bits"]) if isinstance(final.get("val_bits"), int | float) else ""]
                 for name in ("uniform", "unigram", "bigram", "trigram") if isinstance(baselines.get(name), int | float)]  # fmt: skip
        where = (f"on the same {baselines.get('windows')} held-out windows from {baselines.get('songs')} songs; "
                 "count models fitted on the training split") if baselines.get("windows") else ""  # fmt: skip
        report.add_table(f"Bits per sample {where}".strip(), ["", "bits/sample", "standard error", "model below it by"],
                         rows)  # fmt: skip
    values = {**final, **({"train_bits": metrics["train_bits"]} if "train_bits" in metrics else {})}
    values.pop("loss", None)
    leading = {name: values[name] for name in ("step", "val_bits", "val_bits_se", "train_bits") if name in values}
    report.add_table("Final metrics", ["metric", "value"],
                     [[name, _cell(value)] for name, value in (leading | values).items()])  # fmt: skip
    rate = config.get("sample_rate")
    span = f" = {1000.0 * receptive_field / rate:.1f} ms at {rate} Hz" if rate else ""
    report.add_text(
        "Receptive field", f"{receptive_field:,} samples{span}: each prediction sees that many past samples."
    )
    rows = [["model", key, _cell(value)] for key, value in model.items()]
    rows += [["train", key, _cell(value)] for key, value in train_settings.items()]
    report.add_table("Configuration", ["section", "setting", "value"], rows)
    return report, metrics


def record_baselines(model_uri: str, config: dict) -> dict:
    """The baselines a run scored: config.json's copy once exported, metrics.json's while the run goes on."""
    if isinstance(config.get("baselines"), dict) and config["baselines"]:
        return config["baselines"]
    uri = storage.join(model_uri, model_store.METRICS_FILE)
    recorded = _read_json(uri, "a metrics file").get("baselines") if storage.exists(uri) else None
    return recorded if isinstance(recorded, dict) else {}


def baseline_verdict(final: dict, baselines: dict) -> str:
    """A plain sentence when the model does not beat the best count model on the same windows; '' when it does."""
    scored = {name: baselines[name] for name in ("uniform", "unigram", "bigram", "trigram")
              if isinstance(baselines.get(name), int | float)}  # fmt: skip
    val_bits = final.get("val_bits")
    if not scored or not isinstance(val_bits, int | float):
        return ""
    name = min(scored, key=scored.get)
    if val_bits < scored[name]:
        return f"The model beats the best count model ({name}, {scored[name]:.3f}) by {scored[name] - val_bits:.3f} bits/sample."
    return (
        f"NOT LEARNED: the model's {val_bits:.3f} bits/sample is no better than the {name} count model's "
        f"{scored[name]:.3f} on the same held-out windows. Train longer or fix the recipe before trusting its audio."
    )


# --- generation ---

MAX_REPORT_AUDIO_BYTES = 1_600_000  # WAV bytes embedded in one page; base64 (4/3) and spectrograms make it about 2.5 MB


def clip_statistics(clip: Clip) -> dict[str, float]:
    """Duration, peak, RMS (whole clip, silence counts), spectral flatness (~0 tonal, ~1 noise; over sounding frames)
    and spectral centroid of one clip."""
    samples = np.asarray(clip.samples, dtype=np.float32)
    if samples.ndim != 1 or samples.size == 0:
        raise ValueError(f"clip {clip.title!r}: expected mono audio of shape (samples,), got shape {samples.shape}")
    if not isinstance(clip.sample_rate, int | np.integer) or clip.sample_rate <= 0:
        raise ValueError(f"clip {clip.title!r}: sample_rate must be a positive integer, got {clip.sample_rate!r}")
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return {
        "seconds": samples.size / clip.sample_rate,
        "peak": float(np.max(np.abs(samples))),
        "rms": rms,
        "rms_dbfs": 20.0 * math.log10(max(rms, 1e-10)),
        "spectral_flatness": spectral.spectral_flatness(samples),
        "spectral_centroid_hz": spectral.spectral_centroid(samples, int(clip.sample_rate)),
    }


def _embedded_wav_bytes(clip: Clip) -> int:
    return 44 + 2 * min(len(clip.samples), int(MAX_CLIP_SECONDS * clip.sample_rate))


def generation_report(clips: list[Clip], model_uri=None, settings: dict | None = None,
                      checks: list | None = None) -> Report:  # fmt: skip
    """Generated clips as players with spectrograms, the settings, the model they came from, the audio checks' verdict
    and statistics per clip (checks: audio_checks.ClipCheck per clip, in order; model_uri: a MODEL_URI or its
    model_store.StoredModel)).

    Every clip gets a statistics row; players are embedded while MAX_REPORT_AUDIO_BYTES lasts (at least one).
    """
    if not clips:
        raise ValueError("generation_report: no clips")
    if checks is not None and len(checks) != len(clips):
        raise ValueError(f"generation_report: {len(checks)} checks for {len(clips)} clips")
    statistics = [clip_statistics(clip) for clip in clips]  # validates every clip before any work
    report = Report("waveforms generation report")
    if checks is not None:
        failing = [(clip.title, check.verdict) for clip, check in zip(clips, checks, strict=True) if not check.ok]
        for clip, check in zip(clips, checks, strict=True):
            clip.verdict = check.verdict
        if failing:
            listed = "; ".join(f"{title}: {verdict}" for title, verdict in failing)
            report.add_text("Audio checks", f"{len(failing)} of {len(clips)} clips fail the audio checks: {listed}",
                            alert=True)  # fmt: skip
        else:
            report.add_text("Audio checks", f"All {len(clips)} clips pass the audio checks (not silent, not noise-like "
                                            f"against the training data, not clipped).")  # fmt: skip
    if model_uri is not None:
        stored = model_store.read(model_uri)
        export = stored.export
        rows = [
            ["model", stored.uri],
            ["model kind", export["model_kind"]],
            ["sample rate (Hz)", int(export["sample_rate"])],
        ]
        for key, label in (("step", "trained steps"), ("val_bits", "validation bits/sample"),
                           ("receptive_field", "receptive field (samples)")):  # fmt: skip
            if key in export:
                rows.append([label, _cell(export[key])])
        report.add_table("Model", ["property", "value"], rows)
    if settings:
        report.add_table("Settings", ["setting", "value"],
                         [[str(key), _cell(value) if isinstance(value, int | float) else str(value)]
                          for key, value in settings.items()])  # fmt: skip
    shown, budget = [], MAX_REPORT_AUDIO_BYTES
    for clip in clips:
        if shown and _embedded_wav_bytes(clip) > budget:
            break
        shown.append(clip)
        budget -= _embedded_wav_bytes(clip)
    report.add_clips("Clips", shown)
    if len(shown) < len(clips):
        report.add_text("Not embedded", f"{len(clips) - len(shown)} more clips are in the statistics below but not "
                                        f"playable here: the page stays small enough for the Kubeflow UI.")  # fmt: skip
    report.add_table(
        "Statistics",
        ["clip", "check", "seconds", "sound until (s)", "peak", "RMS", "RMS dBFS", "flatness (sounding frames)",
         "spectral centroid (Hz)", "periodicity (sounding seconds)", "spectral change dB (sounding seconds)"],
        [[clip.title, clip.verdict or "", round(s["seconds"], 3),
          round(check.sound_ends_at, 2) if check is not None else "", _cell(s["peak"]), _cell(s["rms"]),
          round(s["rms_dbfs"], 1), _cell(s["spectral_flatness"]), s["spectral_centroid_hz"],
          round(check.median_periodicity, 3) if check is not None else "",
          round(check.median_change, 2) if check is not None else ""]
         for clip, s, check in zip(clips, statistics, checks or [None] * len(clips), strict=True)],
    )  # fmt: skip
    return report
