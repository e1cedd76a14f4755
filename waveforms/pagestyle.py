"""The one look of every page waveforms writes (reports, explorers, the demo's index): light, system fonts, aligned
tables, a labelled spectrogram frame. Pages inline it (they must work from a file and in the Kubeflow UI's sandboxed
iframe, with no network), so it stays small."""

from __future__ import annotations

import html

BASE_CSS = """
:root{--ink:#1d2330;--muted:#5c6475;--line:#d9dde5;--soft:#f4f6f9;--accent:#2f6fde;--warm:#d9822b}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:1.2em 2em 3em;color:var(--ink);
background:#fff;line-height:1.4}
h1{font-size:1.45em;margin:.2em 0 .6em}h2{font-size:1.12em;margin:1.6em 0 .5em;padding-bottom:.2em;
border-bottom:1px solid var(--line)}
a{color:var(--accent)}p{max-width:75em}
table{border-collapse:collapse;margin:.4em 0;width:auto;max-width:100%}
td,th{border-bottom:1px solid var(--line);padding:.3em .9em .3em 0;text-align:left;vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:.9em}
td:first-child{white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.note,.caption{color:var(--muted);font-size:.88em}
.clips{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1em}
.clip{border:1px solid var(--line);border-radius:8px;padding:.6em .7em;background:var(--soft)}
.clip audio{width:100%;margin-top:.3em}
.spec{display:grid;grid-template-columns:auto 1fr;grid-template-rows:auto auto;column-gap:4px;font-size:.72em;
color:var(--muted);margin-top:.3em}
.spec img{grid-column:2;width:100%;height:110px;image-rendering:pixelated;display:block;border-radius:3px}
.spec .yaxis{grid-column:1;grid-row:1;display:flex;flex-direction:column;justify-content:space-between;text-align:right}
.spec .xaxis{grid-column:2;display:flex;justify-content:space-between}
.verdict{font-size:.85em;margin-top:.2em}.verdict.ok{color:#1f8a4c}.verdict.bad{color:#c22;font-weight:bold}
p.bad{color:#c22;font-weight:bold}
"""


def spectrogram_frame(png_uri: str, seconds: float, sample_rate: int, alt: str) -> str:
    """A spectrogram image (spectral.spectrogram_png: time left to right, log frequency 30 Hz to Nyquist bottom to top)
    with its axes: frequency in Hz, time in seconds."""
    nyquist = sample_rate / 2
    middle = (30.0 * nyquist) ** 0.5  # the log axis's midpoint
    ticks = [f"{nyquist:,.0f} Hz", f"{middle:,.0f} Hz", "30 Hz"]
    return (
        f'<div class="spec"><div class="yaxis">{"".join(f"<span>{t}</span>" for t in ticks)}</div>'
        f'<img alt="{html.escape(alt)}" src="{png_uri}">'
        f'<div class="xaxis"><span>0 s</span><span>{seconds / 2:.2f} s</span><span>{seconds:.2f} s</span></div></div>'
    )
