"""storage.py against a real S3 server (SeaweedFS on 127.0.0.1, credentials enforced) and local paths."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
import time

import pytest
from s3server import SeaweedServer

from waveforms import storage

MIB = 1024 * 1024


def random_bytes(size: int, seed: int) -> bytes:
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


# --------------------------------------------------------------------------------------------------- URIs and config


def test_uri_helpers():
    assert storage.parse("s3://bucket/a/b.tfrecord") == ("s3", "bucket", "a/b.tfrecord")
    assert storage.parse("minio://bucket/a") == ("minio", "bucket", "a")
    assert storage.parse("file:///tmp/x") == ("file", "", "/tmp/x")
    assert storage.parse("rel/x") == ("file", "", "rel/x")
    assert storage.is_remote("minio://b/k") and storage.is_remote("s3://b/k") and not storage.is_remote("/tmp/x")
    assert storage.join("s3://b/data/", "train", "x.tfrecord") == "s3://b/data/train/x.tfrecord"
    assert storage.join("/tmp/data", "x") == "/tmp/data/x"
    assert storage.parent("s3://b/data/manifest.json") == "s3://b/data"
    assert storage.parent("s3://b/manifest.json") == "s3://b"
    assert storage.parent("manifest.json") == "."
    with pytest.raises(storage.StorageConfigError, match="unsupported scheme 'gs'"):
        storage.parse("gs://b/k")
    with pytest.raises(storage.StorageConfigError, match="no bucket"):
        storage.parse("s3:///k")


def test_settings_come_from_kubeflow_and_aws_names():
    kfp_style = storage.S3Settings.from_env(
        {
            "MINIO_ENDPOINT": "minio-service.kubeflow:9000",
            "S3_USE_HTTPS": "0",
            "accesskey": "minio",
            "secretkey": "s3cret",
        }
    )
    assert (kfp_style.endpoint, kfp_style.secure) == ("minio-service.kubeflow:9000", False)
    assert kfp_style.access_key == "minio"
    aws_style = storage.S3Settings.from_env(
        {
            "AWS_ENDPOINT_URL": "https://s3.example.test",
            "AWS_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "AKIA",
            "AWS_SECRET_ACCESS_KEY": "s3cret",
        }
    )
    assert (aws_style.endpoint, aws_style.secure, aws_style.region) == ("s3.example.test", True, "eu-west-1")
    assert "s3cret" not in repr(aws_style)  # secrets never reach logs through repr
    with pytest.raises(storage.StorageConfigError, match="S3_ENDPOINT"):
        storage.S3Settings.from_env({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    with pytest.raises(storage.StorageConfigError, match="MINIO_SECRET_KEY is not"):
        storage.S3Settings.from_env({"S3_ENDPOINT": "h:1", "MINIO_ACCESS_KEY": "a"})
    with pytest.raises(storage.StorageConfigError, match="credentials not configured"):
        storage.S3Settings.from_env({"S3_ENDPOINT": "h:1"})


# -------------------------------------------------------------------------------------------------------- local paths


def test_local_round_trip_listing_copy_and_sync(tmp_path):
    root = tmp_path / "data"
    storage.write_bytes(str(root / "a" / "one.bin"), b"one")
    storage.write_bytes(f"file://{root}/b/two.txt", b"two")
    assert storage.read_bytes(str(root / "a" / "one.bin")) == b"one"
    assert storage.list_files(str(root)) == [str(root / "a" / "one.bin"), str(root / "b" / "two.txt")]
    assert storage.list_files(str(root), suffix=".txt") == [str(root / "b" / "two.txt")]
    assert not [name for name in os.listdir(root / "a") if name.startswith(".")]  # no temp file left behind
    storage.copy(str(root / "a" / "one.bin"), str(tmp_path / "copy.bin"))
    assert (tmp_path / "copy.bin").read_bytes() == b"one"
    assert storage.sync_dir_up(str(root), str(tmp_path / "mirror")) == [
        str(tmp_path / "mirror" / "a" / "one.bin"),
        str(tmp_path / "mirror" / "b" / "two.txt"),
    ]
    assert storage.sync_dir_up(str(root), str(tmp_path / "mirror")) == []
    storage.delete(str(root / "a" / "one.bin"))
    storage.delete(str(root / "a" / "one.bin"))  # deleting what is gone is fine
    assert not storage.exists(str(root / "a" / "one.bin"))
    with pytest.raises(storage.StorageNotFoundError):
        storage.read_bytes(str(root / "missing"))


def test_local_write_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.bin"
    storage.write_bytes(str(target), b"old version")

    def failing_stream():
        class Failing(io.RawIOBase):
            def readinto(self, buffer):
                raise OSError("disk went away")

        return Failing()

    with pytest.raises(OSError, match="disk went away"):
        storage.write_stream(str(target), failing_stream, 100)
    assert target.read_bytes() == b"old version"
    assert os.listdir(tmp_path) == ["model.bin"]


def test_atomic_path_publishes_only_a_finished_file(tmp_path):
    target = tmp_path / "deep" / "clip.wav"
    with storage.atomic_path(target) as temporary:
        assert os.path.dirname(temporary) == str(target.parent) and os.path.basename(temporary).startswith(".")
        assert temporary.endswith(storage.TEMP_SUFFIX)  # list_files never shows it
        with open(temporary, "wb") as handle:
            handle.write(b"first")
        assert not target.exists()  # nothing under the final name until the block ends
    assert target.read_bytes() == b"first"
    with pytest.raises(RuntimeError, match="encoder crashed"):
        with storage.atomic_path(target) as temporary:
            with open(temporary, "wb") as handle:
                handle.write(b"half")
            raise RuntimeError("encoder crashed")
    assert target.read_bytes() == b"first"
    assert os.listdir(target.parent) == ["clip.wav"]


# ------------------------------------------------------------------------------------------------------ object storage


def test_round_trip_listing_exists_copy_delete(s3_env, s3_prefix, tmp_path):
    storage.write_bytes(f"{s3_prefix}/x/one.bin", b"one")
    storage.write_bytes(f"{s3_prefix}/x/sub/two.txt", b"two")
    storage.write_bytes(f"{s3_prefix}/xy/other.txt", b"not under x/")
    assert storage.read_bytes(f"{s3_prefix}/x/one.bin") == b"one"
    minio_form = s3_prefix.replace("s3://", "minio://")
    assert storage.read_bytes(f"{minio_form}/x/sub/two.txt") == b"two"  # KFP's scheme names the same objects
    assert storage.list_files(f"{s3_prefix}/x") == [f"{s3_prefix}/x/one.bin", f"{s3_prefix}/x/sub/two.txt"]
    assert storage.list_files(f"{minio_form}/x/", suffix=".txt") == [f"{minio_form}/x/sub/two.txt"]
    assert storage.list_files(f"{s3_prefix}/nothing-here") == []
    assert storage.exists(f"{s3_prefix}/x/one.bin") and not storage.exists(f"{s3_prefix}/x/none.bin")
    storage.copy(f"{s3_prefix}/x/one.bin", f"{s3_prefix}/copied.bin")
    assert storage.read_bytes(f"{s3_prefix}/copied.bin") == b"one"
    storage.copy(f"{s3_prefix}/x/sub/two.txt", str(tmp_path / "down" / "two.txt"))
    assert (tmp_path / "down" / "two.txt").read_bytes() == b"two"
    storage.delete(f"{s3_prefix}/copied.bin")
    storage.delete(f"{s3_prefix}/copied.bin")
    assert not storage.exists(f"{s3_prefix}/copied.bin")
    with pytest.raises(storage.StorageNotFoundError, match="none.bin"):
        storage.read_bytes(f"{s3_prefix}/x/none.bin")
    with pytest.raises(storage.StorageNotFoundError, match="no-such-bucket"):
        storage.read_bytes("s3://no-such-bucket/k")


def test_large_object_is_multipart_and_streams_back_intact(s3_env, s3_prefix, tmp_path):
    data = random_bytes(20 * MIB + 12345, seed=1)  # > 16 MiB: three parts of PART_SIZE
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    storage.upload_file(str(source), f"{s3_prefix}/big.bin")
    size, etag = storage._fingerprint(f"{s3_prefix}/big.bin")
    assert size == len(data) and etag.endswith("-3")  # the server saw a 3-part multipart upload
    assert storage._fingerprint(str(source)) == (size, etag)
    digest = hashlib.sha256()
    with storage.open_read(f"{s3_prefix}/big.bin") as stream:
        while chunk := stream.read(1_000_003):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    storage.download_file(f"{s3_prefix}/big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data


def test_sync_checkpoint_directory_up_and_down(s3_env, s3_prefix, tmp_path):
    local = tmp_path / "ckpt"
    (local / "variables").mkdir(parents=True)
    (local / "variables" / "data.bin").write_bytes(random_bytes(9 * MIB, seed=2))  # multipart
    (local / "config.json").write_text('{"layers": 20}')
    uploaded = storage.sync_dir_up(str(local), f"{s3_prefix}/ckpt")
    assert uploaded == [f"{s3_prefix}/ckpt/config.json", f"{s3_prefix}/ckpt/variables/data.bin"]
    assert storage.sync_dir_up(str(local), f"{s3_prefix}/ckpt") == []  # unchanged: nothing re-sent
    (local / "config.json").write_text('{"layers": 30}')
    assert storage.sync_dir_up(str(local), f"{s3_prefix}/ckpt") == [f"{s3_prefix}/ckpt/config.json"]
    restored = tmp_path / "restored"
    assert len(storage.sync_dir_down(f"{s3_prefix}/ckpt", str(restored))) == 2
    assert (restored / "config.json").read_text() == '{"layers": 30}'
    assert (restored / "variables" / "data.bin").read_bytes() == (local / "variables" / "data.bin").read_bytes()
    assert storage.sync_dir_down(f"{s3_prefix}/ckpt", str(restored)) == []


def test_wrong_credentials_name_endpoint_and_key_id_not_secret(s3_server, s3_env, s3_prefix, monkeypatch):
    storage.write_bytes(f"{s3_prefix}/k", b"v")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "definitely-wrong-secret")
    with pytest.raises(storage.StorageAuthError) as wrong_secret:
        storage.read_bytes(f"{s3_prefix}/k")
    message = str(wrong_secret.value)
    assert s3_server.endpoint in message and repr(s3_server.access_key) in message
    assert "definitely-wrong-secret" not in message and s3_server.secret_key not in message
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    for action in (
        lambda: storage.write_bytes(f"{s3_prefix}/k2", b"v"),
        lambda: storage.list_files(s3_prefix),
        lambda: storage.exists(f"{s3_prefix}/k"),
    ):
        with pytest.raises(storage.StorageAuthError, match="refused access key id 'nobody'"):
            action()


def test_unreachable_endpoint_fails_fast_and_clearly(s3_env, monkeypatch):
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("S3_ENDPOINT", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(storage.StorageUnreachableError, match=f"127.0.0.1:{port}.*after 5 attempt"):
        storage.read_bytes("s3://bucket/key")
    assert time.monotonic() - started < 10  # bounded backoff, not a minute-long hang

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("S3_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("WAVEFORMS_S3_READ_TIMEOUT", "0.5")
        monkeypatch.setenv("WAVEFORMS_S3_ATTEMPTS", "2")
        started = time.monotonic()
        with pytest.raises(storage.StorageUnreachableError, match="after 2 attempt"):
            storage.exists("s3://bucket/key")
        assert time.monotonic() - started < 5


# ------------------------------------------------------------------------------------------- crash during an upload


class KillAfter(io.RawIOBase):
    """A readable stream over `data` that calls `on_threshold` once, when the reader passes `threshold` bytes."""

    def __init__(self, data: bytes, threshold: int, on_threshold):
        self.data, self.position, self.threshold, self.on_threshold = data, 0, threshold, on_threshold

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.position >= self.threshold and self.on_threshold:
            action, self.on_threshold = self.on_threshold, None
            action()
        count = min(len(buffer), len(self.data) - self.position)
        buffer[:count] = self.data[self.position : self.position + count]
        self.position += count
        return count


@pytest.fixture
def own_server(tmp_path, monkeypatch):
    """A private SeaweedFS (we kill it) with its variables in os.environ."""
    server = SeaweedServer(tmp_path / "own-s3")
    server.start()
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    yield server
    server.kill()  # its data is thrown away with tmp_path


@pytest.mark.integration
def test_server_killed_mid_upload_leaves_old_object_intact(own_server, monkeypatch):
    uri = f"s3://{own_server.bucket}/models/weights.bin"
    old, new = random_bytes(1 * MIB, seed=3), random_bytes(3 * storage.PART_SIZE, seed=4)
    storage.write_bytes(uri, old)
    monkeypatch.setenv("WAVEFORMS_S3_ATTEMPTS", "3")
    # The kill lands while the uploader reads part 2: part 1 is already on the server, the upload never completes.
    with pytest.raises(storage.StorageUnreachableError, match="weights.bin"):
        storage.write_stream(uri, lambda: KillAfter(new, storage.PART_SIZE + MIB, own_server.kill), len(new))
    own_server.start()  # same data directory and ports: what did the crash leave behind?
    # a restarted server may answer InternalError until its volume is back: retry longer than during the kill
    monkeypatch.setenv("WAVEFORMS_S3_ATTEMPTS", "8")
    assert storage.read_bytes(uri) == old
    assert storage.list_files(f"s3://{own_server.bucket}/models") == [uri]
    fresh = f"s3://{own_server.bucket}/models/fresh.bin"  # a key that never existed stays absent
    monkeypatch.setenv("WAVEFORMS_S3_ATTEMPTS", "3")
    with pytest.raises(storage.StorageUnreachableError):
        storage.write_stream(fresh, lambda: KillAfter(new, storage.PART_SIZE + MIB, own_server.kill), len(new))
    own_server.start()
    monkeypatch.setenv("WAVEFORMS_S3_ATTEMPTS", "8")
    assert not storage.exists(fresh)
    assert storage.list_files(f"s3://{own_server.bucket}/models") == [uri]


@pytest.mark.integration
def test_server_restarted_during_upload_is_retried_to_completion(own_server, monkeypatch):
    uri = f"s3://{own_server.bucket}/shards/train-00000.tfrecord"
    data = random_bytes(3 * storage.PART_SIZE, seed=5)
    monkeypatch.setenv("WAVEFORMS_S3_ATTEMPTS", "8")  # backoff 0.25..16 s: outlasts a 1-2 s restart

    def crash_and_recover():
        own_server.kill()
        threading.Thread(target=own_server.start, daemon=True).start()

    attempts = []

    def open_stream():
        attempts.append(1)
        return KillAfter(data, storage.PART_SIZE + MIB, crash_and_recover if len(attempts) == 1 else None)

    storage.write_stream(uri, open_stream, len(data))
    assert len(attempts) >= 2  # the first attempt died with the server, a later one completed
    assert storage.read_bytes(uri) == data


@pytest.mark.integration
def test_streaming_read_resumes_after_the_server_restarts(own_server, monkeypatch):
    # as the upload test: once in CI the default 5 tries (3.75 s of backoff) ended before the restarted server served
    monkeypatch.setenv("WAVEFORMS_S3_ATTEMPTS", "8")
    uri = f"s3://{own_server.bucket}/shards/long.tfrecord"
    data = random_bytes(24 * MIB, seed=6)
    storage.write_bytes(uri, data)
    with storage.open_read(uri) as stream:
        head = stream.read(2 * MIB)
        own_server.kill()  # the open connection dies with the server
        threading.Thread(target=own_server.start, daemon=True).start()
        rest = stream.read()  # resumes with a Range GET at the current offset once the server is back
    assert hashlib.sha256(head + rest).digest() == hashlib.sha256(data).digest()
