"""The Free Music Archive website: genre listing pages -> track pages -> mp3 files, one folder per genre.

FMA marks every track on its pages with an element carrying a `data-track-info` JSON attribute (id, title, artistName,
url of the track page, fileUrl of the mp3); a track page also links its Creative Commons licence. We read those with a
real HTML parser (BeautifulSoup, html.parser backend) and fall back to plain links where an attribute is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urljoin, urlsplit

from bs4 import BeautifulSoup

from waveforms.scrape import Output, slugify, track_entry
from waveforms.scrape.http import FetchError, PoliteFetcher, check_mp3

FMA_BASE_URL = "https://freemusicarchive.org"
FMA_HOSTS = ("freemusicarchive.org", "files.freemusicarchive.org")  # pages and the file host they link to


@dataclass(frozen=True)
class FmaSource:
    genres: tuple[str, ...]  # genre names as in the site's /genre/<name>/ paths, e.g. "Blues", "Old-Time__Historic"
    first_page: int = 1
    last_page: int = 1  # inclusive; pages past the site's last page are not requested
    base_url: str = FMA_BASE_URL
    page_size: int = 20
    max_tracks: int | None = None  # stop after this many tracks are in the index (None: no limit)

    def __post_init__(self):
        if not self.genres:
            raise ValueError("FmaSource.genres is empty: name at least one genre (e.g. --genre Blues)")
        if not 1 <= self.first_page <= self.last_page:
            raise ValueError(f"FmaSource page range {self.first_page}-{self.last_page} is not 1 <= first <= last")


@dataclass(frozen=True)
class Listing:
    track_pages: tuple[str, ...]  # absolute track page URLs, in page order, without duplicates
    last_page: int | None  # highest page number the pagination links to (None: no pagination seen)


@dataclass(frozen=True)
class TrackPage:
    page_url: str
    track_id: str
    title: str
    artist: str
    licence: str
    licence_url: str
    audio_url: str


def listing_url(source: FmaSource, genre: str, page: int) -> str:
    return f"{source.base_url.rstrip('/')}/genre/{quote(genre)}/?page={page}&pageSize={source.page_size}"


def _track_info(element) -> dict:
    try:
        info = json.loads(element.get("data-track-info") or "{}")
    except json.JSONDecodeError:
        return {}
    return info if isinstance(info, dict) else {}


def parse_listing(html: str, page_url: str) -> Listing:
    soup = BeautifulSoup(html, "html.parser")
    pages: list[str] = []
    for item in soup.select("[data-track-info]"):
        link = _track_info(item).get("url")
        if not link:
            anchor = item.select_one(".ptxt-track a[href], a[href*='/music/']")
            link = anchor["href"] if anchor else None
        if link:
            absolute = urljoin(page_url, link)
            if absolute not in pages:
                pages.append(absolute)
    listing_path = urlsplit(page_url).path
    numbers = []
    for anchor in soup.select("a[href]"):
        target = urlsplit(urljoin(page_url, anchor["href"]))
        page_numbers = parse_qs(target.query).get("page", [])
        if target.path == listing_path and page_numbers and page_numbers[0].isdigit():
            numbers.append(int(page_numbers[0]))
    return Listing(tuple(pages), max(numbers) if numbers else None)


def _licence(soup) -> tuple[str, str]:
    anchor = soup.select_one("a[href*='creativecommons.org/licenses/'], a[href*='creativecommons.org/publicdomain/']")
    if anchor is None:
        return "", ""
    url = anchor["href"]
    name = anchor.get("title") or anchor.get_text(" ", strip=True)
    if not name:  # derive "CC BY-NC-SA 4.0" from .../licenses/by-nc-sa/4.0/
        parts = [p for p in urlsplit(url).path.split("/") if p][1:]
        name = "CC " + " ".join(parts).upper()
    return name, url


def parse_track_page(html: str, page_url: str) -> TrackPage:
    """Read one track page; raises ValueError naming the page when it has no audio link."""
    soup = BeautifulSoup(html, "html.parser")
    element = soup.select_one("[data-track-info]")
    info = _track_info(element) if element is not None else {}
    audio = info.get("fileUrl")
    if not audio:
        anchor = soup.select_one("a[download][href], a.download[href]")
        audio = anchor["href"] if anchor else ""
    if not audio:
        raise ValueError(f"{page_url}: track page has no data-track-info fileUrl and no download link")
    title = info.get("title") or (soup.h1.get_text(" ", strip=True) if soup.h1 else "")
    licence, licence_url = _licence(soup)
    return TrackPage(
        page_url=page_url,
        track_id=str(info.get("id") or ""),
        title=title,
        artist=info.get("artistName") or "",
        licence=licence,
        licence_url=licence_url,
        audio_url=urljoin(page_url, audio),
    )


def track_file_name(track: TrackPage) -> str:
    """Unique per track: the title's slug plus the FMA track id (or a hash of the page URL when there is none)."""
    from hashlib import sha1

    suffix = track.track_id or sha1(track.page_url.encode()).hexdigest()[:10]
    return f"{slugify(track.title, 50)}-{slugify(suffix, 20)}.mp3"


def scrape_fma(fetcher: PoliteFetcher, source: FmaSource, output: Output, progress: bool = True) -> dict[str, int]:
    """Download every reachable track once; failures go to output.failures, never up. Returns counters."""
    counts = {"downloaded": 0, "already_complete": 0, "bytes": 0}
    seen: set[str] = set()
    for genre in source.genres:
        genre_folder = slugify(genre)
        for page in range(source.first_page, source.last_page + 1):
            url = listing_url(source, genre, page)
            try:
                listing = parse_listing(fetcher.get_text(url).text, url)
            except FetchError as err:
                output.fail(url, err.reason, err.detail)
                continue
            for page_url in listing.track_pages:
                if source.max_tracks is not None and len(output.index) >= source.max_tracks:
                    return counts
                if page_url in seen:  # listed twice (or in two genres): keep the first
                    continue
                seen.add(page_url)
                if output.is_complete(output.index.get(page_url)):
                    counts["already_complete"] += 1
                    continue
                _fetch_track(fetcher, page_url, genre, genre_folder, output, counts, progress)
            if listing.last_page is not None and page >= listing.last_page or not listing.track_pages:
                break  # past the end of this genre
    return counts


def _fetch_track(fetcher, page_url, genre, genre_folder, output: Output, counts, progress) -> None:
    try:
        track = parse_track_page(fetcher.get_text(page_url).text, page_url)
        relative = f"{genre_folder}/{track_file_name(track)}"
        result = fetcher.download(
            track.audio_url,
            output.local_path(relative),
            validate=lambda part: check_mp3(part, track.audio_url),
            progress=progress,
        )
        output.record(
            track_entry(
                page_url,
                relative,
                result.bytes,
                result.sha256,
                title=track.title,
                genre=genre,
                artist=track.artist,
                licence=track.licence,
                track_id=track.track_id,
                audio_url=track.audio_url,
                licence_url=track.licence_url,
            )
        )
        counts["downloaded"] += 1
        counts["bytes"] += result.bytes
    except FetchError as err:
        detail = err.detail if err.url == page_url else f"{err.url}: {err.detail}"
        output.fail(page_url, err.reason, detail)
    except (ValueError, OSError) as err:
        output.fail(page_url, type(err).__name__, str(err))
