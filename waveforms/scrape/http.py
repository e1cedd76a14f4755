"""Polite, defensive HTTP fetching: one place that decides what may be fetched, how often, and what is kept.

Rules every request obeys:
- only configured hosts, and only if they resolve to public addresses (loopback only when explicitly allowed, as tests do);
  redirects are followed by hand so each hop is checked the same way before any connection is made; connections go to
  the address that was checked (pinned, with the host name kept for the Host header and TLS), never to a second DNS
  answer, so a rebinding DNS server cannot swap in a private address between the check and the connect;
- robots.txt of each host, fetched through the same rules; a per-host rate limit (robots Crawl-delay can only slow it);
- connect and read timeouts; retries with exponential backoff and jitter; Retry-After honoured on 429/503 (capped);
- size caps (Content-Length up front, bytes counted while streaming) and a content-type check;
- downloads land in `<name>.part` and are renamed only after the length, the content check and any checksum pass.
"""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import mmap
import os
import random
import socket
import sys
import threading
import time
import urllib.robotparser
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tqdm import tqdm

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
AUDIO_TYPES = frozenset(
    {
        "audio/mpeg", "audio/mp3", "audio/x-mp3", "audio/mpeg3", "audio/x-mpeg", "audio/x-mpeg-3",
        "audio/wav", "audio/x-wav", "audio/wave", "audio/flac", "audio/x-flac", "audio/ogg", "application/ogg",
    }
)  # fmt: skip
ARCHIVE_TYPES = frozenset({"application/zip", "application/x-zip-compressed", "application/octet-stream"})

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class FetchPolicy:
    allowed_hosts: tuple[str, ...]  # exact host names that may be fetched (redirects elsewhere are refused)
    user_agent: str = "waveforms-ingest/0.1 (research dataset builder; honours robots.txt)"
    requests_per_second: float = 1.0  # per host, at most; robots.txt Crawl-delay may slow it further
    connect_timeout: float = 10.0  # seconds
    read_timeout: float = 30.0  # seconds without a byte
    max_retries: int = 4  # retries after the first attempt
    backoff_base: float = 1.0  # seconds; doubled each retry, then jittered
    backoff_max: float = 60.0  # seconds
    retry_after_cap: float = 300.0  # a longer Retry-After gives up on the item instead of waiting
    max_file_bytes: int = 512 * 1024 * 1024  # per downloaded file
    max_page_bytes: int = 5 * 1024 * 1024  # per HTML page
    max_redirects: int = 5
    allow_loopback: bool = False  # tests serve from 127.0.0.1
    allow_private: bool = False  # RFC 1918, link-local, reserved and similar addresses
    respect_robots: bool = True

    def __post_init__(self):
        if not self.allowed_hosts:
            raise ValueError("FetchPolicy.allowed_hosts is empty: name the hosts that may be fetched")
        if self.requests_per_second <= 0:
            raise ValueError(f"FetchPolicy.requests_per_second must be > 0, got {self.requests_per_second}")
        if self.max_retries < 0:
            raise ValueError(f"FetchPolicy.max_retries must be >= 0, got {self.max_retries}")


class FetchError(Exception):
    """One item could not be fetched; `reason` is a short stable code, `detail` says why in words."""

    def __init__(self, url: str, reason: str, detail: str = "", *, retryable: bool = False, delay: float | None = None):
        super().__init__(f"{url}: {reason}" + (f" ({detail})" if detail else ""))
        self.url, self.reason, self.detail = url, reason, detail
        self.retryable = retryable
        self.delay = delay  # server-requested wait before the next attempt (Retry-After)


@dataclass(frozen=True)
class Page:
    url: str  # final URL after redirects: resolve relative links against it
    text: str


@dataclass(frozen=True)
class Download:
    url: str
    path: Path
    bytes: int
    sha256: str
    sha1: str


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class RateLimiter:
    """At most one request per `interval` seconds per host; thread safe."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic, sleep=time.sleep):
        self.interval, self.clock, self.sleep = interval, clock, sleep
        self._next_slot: dict[str, float] = {}
        self._host_interval: dict[str, float] = {}
        self._lock = threading.Lock()

    def slow_down(self, host: str, interval: float) -> None:
        with self._lock:
            self._host_interval[host] = max(self.interval, interval)

    def wait(self, host: str) -> None:
        with self._lock:
            now = self.clock()
            slot = max(now, self._next_slot.get(host, now))
            self._next_slot[host] = slot + self._host_interval.get(host, self.interval)
        if slot > now:
            self.sleep(slot - now)


def _content_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


class _PinnedAddresses:
    """(host, port) -> the address check_url vetted last; the only place connections are allowed to go."""

    def __init__(self):
        self._addresses: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()

    def pin(self, host: str, port: int, address: str) -> None:
        with self._lock:
            self._addresses[(host.lower(), port)] = address

    def address(self, host: str, port: int) -> str | None:
        with self._lock:
            return self._addresses.get((host.lower(), port))


def _pinned_adapter(pins: _PinnedAddresses) -> HTTPAdapter:
    """A requests adapter whose connections dial the pinned address; the URL's host stays the Host header, the TLS
    server name and the name the certificate is checked against."""

    def new_conn(connection):
        address = pins.address(connection.host, connection.port)
        if address is None:  # a request that bypassed check_url: refuse rather than resolve unchecked
            raise urllib3.exceptions.NewConnectionError(
                connection, f"{connection.host}:{connection.port} was never checked; refusing to connect"
            )
        try:
            return urllib3.util.connection.create_connection(
                (address, connection.port),
                connection.timeout,
                source_address=connection.source_address,
                socket_options=connection.socket_options,
            )
        except TimeoutError as err:
            raise urllib3.exceptions.ConnectTimeoutError(
                connection, f"connection to {connection.host} ({address}) timed out"
            ) from err
        except OSError as err:
            raise urllib3.exceptions.NewConnectionError(
                connection, f"cannot connect to {connection.host} ({address}): {err}"
            ) from err

    class PinnedHTTPConnection(urllib3.connection.HTTPConnection):
        _new_conn = new_conn

    class PinnedHTTPSConnection(urllib3.connection.HTTPSConnection):
        _new_conn = new_conn

    class PinnedHTTPPool(urllib3.HTTPConnectionPool):
        ConnectionCls = PinnedHTTPConnection

    class PinnedHTTPSPool(urllib3.HTTPSConnectionPool):
        ConnectionCls = PinnedHTTPSConnection

    class PinnedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": PinnedHTTPPool, "https": PinnedHTTPSPool}

    return PinnedAdapter()


class PoliteFetcher:
    """Fetch pages and files under a FetchPolicy. Raises FetchError per item; never retries forever."""

    def __init__(self, policy: FetchPolicy, *, session: requests.Session | None = None, sleep=time.sleep, rng=None):
        self.policy = policy
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = policy.user_agent
        self.session.trust_env = False  # proxies from the environment would bypass the address checks
        self._pins = _PinnedAddresses()
        for scheme in ("http://", "https://"):
            self.session.mount(scheme, _pinned_adapter(self._pins))
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.limiter = RateLimiter(1.0 / policy.requests_per_second, sleep=sleep)
        self._allowed_hosts = {host.lower() for host in policy.allowed_hosts}
        self._robots: dict[str, urllib.robotparser.RobotFileParser] = {}
        self._robots_lock = threading.Lock()
        self._robots_unavailable: dict[str, str] = {}  # origin -> why (RFC 9309: then nothing may be fetched)
        self.requests_sent = 0

    def close(self) -> None:
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- what may be fetched -------------------------------------------------------------------------------------
    def check_url(self, url: str) -> None:
        """Refuse URLs outside the policy before any connection: scheme, host list, resolved addresses. Every
        address the name resolves to must pass; the first is pinned, and the next connection to this host goes there."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(url, "scheme-not-allowed", f"scheme {parts.scheme!r}")
        host = (parts.hostname or "").lower()
        if host not in self._allowed_hosts:
            raise FetchError(
                url, "host-not-allowed", f"{host!r} is not a configured host {sorted(self._allowed_hosts)}"
            )
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as err:
            raise FetchError(url, "dns", str(err), retryable=True) from err
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%")[0])
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            if address.is_loopback:
                if not self.policy.allow_loopback:
                    raise FetchError(url, "address-not-allowed", f"{host} resolves to loopback {address}")
            elif not address.is_global and not self.policy.allow_private:
                raise FetchError(url, "address-not-allowed", f"{host} resolves to non-public {address}")
        if not infos:
            raise FetchError(url, "dns", f"{host} resolves to no address", retryable=True)
        self._pins.pin(host, port, infos[0][4][0])

    def allowed_by_robots(self, url: str) -> bool:
        if not self.policy.respect_robots:
            return True
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self._robots_lock:
            parser = self._robots.get(origin)
            if parser is None:
                parser = self._load_robots(origin)
                self._robots[origin] = parser
        return parser.can_fetch(self.policy.user_agent, url)

    def _load_robots(self, origin: str) -> urllib.robotparser.RobotFileParser:
        parser = urllib.robotparser.RobotFileParser(origin + "/robots.txt")
        try:
            response = self._with_retries(
                origin + "/robots.txt", lambda: self._open(origin + "/robots.txt", robots=False)
            )
        except FetchError as err:
            # RFC 9309: an unreachable robots.txt (5xx, network) means "assume everything is disallowed".
            if err.reason.startswith("http-4"):
                parser.parse([])
            else:
                parser.disallow_all = True
                self._robots_unavailable[origin] = str(err)
            return parser
        with response:
            body = self._read_capped(response, origin + "/robots.txt", 512 * 1024)
        parser.parse(body.decode("utf-8", "replace").splitlines())
        delay = parser.crawl_delay(self.policy.user_agent)
        if delay:
            self.limiter.slow_down(urlsplit(origin).hostname or "", float(delay))
        return parser

    # --- one request, redirects by hand -----------------------------------------------------------------------------
    def _open(self, url: str, headers: dict | None = None, robots: bool = True) -> requests.Response:
        for _ in range(self.policy.max_redirects + 1):
            self.check_url(url)
            if robots and not self.allowed_by_robots(url):
                origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
                if origin in self._robots_unavailable:
                    raise FetchError(url, "robots-unavailable", self._robots_unavailable[origin])
                raise FetchError(url, "robots-disallowed", "robots.txt disallows this path")
            self.limiter.wait(urlsplit(url).hostname or "")
            self.requests_sent += 1
            try:
                response = self.session.get(
                    url,
                    headers=headers,
                    stream=True,
                    allow_redirects=False,
                    timeout=(self.policy.connect_timeout, self.policy.read_timeout),
                )
            except requests.RequestException as err:
                raise FetchError(url, "network", f"{type(err).__name__}: {err}", retryable=True) from err
            if response.status_code in REDIRECT_STATUS and "Location" in response.headers:
                response.close()
                target = urljoin(url, response.headers["Location"])
                _check_redirect_port(url, target)
                url = target
                continue
            if response.status_code in RETRYABLE_STATUS:
                response.close()
                delay = None
                if response.status_code in (429, 503):
                    delay = parse_retry_after(response.headers.get("Retry-After"))
                    if delay is not None and delay > self.policy.retry_after_cap:
                        raise FetchError(
                            url, f"http-{response.status_code}", f"Retry-After {delay:.0f} s exceeds the cap"
                        )
                raise FetchError(
                    url, f"http-{response.status_code}", response.reason or "", retryable=True, delay=delay
                )
            if response.status_code >= 300:  # includes a 3xx without Location
                response.close()
                raise FetchError(url, f"http-{response.status_code}", response.reason or "")
            return response
        raise FetchError(url, "too-many-redirects", f"more than {self.policy.max_redirects}")

    def _with_retries(self, url: str, attempt: Callable[[], object]):
        for retry in range(self.policy.max_retries + 1):
            try:
                return attempt()
            except FetchError as err:
                if not err.retryable or retry == self.policy.max_retries:
                    raise
                backoff = min(self.policy.backoff_max, self.policy.backoff_base * 2**retry)
                wait = backoff / 2 + self.rng.uniform(0, backoff / 2)  # jitter spreads retries of many clients
                if err.delay is not None:
                    wait = err.delay + self.rng.uniform(0, 0.1 * err.delay)  # never earlier than the server asked
                self.sleep(wait)
        raise AssertionError("unreachable")

    def _read_capped(self, response: requests.Response, url: str, cap: int) -> bytes:
        chunks, size = [], 0
        try:
            for chunk in response.iter_content(CHUNK_BYTES):
                size += len(chunk)
                if size > cap:
                    raise FetchError(url, "too-large", f"more than {cap} bytes")
                chunks.append(chunk)
        except requests.RequestException as err:
            raise FetchError(url, "network", f"{type(err).__name__}: {err}", retryable=True) from err
        expected = _content_length(response)
        if expected is not None and size != expected and "Content-Encoding" not in response.headers:
            raise FetchError(url, "truncated", f"got {size} of {expected} bytes", retryable=True)
        return b"".join(chunks)

    # --- public entry points ----------------------------------------------------------------------------------------
    def get_text(self, url: str, content_types: Iterable[str] = HTML_TYPES) -> Page:
        allowed = frozenset(content_types)

        def attempt() -> Page:
            response = self._open(url)
            with response:
                kind = _content_type(response)
                if kind not in allowed:
                    raise FetchError(url, "content-type", f"got {kind or 'none'!r}, expected one of {sorted(allowed)}")
                body = self._read_capped(response, url, self.policy.max_page_bytes)
                return Page(response.url, body.decode(response.encoding or "utf-8", "replace"))

        return self._with_retries(url, attempt)

    def download(
        self,
        url: str,
        dest: Path,
        *,
        content_types: Iterable[str] = AUDIO_TYPES,
        validate: Callable[[Path], None] | None = None,
        sha1: str | None = None,
        sha256: str | None = None,
        resume: bool = False,
        progress: bool = True,
        max_bytes: int | None = None,
    ) -> Download:
        """Stream `url` to `dest` through `dest.part`; rename only when complete and verified.

        resume=True keeps the .part file across failures and runs and continues it with an HTTP Range request.
        `validate(part_path)` raises FetchError to refuse the content (e.g. not an mp3).
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        cap = max_bytes or self.policy.max_file_bytes
        allowed = frozenset(content_types)

        def attempt() -> None:
            offset = part.stat().st_size if resume and part.exists() else 0
            headers = {"Range": f"bytes={offset}-"} if offset else None
            response = self._open(url, headers)
            with response:
                if offset and response.status_code == 206:
                    start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
                    if start != str(offset):
                        raise FetchError(url, "bad-range", f"asked from {offset}, got {start!r}", retryable=True)
                elif response.status_code != 200:
                    raise FetchError(url, f"http-{response.status_code}", "unexpected status")
                else:
                    offset = 0  # the server ignored Range: start over
                kind = _content_type(response)
                if kind not in allowed:
                    raise FetchError(url, "content-type", f"got {kind or 'none'!r}, expected one of {sorted(allowed)}")
                length = _content_length(response)
                if length is not None and offset + length > cap:
                    raise FetchError(url, "too-large", f"Content-Length {offset + length} exceeds {cap} bytes")
                # Count the length ourselves: urllib3's own check raises before handing over the bytes it got,
                # and those bytes are what a resumed download continues from.
                response.raw.enforce_content_length = False
                received = 0
                bar = tqdm(
                    total=None if length is None else offset + length, initial=offset, unit="B", unit_scale=True,
                    desc=dest.name[:40], leave=False, file=sys.stderr, disable=None if progress else True,
                )  # fmt: skip
                try:
                    with open(part, "ab" if offset else "wb") as handle:
                        for chunk in response.iter_content(CHUNK_BYTES):
                            received += len(chunk)
                            if offset + received > cap:
                                raise FetchError(url, "too-large", f"more than {cap} bytes streamed")
                            handle.write(chunk)
                            bar.update(len(chunk))
                        handle.flush()
                        os.fsync(handle.fileno())
                except requests.RequestException as err:
                    raise FetchError(url, "network", f"{type(err).__name__}: {err}", retryable=True) from err
                finally:
                    bar.close()
                if length is not None and received != length:
                    raise FetchError(url, "truncated", f"got {received} of {length} bytes", retryable=True)

        try:
            self._with_retries(url, attempt)
            digests = file_digests(part)
            for name, expected in (("sha1", sha1), ("sha256", sha256)):
                if expected and digests[name] != expected.lower():
                    raise FetchError(url, "checksum-mismatch", f"{name} {digests[name]} != published {expected}")
            if validate is not None:
                validate(part)
        except FetchError as err:
            keep_for_resume = resume and err.retryable
            if not keep_for_resume:
                part.unlink(missing_ok=True)
            raise
        except BaseException:
            if not resume:  # interrupted: never leave a half file that looks like ours
                part.unlink(missing_ok=True)
            raise
        os.replace(part, dest)
        return Download(url, dest, dest.stat().st_size, digests["sha256"], digests["sha1"])


def file_digests(path: Path) -> dict[str, str]:
    sha1, sha256 = hashlib.sha1(), hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            sha1.update(block)
            sha256.update(block)
    return {"sha1": sha1.hexdigest(), "sha256": sha256.hexdigest()}


# --- mp3 sanity: walk the MPEG Layer III frames so a file cut mid-frame is caught even when the server lied ----------
_MP3_BITRATES_KBPS = {
    "mpeg1": (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    "mpeg2": (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def mp3_frame_length(header: bytes) -> int | None:
    """Bytes in the Layer III frame starting with this 4-byte header, or None if it is not one."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer = (header[1] >> 3) & 3, (header[1] >> 1) & 3
    bitrate_index, rate_index, padding = header[2] >> 4, (header[2] >> 2) & 3, (header[2] >> 1) & 1
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    kbps = _MP3_BITRATES_KBPS["mpeg1" if version == 3 else "mpeg2"][bitrate_index]
    sample_rate = _MP3_SAMPLE_RATES[version][rate_index]
    return (144000 if version == 3 else 72000) * kbps // sample_rate + padding


def check_mp3(path: Path, url: str = "") -> None:
    """Raise FetchError unless `path` starts with (ID3 then) MPEG audio frames whose last frame is complete."""
    path = Path(path)
    size = path.stat().st_size
    where = url or str(path)
    if size < 4:
        raise FetchError(where, "not-mp3", f"{size} bytes")
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        position = 0
        if data[:3] == b"ID3" and size >= 10:
            tag_size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
            position = 10 + tag_size + (10 if data[5] & 0x10 else 0)
        frames = 0
        while position + 4 <= size:
            length = mp3_frame_length(data[position : position + 4])
            if length is None:
                break
            if position + length > size:
                raise FetchError(
                    where, "truncated-mp3", f"frame at byte {position} needs {length}, file ends at {size}"
                )
            position += length
            frames += 1
        trailer = data[position : position + 8]
        if frames == 0:
            raise FetchError(where, "not-mp3", "no MPEG audio frame where the audio should start")
        if position < size and frames < 2 and not trailer.startswith((b"TAG", b"APETAGEX", b"LYRICS")):
            raise FetchError(where, "not-mp3", f"frame sync lost at byte {position}")


def _effective_port(parts) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def _check_redirect_port(source: str, target: str) -> None:
    """A redirect may keep its port or go to its scheme's standard one (80 for http, 443 for https, the usual upgrade),
    never to another port: an allowed host's other ports are other services, not the site that was allowed."""
    before, after = urlsplit(source), urlsplit(target)
    port = _effective_port(after)
    if port != _effective_port(before) and port != (443 if after.scheme == "https" else 80):
        raise FetchError(target, "port-not-allowed", f"redirect from port {_effective_port(before)} to port {port}")
