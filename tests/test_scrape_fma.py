"""The FMA website scraper end to end against the fault-injecting loopback FMA (tests/fma_server.py)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fma_server
import pytest
from fma_server import Fault, FmaServer, Track, fma_catalogue, id3_tagged

from waveforms.ingest import ingest
from waveforms.scrape.fma import parse_listing, parse_track_page

base_mp3 = fma_server.base_mp3  # pytest fixtures shared with the other scrape tests
loopback_only = fma_server.loopback_only

FAST = dict(allow_loopback=True, requests_per_second=100.0, backoff_base=0.01, connect_timeout=2.0, read_timeout=2.0,
            progress=False)  # fmt: skip


def read_index(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]


@pytest.fixture
def catalogue(base_mp3):
    tracks = fma_catalogue(base_mp3, {"Rock": 5, "Folk": 3})
    # A track the site lists but robots.txt forbids, and a duplicate listing in a second genre.
    tracks.append(Track(900, "Secret", "Hidden Artist", "Rock", id3_tagged(base_mp3, "Secret"), private=True))
    return tracks


def test_parse_listing_and_track_page(catalogue):
    with FmaServer(catalogue, page_size=2) as server:
        listing_url = server.listing_url("Rock", 2)
        listing = parse_listing(server.listing_html("Rock", 2), listing_url)
        rock = server.genre_tracks("Rock")
        assert listing.track_pages == tuple(server.base_url + t.page_path for t in rock[2:4])
        assert listing.last_page == 3  # 6 Rock tracks, 2 per page; the link to another genre is ignored
        page = parse_track_page(server.track_html(rock[0]), server.base_url + rock[0].page_path)
    assert (page.track_id, page.title, page.artist) == ("100", "Rock Song 0 é", "Artist 100")
    assert page.licence == "Attribution-NonCommercial-ShareAlike"
    assert page.licence_url.startswith("https://creativecommons.org/licenses/by-nc-sa/")
    assert page.audio_url == server.base_url + "/files/100.mp3"
    with pytest.raises(ValueError, match="no data-track-info fileUrl"):
        parse_track_page("<html><body><h1>x</h1></body></html>", "http://127.0.0.1/music/x/")


def test_scrape_with_faults_gets_every_reachable_track_once_and_resumes(catalogue, tmp_path, loopback_only):
    out = tmp_path / "out"
    rock, folk = [t for t in catalogue if t.genre == "Rock"], [t for t in catalogue if t.genre == "Folk"]
    with FmaServer(catalogue, page_size=2) as server:
        server.add_fault(rock[0].file_path, Fault("status", status=500, times=2))
        server.add_fault(rock[1].file_path, Fault("reset"))
        server.add_fault(rock[2].file_path, Fault("truncate", keep_bytes=1500))
        server.add_fault(rock[3].file_path, Fault("redirect", location="http://10.0.0.1/grab.mp3", times=None))
        server.add_fault(folk[0].page_path, Fault("status", status=503, headers={"Retry-After": "0"}))
        server.add_fault(folk[1].file_path, Fault("short_length", keep_bytes=2222, times=None))
        result = ingest("fma", str(out), genres=["Rock", "Folk"], first_page=1, last_page=9, base_url=server.base_url,
                        **FAST)  # fmt: skip

        reachable = [t for t in catalogue if not t.private and t not in (rock[3], folk[1])]
        entries = read_index(out)
        assert sorted(e["track_id"] for e in entries) == sorted(str(t.track_id) for t in reachable)
        assert result.downloaded == len(reachable) and result.already_complete == 0
        by_id = {t.track_id: t for t in catalogue}
        for entry in entries:
            served = by_id[int(entry["track_id"])].audio
            assert (out / entry["file"]).read_bytes() == served
            assert entry["sha256"] == hashlib.sha256(served).hexdigest() and entry["bytes"] == len(served)
            assert entry["file"].startswith(entry["genre"].lower() + "/")
            assert entry["licence"] and entry["artist"] and entry["title"] and entry["source_url"].startswith("http")
        assert len({e["file"] for e in entries}) == len(entries)
        # Nothing corrupt kept: only complete, indexed files on disk.
        on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*.mp3*"))
        assert on_disk == sorted(e["file"] for e in entries)
        reasons = {f.item: f.reason for f in result.failures}
        assert reasons[server.base_url + rock[3].page_path] == "host-not-allowed"
        assert reasons[server.base_url + folk[1].page_path] == "truncated-mp3"
        assert reasons[server.base_url + catalogue[-1].page_path] == "robots-disallowed"
        assert server.requests_to("/private/") == [] and loopback_only == []
        failures_log = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
        assert {row["reason"] for row in failures_log} == {"host-not-allowed", "truncated-mp3", "robots-disallowed"}
        # Pages past the end of a genre are not requested (Rock has 3 pages, Folk 2).
        assert not any("page=4" in r.path for r in server.requests_to("/genre/Rock/"))
        assert not any("page=3" in r.path for r in server.requests_to("/genre/Folk/"))

        before = len(server.log)
        again = ingest("fma", str(out), genres=["Rock", "Folk"], first_page=1, last_page=9, base_url=server.base_url,
                       **FAST)  # fmt: skip
        second_run = server.log[before:]
    assert again.downloaded == 0 and again.already_complete == len(reachable)
    fetched_files = {r.path for r in second_run if r.path.startswith("/files/")}
    # Only the two that failed are tried again; nothing complete is downloaded twice.
    assert fetched_files == {rock[3].file_path, folk[1].file_path}
    complete_pages = {t.page_path for t in reachable}
    assert not complete_pages & {r.path for r in second_run}
    assert len(read_index(out)) == len(reachable)


@pytest.mark.integration
def test_killed_scrape_resumes_without_downloading_finished_tracks(base_mp3, tmp_path):
    tracks = fma_catalogue(base_mp3, {"Jazz": 4})
    out = tmp_path / "out"
    with FmaServer(tracks, page_size=10) as server:
        server.add_fault(tracks[2].file_path, Fault("slow", delay=5.0))  # the run is killed while this streams
        command = [sys.executable, "-m", "waveforms.cli", "ingest", "--source", "fma", "--out", str(out),
                   "--genre", "Jazz", "--base-url", server.base_url, "--allow-loopback", "--rate", "100",
                   "--read-timeout", "30", "--no-progress"]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not server.requests_to(tracks[2].file_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the slow body has started arriving
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert server.requests_to(tracks[2].file_path), process.stderr.read().decode()[-2000:]
        assert len(read_index(out)) == 2
        killed_file = out / "jazz" / f"jazz-song-2-e-{tracks[2].track_id}.mp3"
        assert not killed_file.exists() and killed_file.with_name(killed_file.name + ".part").exists()

        result = ingest("fma", str(out), genres=["Jazz"], base_url=server.base_url, **FAST)
        for t in tracks:
            assert len(server.requests_to(t.file_path)) == (2 if t is tracks[2] else 1), t.file_path
    assert (result.downloaded, result.already_complete) == (2, 2)
    assert sorted(int(e["track_id"]) for e in read_index(out)) == [t.track_id for t in tracks]
    assert not list(out.rglob("*.part"))
    for entry in read_index(out):
        assert hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
