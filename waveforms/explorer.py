"""The sound-space explorer: one self-contained HTML page laying the grid out spatially.

Everything is inline (styles, script, spectrogram PNGs and audio as data: URIs), so the page works from a file, from
an e-mail and inside the Kubeflow dashboard, which shows HTML artifacts in an `<iframe sandbox="allow-scripts">`:
the script uses no storage, no navigation, no popups and no network. Clicking a cell (or hovering, once "play on
hover" is ticked: browsers only let a page play sound after the user has interacted with it) plays that point; arrow
keys move between cells. Coordinates follow waveforms.soundspace: x grows east, y grows south; corners NW NE SW SE
(or W E for a 2-corner path).

Audio is mp3 at a low bitrate by default (about 4 KB per second of sound), which keeps a 9×9 grid of 1-s clips under
a megabyte; WAV is the fallback when ffmpeg is absent.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from collections.abc import Mapping

import numpy as np

from waveforms import pagestyle

THUMBNAIL_SIZE = (160, 80)  # width, height of the spectrogram PNGs in pixels (cells scale them to the page)
PAGE_MP3_BITRATE = "32k"


def data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def audio_mime(payload: bytes) -> str:
    """MIME type from the file's magic bytes (WAV or mp3: the two formats the page embeds)."""
    if payload[:4] == b"RIFF" and payload[8:12] == b"WAVE":
        return "audio/wav"
    if payload[:3] == b"ID3" or (len(payload) > 1 and payload[0] == 0xFF and payload[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    raise ValueError("explorer audio must be WAV or mp3 bytes")


def encode_for_page(clip: np.ndarray, sample_rate: int, audio_format: str = "mp3") -> bytes:
    """A clip as small page-ready bytes: low-bitrate mp3 (ffmpeg) or 16-bit WAV."""
    from waveforms.audio import wav_bytes, write_mp3

    if audio_format == "wav":
        return wav_bytes(clip, sample_rate)
    if audio_format != "mp3":
        raise ValueError(f"audio_format must be mp3 or wav, got {audio_format!r}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "clip.mp3")
        write_mp3(path, clip, sample_rate, bitrate=PAGE_MP3_BITRATE)
        with open(path, "rb") as fh:
            return fh.read()


def encode_all_for_page(
    clips: Mapping[str, np.ndarray], sample_rate: int, audio_format: str = "mp3"
) -> dict[str, bytes]:
    """encode_for_page for many clips; ffmpeg runs in a few parallel processes (its start-up dominates a 1-s clip)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        encoded = pool.map(lambda clip: encode_for_page(clip, sample_rate, audio_format), clips.values())
        return dict(zip(clips, encoded, strict=True))


_STYLE = (
    pagestyle.BASE_CSS
    + """
body{padding-bottom:1em}
.controls{margin:.4em 0 .8em;font-size:.92em;display:flex;gap:1em;align-items:center;flex-wrap:wrap}
.status{color:var(--warm);font-weight:600}
.frame{display:grid;grid-template-columns:minmax(8em,14em) auto minmax(8em,14em);grid-template-rows:auto auto auto;
gap:6px 10px;align-items:center;justify-content:start}
.label{font-size:.85em;color:var(--muted);overflow-wrap:anywhere}
.label b{color:var(--ink);margin-right:.35em}
.corner-play{margin-left:.4em;border:1px solid var(--line);background:#fff;border-radius:4px;cursor:pointer;
font-size:.85em;padding:.05em .45em}
.corner-play.playing{border-color:var(--warm);background:#fff4e8}
.corner-play.original{display:block;margin:.3em 0 0;padding:0;border:2px solid #b9875a;background:#000;line-height:0;
position:relative;overflow:hidden}
.corner-play.original img{width:clamp(56px,calc((100vw - 34em) / var(--cols)),200px);aspect-ratio:2/1;height:auto;
image-rendering:pixelated;display:block}
.corner-play.original span{position:absolute;left:3px;bottom:3px;font-size:11px;line-height:13px;color:#fff;
background:#0009;padding:0 3px;border-radius:2px}
.grid{display:grid;gap:3px;grid-column:2;grid-row:2}
.cell{padding:0;border:2px solid var(--line);background:#000;cursor:pointer;line-height:0;position:relative;
border-radius:4px;overflow:hidden}
.cell img{width:clamp(56px,calc((100vw - 34em) / var(--cols)),200px);aspect-ratio:2/1;height:auto;
image-rendering:pixelated;display:block}
.cell:hover,.cell:focus{border-color:var(--accent);outline:none}.cell.playing{border-color:var(--warm)}
.cell.corner{border-color:#b9875a} .cell.failing{border-color:#d22}
.alert{color:#c22;font-weight:bold;font-size:.92em;margin:.2em 0 .6em}
.cell span{position:absolute;left:3px;bottom:3px;font-size:11px;line-height:13px;color:#fff;background:#0009;
padding:0 3px;border-radius:2px}
.cell span.warn{left:auto;right:3px;background:#c00}
"""
)

_SCRIPT = """
(function () {
  "use strict";
  var current = null, currentCell = null;
  var statusLine = document.getElementById("status");
  var hover = document.getElementById("hover");
  function say(text) { statusLine.textContent = text; }
  function stop() {
    if (current) { current.pause(); }
    if (currentCell) { currentCell.classList.remove("playing"); }
    current = null; currentCell = null;
  }
  function play(cell) {
    var audio = document.getElementById(cell.getAttribute("data-audio"));
    stop();
    current = audio; currentCell = cell;
    cell.classList.add("playing");
    audio.currentTime = 0;
    var started = audio.play();
    if (started && started.catch) {
      started.catch(function (err) { say("cannot play yet (" + err.name + "): click a cell first"); });
    }
    say(cell.getAttribute("title"));
  }
  var cells = document.querySelectorAll(".cell");
  Array.prototype.forEach.call(cells, function (cell) {
    cell.addEventListener("click", function () { play(cell); });
    cell.addEventListener("mouseenter", function () { if (hover.checked) { play(cell); } });
    cell.addEventListener("keydown", function (event) {
      var moves = {ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0]};
      var move = moves[event.key];
      if (!move) { return; }
      event.preventDefault();
      var grid = cell.parentNode;
      var row = +cell.getAttribute("data-row") + move[0], col = +cell.getAttribute("data-col") + move[1];
      var next = grid.querySelector('.cell[data-row="' + row + '"][data-col="' + col + '"]');
      if (next) { next.focus(); play(next); }
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll(".corner-play"), function (button) {
    button.addEventListener("click", function () { play(button); });
  });
  Array.prototype.forEach.call(document.querySelectorAll("audio"), function (audio) {
    audio.addEventListener("ended", function () { if (current === audio) { stop(); } });
  });
  document.getElementById("stop").addEventListener("click", stop);
})();
"""

_LABEL_PLACES = {  # corner -> (grid-row, grid-column) of its label around the cell grid
    "NW": (1, 1),
    "NE": (1, 3),
    "SW": (3, 1),
    "SE": (3, 3),
    "W": (2, 1),
    "E": (2, 3),
}


def render_explorer(
    manifest: Mapping,
    audio_by_file: Mapping[str, bytes],
    thumbnails_by_file: Mapping[str, bytes] | None = None,
    title: str = "Sound space",
    corner_audio: Mapping[str, bytes] | None = None,
    corner_thumbnails: Mapping[str, bytes] | None = None,
) -> str:
    """The page for a soundspace manifest. audio_by_file / thumbnails_by_file map a point's name to its audio (WAV or
    mp3 bytes) and spectrogram PNG. Every point of the manifest must have audio. corner_audio / corner_thumbnails map
    a corner source's file name to the original sound (what was encoded) and its spectrogram: shown in the corner's
    label, beside the decoded corner cell, so the two can be seen and heard side by side."""
    thumbnails = thumbnails_by_file or {}
    missing = [p["name"] for p in manifest["points"] if p["name"] not in audio_by_file]
    if missing:
        raise ValueError(f"explorer: no audio for {len(missing)} point(s), e.g. {missing[0]}")
    corner_names = list(manifest["corner_names"])
    esc = html.escape
    sections, audios = [], []
    for space in manifest["spaces"]:
        points = [p for p in manifest["points"] if p["space"] == space["index"]]
        heading = " · ".join(f"{n}: {space['sources'][n]}" for n in corner_names)
        if space.get("pitch_shift") is not None:
            heading += f" · pitch {space['pitch_shift']:+d} semitones"
        cells = []
        for p in points:
            audio_id = f"audio-{len(audios)}"
            payload = audio_by_file[p["name"]]
            audios.append(
                f'<audio id="{audio_id}" preload="auto" src="{data_uri(payload, audio_mime(payload))}"></audio>'
            )
            weights = " ".join(f"{n} {p['weights'][n]:.2f}" for n in corner_names)
            corner = next((n for n in corner_names if p["weights"][n] > 0.999), None)
            image = (
                f'<img alt="" src="{data_uri(thumbnails[p["name"]], "image/png")}">'
                if p["name"] in thumbnails
                else '<img alt="">'
            )
            check = p.get("check", "")
            failing = bool(check) and check != "ok"
            badge = (f"<span>{corner}</span>" if corner else "") + ('<span class="warn">!</span>' if failing else "")
            classes = "cell" + (" corner" if corner else "") + (" failing" if failing else "")
            cells.append(
                f'<button type="button" class="{classes}" data-audio="{audio_id}" data-check="{esc(check)}" '
                f'data-name="{esc(p["name"])}" data-x="{p["x"]}" data-y="{p["y"]}" data-row="{p["row"]}" '
                f'data-col="{p["col"]}" style="grid-row:{p["row"] + 1};grid-column:{p["col"] + 1}" '
                f'title="{esc(p["name"])} | x={p["x"]:.3f} y={p["y"]:.3f} | {weights}'
                f'{f" | check: {esc(check)}" if check else ""}">{image}{badge}</button>'
            )
        labels = "".join(
            f'<div class="label" style="grid-row:{_LABEL_PLACES[n][0]};grid-column:{_LABEL_PLACES[n][1]}">'
            f"<b>{n}</b>{esc(space['sources'][n])}"
            f"{_corner_button(space['sources'][n], corner_audio or {}, audios, corner_thumbnails or {})}</div>"
            for n in corner_names
        )
        sections.append(
            f'<section data-space="{space["index"]}"><h2>{esc(heading)}</h2>'
            f'<div class="frame" style="--cols:{manifest["cols"]}">{labels}'
            f'<div class="grid" style="--cols:{manifest["cols"]};grid-template-columns:repeat({manifest["cols"]},auto)">'
            f"{''.join(cells)}</div>"
            "</div></section>"
        )
    parameters = manifest.get("parameters", {})
    note = (
        f"{len(manifest['points'])} clips · weighting {parameters.get('weighting', 'bilinear')} · "
        f"{manifest.get('sample_rate', '')} Hz · {manifest.get('convention', '')}"
    )
    failing = [p for p in manifest["points"] if p.get("check", "ok") != "ok"]
    checked = any("check" in p for p in manifest["points"])
    if failing:
        examples = "; ".join(f"{p['name']}: {p['check']}" for p in failing[:4])
        alert = f'<p class="alert">{len(failing)} of {len(manifest["points"])} clips fail the audio checks (marked !): {esc(examples)}</p>'
    elif checked:
        alert = f'<p class="note">all {len(manifest["points"])} clips pass the audio checks</p>'
    else:
        alert = ""
    rate = manifest.get("sample_rate")
    axes = f"30 Hz to {rate / 2:,.0f} Hz" if isinstance(rate, int | float) else "30 Hz to Nyquist"
    note += f". Each cell shows its clip's spectrogram: time left to right, frequency ({axes}, log) bottom to top."
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<link rel="icon" href="data:,">'  # no favicon request: the page makes no network traffic at all
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{esc(title)}</h1><p class="note">{esc(note)}</p>{alert}'
        '<div class="controls"><label><input type="checkbox" id="hover"> play on hover</label> '
        '<button type="button" id="stop">stop</button><span class="status" id="status">click a cell to play it</span></div>'
        f"{''.join(sections)}<div hidden>{''.join(audios)}</div>"
        f'<script type="application/json" id="manifest">{_json_for_script(manifest)}</script>'
        f"<script>{_SCRIPT}</script></body></html>"
    )


def _corner_button(source: str, corner_audio: Mapping[str, bytes], audios: list[str],
                   thumbnails: Mapping[str, bytes]) -> str:  # fmt: skip
    """A play button for a corner's original sound (its <audio> joins `audios`), showing the original's spectrogram
    when there is one, or "" when there is no original."""
    if source not in corner_audio:
        return ""
    audio_id = f"audio-{len(audios)}"
    payload = corner_audio[source]
    audios.append(f'<audio id="{audio_id}" preload="auto" src="{data_uri(payload, audio_mime(payload))}"></audio>')
    title = f"the original: {html.escape(source)}"
    if source in thumbnails:
        return (f'<button type="button" class="corner-play original" data-audio="{audio_id}" title="{title}">'
                f'<img alt="spectrogram of the original" src="{data_uri(thumbnails[source], "image/png")}">'
                "<span>&#9654; original</span></button>")  # fmt: skip
    return (
        f'<button type="button" class="corner-play" data-audio="{audio_id}" title="{title}">&#9654; original</button>'
    )


def _json_for_script(data: Mapping) -> str:
    # "</" cannot appear inside a <script> element
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


def write_explorer(
    path: str | os.PathLike,
    manifest: Mapping,
    audio: Mapping[str, np.ndarray],
    sample_rate: int,
    audio_format: str = "mp3",
    title: str | None = None,
    corners: Mapping[str, np.ndarray] | None = None,
) -> str:
    """Encode every clip and its thumbnail (and the corners' original sounds, by source file name), render the page,
    write it; returns the path."""
    from waveforms.spectral import spectrogram_png

    width, height = THUMBNAIL_SIZE
    payloads = encode_all_for_page(audio, sample_rate, audio_format)
    thumbnails = {name: spectrogram_png(clip, sample_rate, width, height) for name, clip in audio.items()}
    page = render_explorer(
        manifest,
        payloads,
        thumbnails,
        title or f"Sound space: {os.path.basename(os.path.dirname(os.path.abspath(path)))}",
        corner_audio=encode_all_for_page(corners, sample_rate, audio_format) if corners else None,
        corner_thumbnails={
            name: spectrogram_png(clip, sample_rate, width, height) for name, clip in (corners or {}).items()
        },
    )
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)
    return str(path)
