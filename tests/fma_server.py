"""A loopback web server that looks enough like the Free Music Archive to scrape, and misbehaves on request.

Pages: /robots.txt; /genre/<Genre>/?page=N&pageSize=K (listing with `data-track-info` items and pagination links);
/music/<artist>/<title>-<id>/ (track page: data-track-info with fileUrl, a Creative Commons licence link); /files/<id>.mp3;
/archives/<name> (static files with HTTP Range support). Faults are queued per path (without query); every request is
logged with its arrival time so tests can check rate limits, retries and resumption.

Reusable: `FmaServer(...)` as a context manager; `make_mp3()` makes a small real mp3 with ffmpeg; `loopback_only` is a
pytest fixture that makes any connection attempt to a non-loopback address fail the test.
"""

from __future__ import annotations

import html
import json
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

DEFAULT_ROBOTS = "User-agent: *\nDisallow: /private/\n"
LICENCE = ("Attribution-NonCommercial-ShareAlike", "https://creativecommons.org/licenses/by-nc-sa/4.0/")


def make_mp3(path: Path, seconds: float = 1.0, frequency: int = 440) -> bytes:
    """A real MPEG-1 Layer III file (22.05 kHz mono, 32 kb/s, no ID3 tag) made by ffmpeg."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"sine=frequency={frequency}:duration={seconds}", "-ac", "1", "-ar", "22050", "-b:a", "32k",
         "-codec:a", "libmp3lame", "-id3v2_version", "0", "-write_xing", "0", "-map_metadata", "-1", str(path)],
        check=True,
    )  # fmt: skip
    return Path(path).read_bytes()


def id3_tagged(mp3: bytes, title: str) -> bytes:
    """Prefix an ID3v2.3 tag holding `title`: a different, still valid mp3 per track."""
    text = b"\x00" + title.encode("latin-1", "replace")
    frame = b"TIT2" + struct.pack(">I", len(text)) + b"\x00\x00" + text
    size = len(frame)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x03\x00\x00" + syncsafe + frame + mp3


@dataclass
class Track:
    track_id: int
    title: str
    artist: str
    genre: str
    audio: bytes
    private: bool = False  # page under /private/ (disallowed by the default robots.txt)

    @property
    def page_path(self) -> str:
        root = "/private" if self.private else "/music"
        return f"{root}/{quote(self.artist.replace(' ', '_'))}/{quote(self.title.replace(' ', '_'))}-{self.track_id}/"

    @property
    def file_path(self) -> str:
        return f"/files/{self.track_id}.mp3"


@dataclass
class Fault:
    """One misbehaviour, used `times` times (None: forever) on the next requests for a path.

    kind: status (code + headers, e.g. 429 with Retry-After), reset (TCP RST, no response), truncate (promise the full
    Content-Length, send keep_bytes, close), short_length (honest Content-Length of a cut body), slow (body in
    chunks with `delay` s between), redirect (302 to location), content_type (serve the body as another type),
    no_length (no Content-Length: the body ends when the connection closes).
    """

    kind: str
    status: int = 500
    headers: dict = field(default_factory=dict)
    times: int | None = 1
    location: str = ""
    delay: float = 0.0
    keep_bytes: int = 0
    content_type: str = ""


@dataclass
class Request:
    time: float  # time.monotonic() at arrival
    path: str  # with query
    range: str | None
    user_agent: str
    fault: str | None
    status: int | None = None  # set before the response is sent (0: connection reset), so the client never races it


class FmaServer:
    def __init__(
        self,
        tracks: list[Track],
        page_size: int = 2,
        robots: str = DEFAULT_ROBOTS,
        archives: dict[str, bytes] | None = None,
    ):
        self.tracks = tracks
        self.page_size = page_size
        self.robots = robots
        self.archives = dict(archives or {})
        self.faults: dict[str, list[Fault]] = {}
        self.log: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    # --- test helpers ---
    def add_fault(self, path: str, fault: Fault) -> None:
        with self._lock:
            self.faults.setdefault(path, []).append(fault)

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self.faults.get(path, [])
            if not queue:
                return None
            fault = queue[0]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    queue.pop(0)
            return fault

    def record(self, request: Request) -> None:
        with self._lock:
            self.log.append(request)

    def requests_to(self, prefix: str) -> list[Request]:
        with self._lock:
            return [r for r in self.log if r.path.startswith(prefix)]

    def genre_tracks(self, genre: str) -> list[Track]:
        return [t for t in self.tracks if t.genre == genre]

    def listing_url(self, genre: str, page: int) -> str:
        return f"{self.base_url}/genre/{quote(genre)}/?page={page}&pageSize=20"

    # --- pages ---
    def listing_html(self, genre: str, page: int) -> str:
        tracks = self.genre_tracks(genre)
        pages = max(1, -(-len(tracks) // self.page_size))
        shown = tracks[(page - 1) * self.page_size : page * self.page_size]
        items = []
        for t in shown:
            info = {"id": t.track_id, "title": t.title, "artistName": t.artist, "url": self.base_url + t.page_path}
            items.append(
                f"<div class=\"play-item gcol gid-{html.escape(genre)}\" data-track-info='{html.escape(json.dumps(info))}'>"
                f'<span class="ptxt-track"><a href="{t.page_path}">{html.escape(t.title)}</a></span>'
                f'<span class="ptxt-artist"><a href="/music/{quote(t.artist)}/">{html.escape(t.artist)}</a></span></div>'
            )
        links = "".join(
            f'<a href="/genre/{quote(genre)}/?page={n}&amp;pageSize=20">{n}</a> ' for n in range(1, pages + 1)
        )
        return (
            f"<!DOCTYPE html><html><head><title>{html.escape(genre)} | Free Music Archive</title></head><body>"
            f'<h1>{html.escape(genre)}</h1><div class="playlist">{"".join(items)}</div>'
            f'<div class="pagination-full">{links}</div>'
            '<a href="/genre/Other/?page=9">another genre</a></body></html>'
        )

    def track_html(self, t: Track) -> str:
        info = {"id": t.track_id, "title": t.title, "artistName": t.artist, "fileUrl": self.base_url + t.file_path}
        return (
            f"<!DOCTYPE html><html><body><h1>{html.escape(t.title)}</h1>"
            f"<div class=\"play-item\" data-track-info='{html.escape(json.dumps(info))}'></div>"
            f'<div class="track-license"><a href="{LICENCE[1]}" title="{LICENCE[0]}">CC BY-NC-SA</a></div>'
            "</body></html>"
        )


def _handler_for(server: FmaServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):  # noqa: N802
            arrived = time.monotonic()
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            fault = server.take_fault(path)
            self.request_record = Request(arrived, self.path, self.headers.get("Range"),
                                          self.headers.get("User-Agent", ""), fault.kind if fault else None)  # fmt: skip
            server.record(self.request_record)
            self._serve(path, parse_qs(parts.query), fault)

        def _serve(self, path: str, query: dict, fault: Fault | None) -> int:
            if fault and fault.kind == "status":
                return self._send(fault.status, b"fault", "text/plain", fault.headers)
            if fault and fault.kind == "redirect":
                return self._send(302, b"", "text/plain", {"Location": fault.location})
            if fault and fault.kind == "reset":
                self.request_record.status = 0
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return 0
            found = self._resource(path, query)
            if found is None:
                return self._send(404, b"not found", "text/plain")
            body, content_type = found
            if fault and fault.kind == "content_type":
                content_type = fault.content_type
            if path.startswith("/archives/") and self.headers.get("Range"):
                return self._send_range(body, content_type)
            return self._send(200, body, content_type, fault=fault)

        def _resource(self, path: str, query: dict) -> tuple[bytes, str] | None:
            if path == "/robots.txt":
                return server.robots.encode(), "text/plain"
            if path.startswith("/genre/"):
                genre = path.split("/")[2]
                page = int(query.get("page", ["1"])[0])
                if not server.genre_tracks(genre):
                    return None
                return server.listing_html(genre, page).encode(), "text/html; charset=utf-8"
            for t in server.tracks:
                if path == unquote(t.page_path):
                    return server.track_html(t).encode(), "text/html; charset=utf-8"
                if path == t.file_path:
                    return t.audio, "audio/mpeg"
            if path.startswith("/archives/") and path[len("/archives/") :] in server.archives:
                return server.archives[path[len("/archives/") :]], "application/zip"
            return None

        def _send_range(self, body: bytes, content_type: str) -> int:
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                return self._send(416, b"", content_type, {"Content-Range": f"bytes */{len(body)}"})
            chunk = body[start:]
            headers = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
            return self._send(206, chunk, content_type, headers)

        def _send(self, status, body: bytes, content_type, headers=None, fault: Fault | None = None) -> int:
            kind = fault.kind if fault else None
            self.request_record.status = status
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if kind == "short_length":
                body = body[: fault.keep_bytes]
            if kind != "no_length":
                self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            try:
                if kind == "truncate":
                    self.wfile.write(body[: fault.keep_bytes])
                    self.wfile.flush()
                    self.close_connection = True
                elif kind == "slow":
                    step = max(1, len(body) // 4)
                    for offset in range(0, len(body), step):
                        self.wfile.write(body[offset : offset + step])
                        self.wfile.flush()
                        time.sleep(fault.delay)
                else:
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. its read timeout): that is what some tests want
            return status

    return Handler


@pytest.fixture
def loopback_only(monkeypatch):
    """Fail loudly if anything tries to open a connection anywhere but 127.0.0.1/localhost."""
    import urllib3.util.connection

    attempts: list[tuple[str, int]] = []
    real = urllib3.util.connection.create_connection

    def guarded(address, *args, **kwargs):
        host, port = address[0], address[1]
        if host not in ("127.0.0.1", "localhost", "::1"):
            attempts.append((host, port))
            raise OSError(f"test guard: connection to {host}:{port} attempted")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", guarded)
    return attempts


def fma_catalogue(base_mp3: bytes, genres: dict[str, int], start_id: int = 100) -> list[Track]:
    """`count` distinct small mp3 tracks per genre, with unique ids, titles and artists."""
    tracks, track_id = [], start_id
    for genre, count in genres.items():
        for n in range(count):
            title = f"{genre} Song {n} é"
            tracks.append(Track(track_id, title, f"Artist {track_id}", genre, id3_tagged(base_mp3, title)))
            track_id += 1
    return tracks


@pytest.fixture(scope="session")
def base_mp3(tmp_path_factory) -> bytes:
    """One ffmpeg run per test session: a 1 s mp3 (about 4 KB) every fake track is derived from."""
    return make_mp3(tmp_path_factory.mktemp("mp3") / "base.mp3")
