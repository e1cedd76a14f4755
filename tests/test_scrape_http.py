"""PoliteFetcher against a real loopback server that injects faults (tests/fma_server.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import fma_server
import pytest
from fma_server import Fault, FmaServer, Track, id3_tagged

from waveforms.scrape.http import FetchError, FetchPolicy, PoliteFetcher, check_mp3, parse_retry_after

base_mp3 = fma_server.base_mp3  # pytest fixtures shared with the other scrape tests
loopback_only = fma_server.loopback_only


def fast_policy(**overrides) -> FetchPolicy:
    settings = dict(allowed_hosts=("127.0.0.1",), allow_loopback=True, requests_per_second=200.0, connect_timeout=2.0,
                    read_timeout=2.0, max_retries=3, backoff_base=0.01, backoff_max=0.05)  # fmt: skip
    settings.update(overrides)
    return FetchPolicy(**settings)


@pytest.fixture
def server(base_mp3):
    tracks = [Track(1, "One", "A", "Rock", id3_tagged(base_mp3, "One")),
              Track(2, "Two", "B", "Rock", id3_tagged(base_mp3, "Two")),
              Track(3, "Hidden", "C", "Rock", id3_tagged(base_mp3, "Hidden"), private=True)]  # fmt: skip
    with FmaServer(tracks) as running:
        yield running


def test_default_policy_is_at_most_one_request_per_second():
    assert FetchPolicy(allowed_hosts=("freemusicarchive.org",)).requests_per_second <= 1.0
    with pytest.raises(ValueError, match="allowed_hosts"):
        FetchPolicy(allowed_hosts=())


def test_parse_retry_after_seconds_and_http_date():
    now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_hosts_and_addresses_are_checked_before_connecting(loopback_only):
    fetcher = PoliteFetcher(fast_policy(allowed_hosts=("127.0.0.1", "10.0.0.1")))
    with pytest.raises(FetchError) as refused:
        fetcher.check_url("http://other.example/x.mp3")
    assert refused.value.reason == "host-not-allowed"
    with pytest.raises(FetchError) as private:
        fetcher.check_url("http://10.0.0.1/x.mp3")  # configured, but a private address
    assert private.value.reason == "address-not-allowed"
    with pytest.raises(FetchError) as scheme:
        fetcher.check_url("file:///etc/passwd")
    assert scheme.value.reason == "scheme-not-allowed"
    strict = PoliteFetcher(fast_policy(allowed_hosts=("localhost", "127.0.0.1"), allow_loopback=False))
    for url in ("http://localhost/x", "http://127.0.0.1/x"):
        with pytest.raises(FetchError) as loopback:
            strict.check_url(url)
        assert loopback.value.reason == "address-not-allowed"
    assert loopback_only == []


def test_redirect_to_disallowed_host_is_refused_and_never_contacted(server, tmp_path, loopback_only):
    server.add_fault("/files/1.mp3", Fault("redirect", location="http://10.0.0.1/steal.mp3", times=None))
    server.add_fault("/files/2.mp3", Fault("redirect", location="http://127.0.0.1.nip.example/x.mp3", times=None))
    fetcher = PoliteFetcher(fast_policy())
    for track_id in (1, 2):
        with pytest.raises(FetchError) as refused:
            fetcher.download(f"{server.base_url}/files/{track_id}.mp3", tmp_path / f"{track_id}.mp3", progress=False)
        assert refused.value.reason == "host-not-allowed"
        assert len(server.requests_to(f"/files/{track_id}.mp3")) == 1  # refused, not retried
    assert loopback_only == []  # no connection attempt left loopback
    assert list(tmp_path.iterdir()) == []


def test_redirect_to_another_port_of_an_allowed_host_is_refused_and_never_contacted(server, base_mp3, tmp_path):
    other = FmaServer([Track(1, "One", "A", "Rock", base_mp3)])  # another service on the same host
    with other:
        server.add_fault("/files/1.mp3", Fault("redirect", location=f"{other.base_url}/files/1.mp3", times=None))
        with pytest.raises(FetchError) as refused:
            PoliteFetcher(fast_policy()).download(f"{server.base_url}/files/1.mp3", tmp_path / "1.mp3", progress=False)
        assert refused.value.reason == "port-not-allowed"
        assert other.log == [] and len(server.requests_to("/files/1.mp3")) == 1
    assert list(tmp_path.iterdir()) == []


def test_retry_after_is_honoured(server, tmp_path):
    server.add_fault("/files/1.mp3", Fault("status", status=429, headers={"Retry-After": "1"}))
    server.add_fault("/files/2.mp3", Fault("status", status=503, headers={"Retry-After": "1"}))
    fetcher = PoliteFetcher(fast_policy())
    for track_id in (1, 2):
        result = fetcher.download(
            f"{server.base_url}/files/{track_id}.mp3", tmp_path / f"{track_id}.mp3", progress=False
        )
        first, second = server.requests_to(f"/files/{track_id}.mp3")
        assert (first.status, second.status) == ((429, 200) if track_id == 1 else (503, 200))
        assert second.time - first.time >= 1.0
        assert result.path.read_bytes() == server.tracks[track_id - 1].audio


def test_retry_after_beyond_the_cap_fails_without_waiting(server, tmp_path):
    server.add_fault("/files/1.mp3", Fault("status", status=429, headers={"Retry-After": "3600"}, times=None))
    started = time.monotonic()
    with pytest.raises(FetchError, match="exceeds the cap"):
        PoliteFetcher(fast_policy(retry_after_cap=5)).download(f"{server.base_url}/files/1.mp3", tmp_path / "1.mp3")
    assert time.monotonic() - started < 1.0
    assert len(server.requests_to("/files/1.mp3")) == 1


@pytest.mark.parametrize(
    "fault",
    [Fault("status", status=500, times=2), Fault("reset"), Fault("truncate", keep_bytes=1000),
     Fault("slow", delay=0.6)],
    ids=["500", "reset", "truncated", "slow"],
)  # fmt: skip
def test_transient_faults_are_retried_and_only_complete_files_kept(server, tmp_path, fault):
    server.add_fault("/files/1.mp3", fault)
    fetcher = PoliteFetcher(fast_policy(read_timeout=0.3))
    result = fetcher.download(f"{server.base_url}/files/1.mp3", tmp_path / "1.mp3", validate=check_mp3, progress=False)
    assert result.path.read_bytes() == server.tracks[0].audio
    assert [p.name for p in tmp_path.iterdir()] == ["1.mp3"]
    assert len(server.requests_to("/files/1.mp3")) >= 2


def test_body_cut_under_an_honest_content_length_is_caught_by_the_mp3_check(server, tmp_path):
    server.add_fault("/files/1.mp3", Fault("short_length", keep_bytes=2001, times=None))
    with pytest.raises(FetchError) as cut:
        PoliteFetcher(fast_policy()).download(f"{server.base_url}/files/1.mp3", tmp_path / "1.mp3", validate=check_mp3)
    assert cut.value.reason == "truncated-mp3"
    assert list(tmp_path.iterdir()) == []  # neither a final file nor a .part


def test_retries_give_up_and_report(server, tmp_path):
    server.add_fault("/files/1.mp3", Fault("status", status=500, times=None))
    with pytest.raises(FetchError) as failed:
        PoliteFetcher(fast_policy(max_retries=2)).download(f"{server.base_url}/files/1.mp3", tmp_path / "1.mp3")
    assert failed.value.reason == "http-500"
    assert len(server.requests_to("/files/1.mp3")) == 3


def test_max_size_from_content_length_and_from_streamed_bytes(server, tmp_path):
    fetcher = PoliteFetcher(fast_policy(max_file_bytes=1000))
    with pytest.raises(FetchError) as declared:
        fetcher.download(f"{server.base_url}/files/1.mp3", tmp_path / "1.mp3")
    assert declared.value.reason == "too-large" and "Content-Length" in declared.value.detail
    server.add_fault("/files/2.mp3", Fault("no_length"))
    with pytest.raises(FetchError) as streamed:
        fetcher.download(f"{server.base_url}/files/2.mp3", tmp_path / "2.mp3", progress=False)
    assert streamed.value.reason == "too-large" and "streamed" in streamed.value.detail
    assert list(tmp_path.iterdir()) == []
    assert len(server.requests_to("/files/")) == 2  # not retried


def test_content_type_mismatch_is_rejected(server, tmp_path):
    server.add_fault("/files/1.mp3", Fault("content_type", content_type="text/html"))
    fetcher = PoliteFetcher(fast_policy())
    with pytest.raises(FetchError) as audio:
        fetcher.download(f"{server.base_url}/files/1.mp3", tmp_path / "1.mp3")
    assert audio.value.reason == "content-type" and "text/html" in audio.value.detail
    with pytest.raises(FetchError) as page:
        fetcher.get_text(f"{server.base_url}/files/2.mp3")  # HTML expected, audio served
    assert page.value.reason == "content-type"
    assert list(tmp_path.iterdir()) == []


def test_robots_txt_is_honoured(server):
    fetcher = PoliteFetcher(fast_policy())
    hidden = server.tracks[2]
    with pytest.raises(FetchError) as refused:
        fetcher.get_text(server.base_url + hidden.page_path)
    assert refused.value.reason == "robots-disallowed"
    assert server.requests_to("/private/") == []
    assert fetcher.get_text(server.base_url + server.tracks[0].page_path).text.startswith("<!DOCTYPE html>")
    assert len(server.requests_to("/robots.txt")) == 1  # cached per host


def test_unreachable_robots_txt_disallows_everything(server):
    server.add_fault("/robots.txt", Fault("status", status=500, times=None))
    with pytest.raises(FetchError) as refused:
        PoliteFetcher(fast_policy(max_retries=1)).get_text(server.base_url + server.tracks[0].page_path)
    assert refused.value.reason == "robots-unavailable" and "http-500" in refused.value.detail
    assert server.requests_to("/music/") == []


def test_rate_limit_spaces_requests_per_host(server):
    fetcher = PoliteFetcher(fast_policy(requests_per_second=10.0))
    for _ in range(5):
        fetcher.get_text(server.base_url + server.tracks[0].page_path)
    times = [r.time for r in server.log]  # robots.txt + 5 pages
    # arrival times carry scheduling jitter on a loaded machine, which shifts single gaps but not the whole span:
    # 6 requests at 10/s cannot arrive within less than 5 intervals (minus the first request's latency)
    assert len(times) == 6 and times[-1] - times[0] >= 5 * 0.1 - 0.03, times


def test_check_mp3(base_mp3, tmp_path):
    whole, cut, text = tmp_path / "whole.mp3", tmp_path / "cut.mp3", tmp_path / "text.mp3"
    whole.write_bytes(id3_tagged(base_mp3, "x"))
    cut.write_bytes(base_mp3[: len(base_mp3) // 2 + 7])
    text.write_bytes(b"<html>not audio</html>")
    check_mp3(whole)
    with pytest.raises(FetchError, match="truncated-mp3"):
        check_mp3(cut)
    with pytest.raises(FetchError, match="not-mp3"):
        check_mp3(text)


class _HostRecordingServer:
    """A loopback server (plain or TLS) answering every GET with a small HTML page; records Host headers and the TLS
    server names (SNI) it was sent."""

    def __init__(self, tls_context=None):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.hosts: list[str] = []
        self.server_names: list[str | None] = []
        hosts = self.hosts

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hosts.append(self.headers.get("Host", ""))
                body = b"<html><body>pinned</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls_context is not None:
            tls_context.sni_callback = lambda sock, name, context: self.server_names.append(name)
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def host_header_server():
    server = _HostRecordingServer()
    yield server.port, server.hosts
    server.close()


def _self_signed_certificate(folder, host: str):
    """A throwaway certificate and key for `host`, made in the test."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _rebinding_resolver(monkeypatch, port: int) -> list[str]:
    """rebinding.test answers 127.0.0.1 once (the check), then a private address; every answer is recorded."""
    import socket

    real_getaddrinfo, answers = socket.getaddrinfo, []

    def rebinding(host, *args, **kwargs):
        if host != "rebinding.test":
            return real_getaddrinfo(host, *args, **kwargs)
        answers.append("127.0.0.1" if not answers else "10.0.0.7")  # allowed first, private afterwards
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[-1], port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    return answers


def test_connection_goes_to_the_checked_address_not_a_rebound_dns_answer(
    monkeypatch, loopback_only, host_header_server
):
    """DNS rebinding: the name resolves to an allowed address when checked and to a private one a moment later. The
    connection must go to the checked address (the guard records any other attempt), with the name kept as Host."""
    port, hosts = host_header_server
    answers = _rebinding_resolver(monkeypatch, port)
    fetcher = PoliteFetcher(fast_policy(allowed_hosts=("rebinding.test",), respect_robots=False, max_retries=0))
    page = fetcher.get_text(f"http://rebinding.test:{port}/page")
    assert page.text == "<html><body>pinned</body></html>"
    assert hosts == [f"rebinding.test:{port}"]
    assert loopback_only == [] and answers == ["127.0.0.1"]  # resolved once, by the check; never again to connect
    # a fresh check that now sees the private answer refuses before connecting
    with pytest.raises(FetchError) as refused:
        fetcher.get_text(f"http://rebinding.test:{port}/again")
    assert refused.value.reason == "address-not-allowed" and hosts == [f"rebinding.test:{port}"]


def test_a_request_that_skipped_the_check_is_refused(host_header_server):
    import requests

    port, hosts = host_header_server
    fetcher = PoliteFetcher(fast_policy())
    with pytest.raises(requests.ConnectionError, match="never checked"):
        fetcher.session.get(f"http://127.0.0.1:{port}/unchecked", timeout=2)
    assert hosts == []


def test_tls_connection_to_the_pinned_address_keeps_the_name_for_sni_and_the_certificate(
    monkeypatch, loopback_only, tmp_path
):
    import ssl

    cert_path, key_path = _self_signed_certificate(tmp_path, "rebinding.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    server = _HostRecordingServer(context)
    try:
        answers = _rebinding_resolver(monkeypatch, server.port)
        fetcher = PoliteFetcher(fast_policy(allowed_hosts=("rebinding.test",), respect_robots=False, max_retries=0))
        fetcher.session.verify = str(cert_path)  # trust only the throwaway certificate, issued to the name
        page = fetcher.get_text(f"https://rebinding.test:{server.port}/secure")
    finally:
        server.close()
    assert page.text == "<html><body>pinned</body></html>"
    assert server.server_names == ["rebinding.test"] and server.hosts == [f"rebinding.test:{server.port}"]
    assert loopback_only == [] and answers == ["127.0.0.1"]
