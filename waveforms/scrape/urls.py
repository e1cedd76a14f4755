"""A plain list of audio URLs: one per line, optionally followed by a genre; `#` starts a comment.

    https://example.org/a/song.mp3   ambient
    https://example.org/b/other.wav            # genre "unknown"

The hosts named in the list are the configured hosts: redirects anywhere else are refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from waveforms.audio import AUDIO_EXTENSIONS
from waveforms.scrape import Output, slugify, sniff_audio_format, track_entry
from waveforms.scrape.http import FetchError, PoliteFetcher, check_mp3


@dataclass(frozen=True)
class UrlItem:
    url: str
    genre: str = "unknown"


def read_url_list(path: str | Path) -> list[UrlItem]:
    """Parse the list; a malformed line raises ValueError naming the file and line."""
    items, seen = [], set()
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = _strip_comment(line)
        fields = line.split()
        url = fields[0]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(fields) > 2:
            raise ValueError(f"{path}:{number}: expected 'URL [genre]' with an http(s) URL, got {raw.strip()!r}")
        if url not in seen:
            seen.add(url)
            items.append(UrlItem(url, fields[1] if len(fields) == 2 else "unknown"))
    return items


def _strip_comment(line: str) -> str:
    # '#' inside a URL is a fragment; a comment needs whitespace before it.
    for marker in (" #", "\t#"):
        if marker in line:
            line = line.split(marker, 1)[0]
    return line.strip()


def hosts_of(items: list[UrlItem]) -> tuple[str, ...]:
    return tuple(sorted({(urlsplit(item.url).hostname or "").lower() for item in items}))


def url_file_name(url: str) -> str:
    """Readable and unique: the slug of the URL's file stem plus a short hash of the whole URL."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    suffix = PurePosixPath(name).suffix.lower()
    stem = PurePosixPath(name).stem
    digest = hashlib.sha1(url.encode()).hexdigest()[:10]
    return f"{slugify(stem, 50)}-{digest}{suffix if suffix in AUDIO_EXTENSIONS else '.mp3'}"


def _validate_audio(path: Path, url: str, is_mp3: bool) -> None:
    if is_mp3:
        check_mp3(path, url)
        return
    with open(path, "rb") as handle:
        if sniff_audio_format(handle.read(16)) is None:
            raise FetchError(url, "not-audio", "content does not start like any known audio format")


def scrape_urls(fetcher: PoliteFetcher, items: list[UrlItem], output: Output, progress: bool = True) -> dict[str, int]:
    counts = {"downloaded": 0, "already_complete": 0, "bytes": 0}
    for item in items:
        if output.is_complete(output.index.get(item.url)):
            counts["already_complete"] += 1
            continue
        relative = f"{slugify(item.genre)}/{url_file_name(item.url)}"
        try:
            result = fetcher.download(
                item.url,
                output.local_path(relative),
                validate=lambda part, url=item.url, mp3=relative.endswith(".mp3"): _validate_audio(part, url, mp3),
                progress=progress,
            )
        except FetchError as err:
            output.fail(item.url, err.reason, err.detail if err.url == item.url else f"{err.url}: {err.detail}")
            continue
        except OSError as err:
            output.fail(item.url, type(err).__name__, str(err))
            continue
        title = PurePosixPath(urlsplit(item.url).path).stem
        output.record(track_entry(item.url, relative, result.bytes, result.sha256, title=title, genre=item.genre))
        counts["downloaded"] += 1
        counts["bytes"] += result.bytes
    return counts
