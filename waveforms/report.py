"""Self-contained reports: one HTML page (audio and images as data: URIs) plus a Markdown summary.

The Kubeflow dashboard shows HTML artifacts in a sandboxed iframe and fetches them whole, and very large pages have
crashed browsers and the UI pod (kubeflow/pipelines #5513, #5367), so a report stays within a few MB: clips are short
and few.
"""

from __future__ import annotations

import base64
import html
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from waveforms import audio, convert, dataset, records, spectral, storage

MAX_CLIP_SECONDS = 4.0

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.clips{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:1em}
.clip{border:1px solid #ddd;border-radius:6px;padding:.5em}.clip img{width:100%;image-rendering:pixelated}
.clip audio{width:100%}.caption{font-size:.85em;color:#555}
"""


@dataclass
class Clip:
    title: str
    samples: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int
    caption: str = ""


@dataclass
class Report:
    title: str
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (heading, html, markdown)

    def add_text(self, heading: str, text: str) -> None:
        self.sections.append((heading, f"<p>{html.escape(text)}</p>", text))

    def add_table(self, heading: str, header: list[str], rows: list[list]) -> None:
        def cell(value) -> str:
            css = ' class="num"' if isinstance(value, int | float) else ""
            return f"<td{css}>{html.escape(_format(value))}</td>"

        body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        markdown = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
        markdown += "".join("| " + " | ".join(_format(v) for v in row) + " |\n" for row in rows)
        self.sections.append((heading, f"<table><tr>{head}</tr>{body}</table>", markdown))

    def add_image(self, heading: str, png: bytes, alt: str) -> None:
        self.sections.append((heading, f'<img alt="{html.escape(alt)}" src="{data_uri(png, "image/png")}">', f"({alt})"))

    def add_clips(self, heading: str, clips: list[Clip]) -> None:
        cards = []
        for clip in clips:
            samples = clip.samples[: int(MAX_CLIP_SECONDS * clip.sample_rate)]
            wav = audio.wav_bytes(samples, clip.sample_rate)
            png = spectral.spectrogram_png(samples, clip.sample_rate, width=300, height=96)
            cards.append(
                f'<div class="clip"><b>{html.escape(clip.title)}</b>'
                f'<img alt="spectrogram of {html.escape(clip.title)}" src="{data_uri(png, "image/png")}">'
                f'<audio controls preload="none" src="{data_uri(wav, "audio/wav")}"></audio>'
                f'<div class="caption">{html.escape(clip.caption)}</div></div>'
            )
        markdown = "\n".join(f"- {clip.title}: {clip.caption}" for clip in clips)
        self.sections.append((heading, f'<div class="clips">{"".join(cards)}</div>', markdown))

    def html(self) -> str:
        body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content, _ in self.sections)
        return (
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>{body}</body></html>\n"
        )

    def markdown(self) -> str:
        return f"# {self.title}\n\n" + "\n".join(f"## {h}\n\n{md}\n" for h, _, md in self.sections)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# --- datasets ---


def iter_segments(manifest: dict, manifest_uri: str, split: str) -> Iterator[records.Segment]:
    """Records of one split read straight from the shards (local or object storage), without TensorFlow."""
    for uri in dataset.shard_uris(manifest, manifest_uri, split):
        with storage.open_read(uri) as stream:
            for serialized in records.iter_records(stream, name=uri):
                yield records.decode_example(serialized)


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
    manifest_uri = convert.manifest_uri(dataset_uri)
    manifest = dataset.load_manifest(manifest_uri)
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
            [g, songs_per_genre[g], round(seconds_per_genre[g] / 60, 2),
             sum(1 for s in manifest["songs"] if s["genre"] == g and s["split"] == "validation")]
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
