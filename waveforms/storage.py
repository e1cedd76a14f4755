"""One way to address data: local paths, `s3://bucket/key` and `minio://bucket/key` (KFP's scheme for the same thing).

Object storage goes through the minio client (imported lazily), never through tensorflow-io's s3:// filesystem, whose
reads are corrupt past 512 KiB on SeaweedFS (it ignores Range on HEAD, and tensorflow-io 0.37.1 sizes its download
from that HEAD) and whose processes abort at exit ("pure virtual method called", exit 134).

Endpoint and keys come only from the environment, under the names Kubeflow and AWS tooling use:
    endpoint  S3_ENDPOINT | AWS_ENDPOINT_URL_S3 | AWS_ENDPOINT_URL | MINIO_ENDPOINT   (host:port or http(s)://host:port;
              a bare host:port uses https unless S3_USE_HTTPS=0)
    keys      AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN) | MINIO_ACCESS_KEY + MINIO_SECRET_KEY |
              accesskey + secretkey (KFP's Secret mlpipeline-minio-artifact exposed as env)
    other     AWS_REGION | AWS_DEFAULT_REGION, S3_VERIFY_SSL=0, AWS_CA_BUNDLE,
              WAVEFORMS_S3_CONNECT_TIMEOUT (s, default 3), WAVEFORMS_S3_READ_TIMEOUT (s, default 60),
              WAVEFORMS_S3_ATTEMPTS (default 5; backoff 0.25 s doubling)

Writes are atomic for readers: an object appears under its final key only when complete (one PUT, or a multipart upload
completed by its last request); a local file is written to a hidden temp file beside it and renamed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import shutil
import stat
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, TypeVar

log = logging.getLogger(__name__)

REMOTE_SCHEMES = ("s3", "minio")
PART_SIZE = 8 * 1024 * 1024  # multipart part size; also the memory one upload holds
READ_BUFFER = 1024 * 1024  # streaming reads: one buffer per open object
COPY_OBJECT_LIMIT = 5 * 1024**3  # S3's limit for a single server-side copy
TEMP_SUFFIX = ".waveforms-partial"  # local temp files; never listed
AUTH_CODES = {
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
    "InvalidSecurity",
}
NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "ResourceNotFound", "NoSuchUpload"}
TRANSIENT_CODES = {"InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed"}

T = TypeVar("T")


class StorageError(Exception):
    """Any storage failure; the message names the URI and the reason."""


class StorageConfigError(StorageError, ValueError):
    """The environment does not say where object storage is or how to log in; or a URI is malformed."""


class StorageAuthError(StorageError, PermissionError):
    """The endpoint refused our access key (wrong key id or secret, or no permission)."""


class StorageNotFoundError(StorageError, FileNotFoundError):
    """No such object, file or bucket."""


class StorageUnreachableError(StorageError, ConnectionError):
    """The endpoint did not answer (refused, timed out, TLS mismatch) within the bounded retries."""


class NotAFileError(StorageError):
    """A local path that is not a regular file: a FIFO, device, socket, folder or symlink loop (never opened for data,
    so a FIFO cannot hang a reader)."""


# ---------------------------------------------------------------------------------------------------------------- URIs


def parse(uri: str) -> tuple[str, str, str]:
    """-> (scheme, bucket, key); local paths give ("file", "", path)."""
    uri = os.fspath(uri)
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return "file", "", uri
    scheme = scheme.lower()
    if scheme == "file":
        return "file", "", urllib.parse.unquote(rest)
    if scheme not in REMOTE_SCHEMES:
        raise StorageConfigError(f"{uri}: unsupported scheme {scheme!r} (use a local path, s3:// or minio://)")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageConfigError(f"{uri}: no bucket name")
    return scheme, bucket, key


def is_remote(uri: str) -> bool:
    return parse(uri)[0] in REMOTE_SCHEMES


def join(uri: str, *parts: str) -> str:
    """Append path parts: `/`-joined for object storage and file:// URIs, os.path.join for plain paths."""
    uri = os.fspath(uri)
    if "://" not in uri:
        return os.path.join(uri, *parts)
    joined = uri.rstrip("/")
    for part in parts:
        part = part.strip("/")
        if part:
            joined += "/" + part
    return joined


def parent(uri: str) -> str:
    """The directory (or key prefix) holding `uri`: join(parent(u), basename) == u."""
    uri = os.fspath(uri)
    if "://" not in uri:
        return os.path.dirname(uri) or "."
    head, _, _ = uri.rstrip("/").rpartition("/")
    return head if not head.endswith(":/") else uri.rstrip("/")


def _local_path(uri: str) -> str:
    return parse(uri)[2]


# ------------------------------------------------------------------------------------------------------ configuration


def _first(environ, *names: str) -> str | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def _flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class S3Settings:
    """Where object storage is and how to log in; built only by from_env. Secrets never appear in repr or logs."""

    endpoint: str  # host:port
    secure: bool
    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    region: str | None = None
    verify_ssl: bool = True
    ca_bundle: str | None = None
    connect_timeout: float = 3.0  # seconds; short so a wrong endpoint fails fast
    read_timeout: float = 60.0  # seconds without a byte before a read counts as failed
    attempts: int = 5  # tries per operation (transient errors only), backoff 0.25 s doubling

    @property
    def url(self) -> str:
        return ("https://" if self.secure else "http://") + self.endpoint

    @classmethod
    def from_env(cls, environ=None) -> S3Settings:
        environ = os.environ if environ is None else environ
        raw_endpoint = _first(environ, "S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MINIO_ENDPOINT")
        if raw_endpoint is None:
            raise StorageConfigError(
                "object storage endpoint not configured: set S3_ENDPOINT (or AWS_ENDPOINT_URL / MINIO_ENDPOINT), "
                "e.g. S3_ENDPOINT=http://minio-service.kubeflow:9000"
            )
        if "://" in raw_endpoint:
            url = urllib.parse.urlparse(raw_endpoint)
            if url.scheme not in ("http", "https") or not url.netloc or url.path not in ("", "/"):
                raise StorageConfigError(f"S3 endpoint {raw_endpoint!r}: expected http(s)://host[:port] with no path")
            endpoint, secure = url.netloc, url.scheme == "https"
        else:
            endpoint, secure = raw_endpoint.rstrip("/"), _flag(environ.get("S3_USE_HTTPS"), True)
        for key_name, secret_name in (
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
            ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"),
            ("accesskey", "secretkey"),
        ):
            access_key = _first(environ, key_name)
            if access_key:
                secret_key = _first(environ, secret_name)
                if not secret_key:
                    raise StorageConfigError(f"{key_name} is set but {secret_name} is not")
                break
        else:
            raise StorageConfigError(
                "object storage credentials not configured: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or MINIO_ACCESS_KEY/MINIO_SECRET_KEY, accesskey/secretkey)"
            )
        try:
            connect_timeout = float(environ.get("WAVEFORMS_S3_CONNECT_TIMEOUT", 3.0))
            read_timeout = float(environ.get("WAVEFORMS_S3_READ_TIMEOUT", 60.0))
            attempts = max(1, int(environ.get("WAVEFORMS_S3_ATTEMPTS", 5)))
        except ValueError as error:
            raise StorageConfigError(f"WAVEFORMS_S3_* timeouts/attempts must be numbers: {error}") from None
        return cls(
            endpoint=endpoint,
            secure=secure,
            access_key=access_key,
            secret_key=secret_key,
            session_token=_first(environ, "AWS_SESSION_TOKEN") if key_name == "AWS_ACCESS_KEY_ID" else None,
            region=_first(environ, "AWS_REGION", "AWS_DEFAULT_REGION"),
            verify_ssl=_flag(environ.get("S3_VERIFY_SSL"), True),
            ca_bundle=_first(environ, "AWS_CA_BUNDLE"),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            attempts=attempts,
        )


_clients: dict[tuple[S3Settings, int], object] = {}


def _client(settings: S3Settings):
    """One minio client per settings and process (pooled connections must not cross a fork)."""
    key = (settings, os.getpid())
    if key not in _clients:
        import certifi
        import urllib3
        from minio import Minio

        # urllib3 retries nothing itself: every retry goes through _call's bounded backoff, so the total time is known.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout),
            retries=urllib3.Retry(total=0, redirect=0, raise_on_status=False),
            maxsize=16,
            cert_reqs="CERT_REQUIRED" if settings.verify_ssl else "CERT_NONE",
            ca_certs=settings.ca_bundle or os.environ.get("SSL_CERT_FILE") or certifi.where(),
        )
        _clients[key] = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            session_token=settings.session_token,
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )
    return _clients[key]


# ---------------------------------------------------------------------------------------------------- error handling


def _is_transient(error: BaseException) -> bool:
    import urllib3
    from minio.error import InvalidResponseError, S3Error, ServerError

    reason = error.reason if isinstance(error, urllib3.exceptions.MaxRetryError) else error
    if isinstance(reason, urllib3.exceptions.SSLError):
        return False  # a TLS mismatch does not heal by retrying
    if isinstance(error, S3Error):
        return error.code in TRANSIENT_CODES
    if isinstance(error, ServerError):
        return error.status_code >= 500
    if isinstance(error, InvalidResponseError):
        return True  # a non-S3 answer (proxy error page, server restarting)
    return isinstance(error, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


def _translate(error: BaseException, settings: S3Settings, action: str, uri: str, attempts: int) -> StorageError:
    import urllib3
    from minio.error import S3Error

    if isinstance(error, StorageError):
        return error
    where = f"{action} {uri} at {settings.url}"
    if isinstance(error, S3Error):
        if error.code in AUTH_CODES:
            return StorageAuthError(
                f"{settings.url} refused access key id {settings.access_key!r} ({error.code}) while trying to "
                f"{action} {uri}; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy"
            )
        if error.code in NOT_FOUND_CODES:
            what = f"bucket {error.bucket_name!r}" if error.code == "NoSuchBucket" else uri
            return StorageNotFoundError(f"{what} does not exist at {settings.url} ({error.code})")
        return StorageError(f"cannot {where}: {error.code}: {error.message}")
    reason = error.reason if isinstance(error, urllib3.exceptions.MaxRetryError) else error
    if isinstance(reason, urllib3.exceptions.SSLError):
        return StorageUnreachableError(
            f"cannot {where}: TLS failed ({reason}); if the endpoint speaks plain http, give it as http://host:port "
            "or set S3_USE_HTTPS=0"
        )
    if _is_transient(error):
        return StorageUnreachableError(f"cannot {where}: no answer after {attempts} attempt(s): {reason}")
    return StorageError(f"cannot {where}: {type(error).__name__}: {error}")


def _call(settings: S3Settings, action: str, uri: str, operation: Callable[[], T]) -> T:
    """Run one S3 operation with bounded retries on transient errors; raise one StorageError subclass otherwise."""
    delay = 0.25
    for attempt in range(1, settings.attempts + 1):
        try:
            return operation()
        except Exception as error:
            if attempt == settings.attempts or not _is_transient(error):
                raise _translate(error, settings, action, uri, attempt) from error
            log.warning(
                "%s %s failed (%s: %s); retry %d/%d in %.2f s",
                action,
                uri,
                type(error).__name__,
                str(error)[:200],
                attempt,
                settings.attempts - 1,
                delay,
            )
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _remote(uri: str) -> tuple[S3Settings, object, str, str]:
    _, bucket, key = parse(uri)
    settings = S3Settings.from_env()
    return settings, _client(settings), bucket, key


def _object_key(uri: str) -> str:
    key = parse(uri)[2]
    if not key or key.endswith("/"):
        raise StorageConfigError(f"{uri}: names a prefix, not an object")
    return key


# ------------------------------------------------------------------------------------------------------- local files


def current_umask() -> int:
    """The process's umask, read from /proc where it is shown (no change at all), else by setting it back at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A hidden temp path beside `path` for a writer that needs a file name (ffmpeg, wave); renamed over `path` when
    the block ends without an error, removed otherwise, so readers never see a half-written file. The one owner of
    atomic local writes: every writer in waveforms goes through it (or `atomic_write`, `write_bytes`)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=directory, prefix="." + os.path.basename(path) + ".", suffix=TEMP_SUFFIX
    )
    os.close(descriptor)
    try:
        yield temporary
        # a temp file is private (0600); the finished file gets the mode open() would give it (0644 under umask
        # 022), so another user or a serving pod can read what we wrote
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Run write(handle) on a temp file beside `path`, flushed to disk, then rename it over `path` (atomic_path)."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def _copy_stream(source: BinaryIO, destination: BinaryIO) -> None:
    shutil.copyfileobj(source, destination, READ_BUFFER)


# ------------------------------------------------------------------------------------------------------ remote reads


class _ObjectStream(io.RawIOBase):
    """Raw reader over one object; a dropped connection resumes with a Range GET at the current offset."""

    def __init__(self, uri: str):
        self.uri = uri
        self.settings, self.client, self.bucket, self.key = _remote(uri)
        _object_key(uri)
        stat = _call(self.settings, "open", uri, lambda: self.client.stat_object(self.bucket, self.key))
        self.size = stat.size
        self.position = 0
        self.response = None

    def readable(self) -> bool:
        return True

    def _open_at_position(self):
        return self.client.get_object(self.bucket, self.key, offset=self.position)

    def readinto(self, buffer) -> int:
        if self.position >= self.size:
            return 0
        failures = 0
        while True:
            try:
                if self.response is None:
                    self.response = _call(self.settings, "read", self.uri, self._open_at_position)
                count = self.response.readinto(buffer)
                if count == 0:  # the server closed early: resume like any other drop
                    raise ConnectionError(f"connection closed at byte {self.position} of {self.size}")
                self.position += count
                return count
            except StorageError:
                raise
            except Exception as error:
                self._release()
                failures += 1
                if failures >= self.settings.attempts or not _is_transient(error):
                    raise _translate(error, self.settings, "read", self.uri, failures) from error
                log.warning("reading %s dropped at byte %d (%s); resuming", self.uri, self.position, error)
                time.sleep(0.25 * 2 ** (failures - 1))

    def _release(self) -> None:
        if self.response is not None:
            self.response.close()
            self.response.release_conn()
            self.response = None

    def close(self) -> None:
        self._release()
        super().close()


FILE_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
              stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}  # fmt: skip


def _open_regular_file(path: str) -> BinaryIO:
    """Open a local regular file; anything else is a NotAFileError (or StorageNotFoundError) naming it."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once instead of awaiting a writer
    except FileNotFoundError:
        kind = "a dangling symbolic link" if os.path.islink(path) else "missing"
        raise StorageNotFoundError(f"{path} does not exist ({kind})") from None
    except OSError as error:  # ELOOP (a symlink loop), EACCES, ...
        raise NotAFileError(f"{path}: cannot open ({error.strerror})") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise NotAFileError(f"{path}: not a regular file ({FILE_KINDS.get(stat.S_IFMT(mode), 'special file')})")
    os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, "rb")


def open_read(uri: str) -> BinaryIO:
    """A streaming, buffered binary reader (use as a context manager); memory is one buffer whatever the size.
    Local paths must be regular files (a symlink to one is fine)."""
    if is_remote(uri):
        return io.BufferedReader(_ObjectStream(uri), buffer_size=READ_BUFFER)
    return _open_regular_file(_local_path(uri))


def check_readable_file(uri: str) -> None:
    """Raise what open_read would (NotAFileError, StorageNotFoundError, ...) without reading: local paths only,
    objects in storage are always plain data."""
    if not is_remote(uri):
        _open_regular_file(_local_path(uri)).close()


def read_bytes(uri: str) -> bytes:
    with open_read(uri) as stream:
        return stream.read()


def download_file(uri: str, local_path: str) -> None:
    """Copy `uri` to a local file atomically (temp file + rename); the size is checked against the object's."""

    def write(handle: BinaryIO) -> None:
        with open_read(uri) as stream:
            _copy_stream(stream, handle)
            expected = stream.raw.size if isinstance(stream, io.BufferedReader) else None
        if expected is not None and handle.tell() != expected:
            raise StorageError(f"{uri}: downloaded {handle.tell()} bytes, the object has {expected}")

    atomic_write(local_path, write)


@contextlib.contextmanager
def local_files(uris: list[str]) -> Iterator[dict[str, str]]:
    """{uri: local path} for tools that need a file (ffmpeg): local paths as they are, objects downloaded into a temp
    folder (one subfolder each, so the base name is kept) that is removed on exit."""
    remote = [uri for uri in dict.fromkeys(uris) if is_remote(uri)]
    if not remote:
        yield {uri: _local_path(uri) for uri in uris}
        return
    with tempfile.TemporaryDirectory(prefix="waveforms-inputs-") as scratch:
        paths = {}
        for index, uri in enumerate(remote):
            paths[uri] = os.path.join(scratch, str(index), _object_key(uri).rsplit("/", 1)[-1])
            download_file(uri, paths[uri])
        yield {uri: paths.get(uri) or _local_path(uri) for uri in uris}


# ----------------------------------------------------------------------------------------------------- remote writes


def write_stream(uri: str, open_stream: Callable[[], BinaryIO], length: int) -> None:
    """Write `length` bytes from a stream to `uri`. `open_stream()` is called again for every retry (from byte 0)."""
    if not is_remote(uri):

        def write(handle: BinaryIO) -> None:
            with open_stream() as stream:
                _copy_stream(stream, handle)

        atomic_write(_local_path(uri), write)
        return
    settings, client, bucket, key = _remote(uri)
    _object_key(uri)

    def put():
        with open_stream() as stream:
            # One PUT when length <= PART_SIZE, else a multipart upload the server publishes only on completion
            # (minio aborts it on failure; an unfinished one is never listed or readable under the key).
            return client.put_object(bucket, key, stream, length, part_size=PART_SIZE)

    _call(settings, "write", uri, put)


def write_bytes(uri: str, data: bytes) -> None:
    data = bytes(data)
    write_stream(uri, lambda: io.BytesIO(data), len(data))


def _finite_or_none(value):
    """Strict JSON has no NaN or Infinity: a value that is not a finite number is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(item) for item in value]
    return value


def read_json_object(uri: str) -> dict:
    """A JSON object from a local path or an object URI; one-line ValueError naming the URI when it is not one."""
    try:
        data = json.loads(read_bytes(uri))
    except ValueError as error:
        raise ValueError(f"{uri}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{uri}: expected a JSON object, got {type(data).__name__}")
    return data


def write_json(uri: str, data: dict) -> None:
    """Strict JSON (non-finite numbers become null), replaced atomically (a local file through atomic_write, an object in one put)."""
    text = json.dumps(_finite_or_none(data), indent=2, sort_keys=True, allow_nan=False)
    write_bytes(uri, text.encode("utf-8"))


def upload_file(local_path: str, uri: str) -> None:
    try:
        size = os.path.getsize(local_path)
    except FileNotFoundError:
        raise StorageNotFoundError(f"{local_path} does not exist") from None
    write_stream(uri, lambda: open(local_path, "rb"), size)


def check_writable(folder_uri: str) -> None:
    """Write and delete a tiny object under folder_uri, so a wrong location (a path that is a file), wrong credentials,
    an unreachable endpoint or a TLS mismatch fail at once, as one StorageError, before hours of work."""
    name = f".waveforms-probe-{os.getpid()}-{os.urandom(4).hex()}"
    probe = join(folder_uri, name)
    try:
        if not is_remote(folder_uri):  # probe in the folder, or its nearest existing ancestor: nothing is created
            path = os.path.abspath(_local_path(folder_uri))
            if os.path.exists(path) and not os.path.isdir(path):
                raise StorageError(f"{folder_uri} is a file, not a folder")
            while not os.path.lexists(path):
                path = os.path.dirname(path)
            if not os.path.isdir(path):
                raise StorageError(f"cannot write under {folder_uri}: {path} is a file, not a folder")
            probe = os.path.join(path, name)
        write_bytes(probe, b"waveforms write probe\n")
        delete(probe)
    except OSError as error:
        if isinstance(error, StorageError):
            raise
        raise StorageError(f"cannot write under {folder_uri}: {error.strerror or error}") from None


# ------------------------------------------------------------------------------------------------------------ leases

LEASE_PREFIX = ".waveforms-lease-"
LEASE_SETTLE_SECONDS = 0.3  # after writing a lease, wait this long and read it back: of two racing writers one wins


class LeaseHeldError(StorageError):
    """Another live process holds a lease on the folder; the message names it."""


class Lease:
    """A writer's claim on a folder (a dataset or a model), the same on local disks and in object storage: a small JSON
    object `<folder>/.waveforms-lease-<name>.json` with owner, host, pid and a heartbeat refreshed by a thread.

    Acquiring fails at once, naming the holder, while a conflicting lease is live: its own name, or every other lease
    when `exclusive` (a fan-out task takes a non-exclusive lease per task; a whole conversion or a merge an exclusive
    one). A lease whose pid is dead on this host, or whose heartbeat is older than WAVEFORMS_LEASE_SECONDS (default
    120), is stale and taken over with a warning. Object storage has no create-if-absent here, so a lease is written,
    then read back after LEASE_SETTLE_SECONDS: of writers racing in that window, the last one holds it.
    """

    def __init__(self, folder_uri: str, name: str, purpose: str, *, exclusive: bool = True):
        self.folder_uri, self.name, self.purpose, self.exclusive = folder_uri, name, purpose, exclusive
        self.uri = join(folder_uri, f"{LEASE_PREFIX}{name}.json")
        self.expiry = float(os.environ.get("WAVEFORMS_LEASE_SECONDS", 120))
        self.token = os.urandom(8).hex()
        self._stop = None
        self._thread = None
        self.lost = False

    def _record(self) -> dict:
        import socket

        return {"owner": self.purpose, "host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                "started": self._started, "heartbeat": time.time()}  # fmt: skip

    @staticmethod
    def _read(uri: str) -> dict | None:
        import json

        try:
            record = json.loads(read_bytes(uri))
        except StorageNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError):
            return {}  # damaged: treated as stale
        return record if isinstance(record, dict) else {}

    def _stale(self, record: dict) -> str | None:
        """Why a lease record no longer holds (-> taken over), or None while its holder is alive."""
        import socket

        if not record or not isinstance(record.get("heartbeat"), int | float):
            return "damaged lease"
        age = time.time() - record["heartbeat"]
        if age > self.expiry:
            return f"heartbeat {age:.0f} s old (limit {self.expiry:.0f} s)"
        if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int):
            try:
                os.kill(record["pid"], 0)
            except ProcessLookupError:
                return f"pid {record['pid']} is not running"
            except PermissionError:
                pass  # alive, another user's
        return None

    def _describe(self, uri: str, record: dict) -> str:
        age = time.time() - record.get("heartbeat", 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.get("started", 0)))
        return (
            f"{self.folder_uri} is in use: {record.get('owner', '?')} by pid {record.get('pid', '?')} on host "
            f"{record.get('host', '?')} since {started}, heartbeat {age:.0f} s ago ({uri}); wait for it to finish, "
            f"or if that process is gone, the lease is taken over once its heartbeat is {self.expiry:.0f} s old"
        )

    def _conflicting(self) -> list[str]:
        if not self.exclusive:
            return [self.uri, join(self.folder_uri, f"{LEASE_PREFIX}dataset.json")]
        leases = [uri for uri in list_files(self.folder_uri, suffix=".json")
                  if uri.replace(os.sep, "/").rsplit("/", 1)[-1].startswith(LEASE_PREFIX)]  # fmt: skip
        return sorted(set(leases) | {self.uri})

    def acquire(self) -> Lease:
        self._started = time.time()
        for uri in self._conflicting():
            record = self._read(uri)
            if record is None:
                continue
            if record.get("token") == self.token:
                continue
            reason = self._stale(record)
            if reason is None:
                raise LeaseHeldError(self._describe(uri, record))
            log.warning("taking over the stale lease %s of %s pid %s on %s: %s", uri, record.get("owner", "?"),
                        record.get("pid", "?"), record.get("host", "?"), reason)  # fmt: skip
            if uri != self.uri:
                delete(uri)
        self._write()
        time.sleep(LEASE_SETTLE_SECONDS)
        record = self._read(self.uri)
        if not record or record.get("token") != self.token:
            raise LeaseHeldError(self._describe(self.uri, record or {}))
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _write(self) -> None:
        import json

        write_bytes(self.uri, json.dumps(self._record(), sort_keys=True).encode())

    def _beat(self) -> None:
        while not self._stop.wait(self.expiry / 4):
            try:
                record = self._read(self.uri)
                if not record or record.get("token") != self.token:
                    self.lost = True
                    log.error("lost the lease %s: another process took it over", self.uri)
                    return
                self._write()
            except StorageError as error:  # a transient outage: try again at the next beat
                log.warning("lease heartbeat %s failed: %s", self.uri, error)

    def check(self) -> None:
        """Raise LeaseHeldError if another process has taken the lease over (before publishing anything)."""
        record = self._read(self.uri)
        if self.lost or not record or record.get("token") != self.token:
            raise LeaseHeldError(
                f"lost the lease on {self.folder_uri} to another process: stopping before writing anything more"
            )

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
            self._stop = None
        try:
            record = self._read(self.uri)
            if record and record.get("token") == self.token:
                delete(self.uri)
        except StorageError as error:
            log.warning("could not remove the lease %s: %s", self.uri, error)

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


# --------------------------------------------------------------------------------------------- listing and metadata


def exists(uri: str) -> bool:
    if not is_remote(uri):
        return os.path.exists(_local_path(uri))
    settings, client, bucket, key = _remote(uri)
    try:
        _call(settings, "stat", uri, lambda: client.stat_object(bucket, _object_key(uri)))
        return True
    except StorageNotFoundError:
        return False


def size(uri: str) -> int | None:
    """Bytes in a file/object, or None if there is none (one stat / HEAD; for cheap integrity checks)."""
    if not is_remote(uri):
        path = _local_path(uri)
        return os.path.getsize(path) if os.path.isfile(path) else None
    settings, client, bucket, key = _remote(uri)
    try:
        return _call(settings, "stat", uri, lambda: client.stat_object(bucket, _object_key(uri))).size
    except StorageNotFoundError:
        return None


def list_files(prefix_uri: str, suffix: str | None = None) -> list[str]:
    """Every file/object under a directory or key prefix (recursive), sorted, as URIs of the same form."""
    if not is_remote(prefix_uri):
        root = _local_path(prefix_uri)
        found = []
        for directory, _, names in os.walk(root):
            for name in names:
                if name.endswith(TEMP_SUFFIX) or (suffix and not name.endswith(suffix)):
                    continue
                relative = os.path.relpath(os.path.join(directory, name), root)
                found.append(join(prefix_uri, *relative.split(os.sep)))
        return sorted(found)
    settings, client, bucket, key = _remote(prefix_uri)
    scheme = parse(prefix_uri)[0]
    directory = key if not key or key.endswith("/") else key + "/"
    objects = _call(
        settings,
        "list",
        prefix_uri,
        lambda: list(client.list_objects(bucket, prefix=directory or None, recursive=True)),
    )
    names = (obj.object_name for obj in objects if not obj.is_dir and not obj.object_name.endswith("/"))
    return sorted(f"{scheme}://{bucket}/{name}" for name in names if not suffix or name.endswith(suffix))


CONTENT_KEY_BYTES = 64 * 1024


def content_key(uri: str) -> tuple[int, str]:
    """(size, a hex key of the content) of a file/object: the same however it is named. Local files hash their size,
    first and last 64 KiB (cheap for any size); objects use the etag the server computed from the content."""
    if is_remote(uri):
        settings, client, bucket, key = _remote(uri)
        stat = _call(settings, "stat", uri, lambda: client.stat_object(bucket, key))
        return stat.size, hashlib.sha256(f"{stat.size}:{(stat.etag or '').strip(chr(34))}".encode()).hexdigest()
    path = _local_path(uri)
    if not os.path.isfile(path):  # a FIFO would block the read; links that lead nowhere fail as items later
        raise OSError(f"{uri}: not a regular file")
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(CONTENT_KEY_BYTES))
        if size > CONTENT_KEY_BYTES:
            handle.seek(max(CONTENT_KEY_BYTES, size - CONTENT_KEY_BYTES))
            digest.update(handle.read(CONTENT_KEY_BYTES))
    return size, digest.hexdigest()


def _fingerprint(uri: str) -> tuple[int, str] | None:
    """(size, etag) of a file/object or None if absent; local files get the etag an S3 upload of them would have."""
    if is_remote(uri):
        settings, client, bucket, key = _remote(uri)
        try:
            stat = _call(settings, "stat", uri, lambda: client.stat_object(bucket, key))
        except StorageNotFoundError:
            return None
        return stat.size, (stat.etag or "").strip('"')
    path = _local_path(uri)
    if not os.path.isfile(path):
        return None
    part_digests = []
    with open(path, "rb") as handle:
        while chunk := handle.read(PART_SIZE):
            part_digests.append(hashlib.md5(chunk, usedforsecurity=False).digest())
    size = os.path.getsize(path)
    if len(part_digests) <= 1:
        etag = (part_digests[0] if part_digests else hashlib.md5(b"", usedforsecurity=False).digest()).hex()
    else:
        etag = hashlib.md5(b"".join(part_digests), usedforsecurity=False).hexdigest() + f"-{len(part_digests)}"
    return size, etag


# --------------------------------------------------------------------------------------------- copy, delete, sync


def copy(src: str, dst: str) -> None:
    """Copy one file/object between any two locations; remote to remote is a server-side copy."""
    if is_remote(src) and is_remote(dst):
        src_settings, client, src_bucket, src_key = _remote(src)
        _, _, dst_bucket, dst_key = _remote(dst)
        from minio.commonconfig import CopySource

        size = _call(src_settings, "stat", src, lambda: client.stat_object(src_bucket, src_key)).size
        if size <= COPY_OBJECT_LIMIT:
            _call(
                src_settings,
                "copy",
                f"{src} -> {dst}",
                lambda: client.copy_object(dst_bucket, _object_key(dst), CopySource(src_bucket, src_key)),
            )
            return
    if is_remote(dst) and not is_remote(src):
        upload_file(_local_path(src), dst)
    elif is_remote(src) and not is_remote(dst):
        download_file(src, _local_path(dst))
    elif not is_remote(src):
        write_stream(dst, lambda: open_read(src), os.path.getsize(_local_path(src)))
    else:  # remote to remote beyond the single-copy limit: stream through a local temp file
        with tempfile.TemporaryDirectory() as scratch:
            download_file(src, os.path.join(scratch, "object"))
            upload_file(os.path.join(scratch, "object"), dst)


def delete(uri: str) -> None:
    """Remove one file/object; removing what does not exist is not an error."""
    if not is_remote(uri):
        try:
            os.remove(_local_path(uri))
        except FileNotFoundError:
            pass
        return
    settings, client, bucket, key = _remote(uri)
    _call(settings, "delete", uri, lambda: client.remove_object(bucket, _object_key(uri)))


def _sync(src_root: str, dst_root: str) -> list[str]:
    copied = []
    for src in list_files(src_root):
        relative = (
            src[len(src_root.rstrip("/")) + 1 :] if "://" in src_root else os.path.relpath(src, _local_path(src_root))
        )
        dst = join(dst_root, *relative.replace(os.sep, "/").split("/"))
        if _fingerprint(src) != _fingerprint(dst):
            copy(src, dst)
            copied.append(dst)
    return copied


def sync_dir_up(local_dir: str, uri: str) -> list[str]:
    """Copy every file under local_dir to uri/<relative path> unless an identical one is there; -> what was copied.

    Each object is atomic, the set is not: write a marker (e.g. the checkpoint index) last when that matters.
    """
    if not os.path.isdir(_local_path(local_dir)):
        raise StorageNotFoundError(f"{local_dir} is not a directory")
    return _sync(local_dir, uri)


def sync_dir_down(uri: str, local_dir: str) -> list[str]:
    """Copy every object under uri to local_dir/<relative key> unless an identical file is there; -> local paths."""
    return _sync(uri, local_dir)
