"""`waveforms ingest`: the FMA dataset archives, URL lists, folders, synth, and object-storage outputs."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import wave
import zipfile
from pathlib import Path

import fma_server
import numpy as np
import pytest
from fma_server import Fault, FmaServer, fma_catalogue, id3_tagged

from waveforms import storage
from waveforms.cli import main as cli_main
from waveforms.ingest import ingest
from waveforms.scrape.fma_dataset import ExtractLimits, UnsafeArchive, read_tracks_table, safe_extract

base_mp3 = fma_server.base_mp3  # pytest fixtures shared with the other scrape tests
loopback_only = fma_server.loopback_only

FAST = dict(allow_loopback=True, requests_per_second=100.0, backoff_base=0.01, connect_timeout=2.0, read_timeout=2.0,
            progress=False)  # fmt: skip
GENRES = {100: "Rock", 101: "Pop", 102: "Rock", 103: "Folk", 104: "Rock", 105: ""}


def read_index(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]


def tracks_csv(genres: dict[int, str]) -> str:
    """Shaped like the real fma_metadata/tracks.csv: a three-row header (table, column, then 'track_id')."""
    lines = [",album,artist,set,track,track,track", ",title,name,subset,genre_top,license,title", "track_id,,,,,,"]
    for track_id, genre in genres.items():
        lines.append(f'{track_id},Album {track_id},"Artist, {track_id}",small,{genre},CC BY 4.0,Title {track_id}')
    return "\r\n".join(lines) + "\r\n"


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def archives(base_mp3) -> dict[str, bytes]:
    metadata = zip_bytes({"fma_metadata/tracks.csv": tracks_csv(GENRES).encode(), "fma_metadata/genres.csv": b"x\n"})
    audio = {f"fma_small/000/{tid:06d}.mp3": id3_tagged(base_mp3, f"t{tid}") for tid in GENRES}
    subset = zip_bytes({"fma_small/README.txt": b"readme", **audio})
    return {"fma_metadata.zip": metadata, "fma_small.zip": subset}


def sha1s(archives: dict[str, bytes]) -> tuple[tuple[str, str], ...]:
    return tuple((name, hashlib.sha1(data).hexdigest()) for name, data in archives.items())


def test_read_tracks_table_three_row_and_plain_headers():
    table = read_tracks_table(io.StringIO(tracks_csv({2: "Hip-Hop", 3: ""}), newline=""))
    assert table[2] == {"genre_top": "Hip-Hop", "title": "Title 2", "artist": "Artist, 2", "licence": "CC BY 4.0"}
    assert table[3]["genre_top"] == ""
    plain = read_tracks_table(["track_id,genre_top,title\n", "7,Jazz,Seven\n"])
    assert plain[7]["genre_top"] == "Jazz" and plain[7]["title"] == "Seven"
    with pytest.raises(ValueError, match="genre_top"):
        read_tracks_table(["track_id,title\n", "1,x\n"])


def test_fma_dataset_genre_filter_and_range_resume(archives, base_mp3, tmp_path, loopback_only):
    out, archive_dir = tmp_path / "out", tmp_path / "archives"
    archive_dir.mkdir()
    half = len(archives["fma_small.zip"]) // 2
    (archive_dir / "fma_small.zip.part").write_bytes(archives["fma_small.zip"][:half])  # a killed earlier download
    with FmaServer([], archives=archives) as server:
        meta_cut = len(archives["fma_metadata.zip"]) // 3
        server.add_fault("/archives/fma_metadata.zip", Fault("truncate", keep_bytes=meta_cut))  # dies mid-transfer
        options = dict(genres=["rock"], base_url=server.base_url + "/archives", checksums=sha1s(archives),
                       archive_dir=str(archive_dir), **FAST)  # fmt: skip
        result = ingest("fma-dataset", str(out), **options)

        subset_requests = server.requests_to("/archives/fma_small.zip")
        assert [(r.range, r.status) for r in subset_requests] == [(f"bytes={half}-", 206)]
        meta_requests = server.requests_to("/archives/fma_metadata.zip")
        assert [(r.range, r.status) for r in meta_requests] == [(None, 200), (f"bytes={meta_cut}-", 206)]
        for name, data in archives.items():
            assert (archive_dir / name).read_bytes() == data
        assert not list(archive_dir.glob("*.part"))

        entries = read_index(out)
        assert sorted(e["file"] for e in entries) == ["rock/000100.mp3", "rock/000102.mp3", "rock/000104.mp3"]
        assert result.failures == () and result.downloaded == 3
        first = next(e for e in entries if e["track_id"] == "100")
        assert (first["title"], first["artist"], first["genre"], first["licence"]) == (
            "Title 100", "Artist, 100", "Rock", "CC BY 4.0")  # fmt: skip
        assert (out / "rock/000100.mp3").read_bytes() == id3_tagged(base_mp3, "t100")
        assert sorted(p.name for p in out.rglob("*.mp3")) == ["000100.mp3", "000102.mp3", "000104.mp3"]

        before = len(server.log)
        again = ingest("fma-dataset", str(out), **options)
        assert server.log[before:] == []  # verified archives and finished tracks are not fetched again
    assert (again.downloaded, again.already_complete) == (0, 3)


def test_fma_dataset_checksum_mismatch_deletes_and_reports(archives, tmp_path):
    out, archive_dir = tmp_path / "out", tmp_path / "archives"
    wrong = (("fma_metadata.zip", "0" * 40), ("fma_small.zip", hashlib.sha1(archives["fma_small.zip"]).hexdigest()))
    with FmaServer([], archives=archives) as server:
        result = ingest("fma-dataset", str(out), base_url=server.base_url + "/archives", checksums=wrong,
                        archive_dir=str(archive_dir), **FAST)  # fmt: skip
        assert server.requests_to("/archives/fma_small.zip") == []
    assert [(f.reason, "0" * 40 in f.detail) for f in result.failures] == [("checksum-mismatch", True)]
    assert list(archive_dir.iterdir()) == [] and read_index(out) == []


def test_fma_dataset_refuses_an_archive_with_path_traversal(archives, base_mp3, tmp_path):
    out = tmp_path / "deep" / "out"
    evil = zip_bytes({"fma_small/000/000100.mp3": base_mp3, "fma_small/../../../evil.mp3": base_mp3})
    archives = {**archives, "fma_small.zip": evil}
    with FmaServer([], archives=archives) as server:
        result = ingest("fma-dataset", str(out), base_url=server.base_url + "/archives", checksums=sha1s(archives),
                        archive_dir=str(tmp_path / "archives"), **FAST)  # fmt: skip
    assert len(result.failures) == 1 and "path traversal" in result.failures[0].detail
    assert result.downloaded == 0 and not list(tmp_path.rglob("evil.mp3")) and not list(out.rglob("*.mp3"))


def test_safe_extract_refuses_unsafe_members(tmp_path):
    def archive_with(info: zipfile.ZipInfo, data: bytes) -> Path:
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("ok.txt", b"fine")
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
        return path

    link = zipfile.ZipInfo("link.mp3")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    cases = {
        "absolute path": archive_with(zipfile.ZipInfo("/etc/evil"), b"x"),
        "path traversal": archive_with(zipfile.ZipInfo("a/../../evil"), b"x"),
        "symbolic link": archive_with(link, b"/etc/passwd"),
        "zip bomb": archive_with(zipfile.ZipInfo("zeros.bin"), bytes(8 << 20)),  # 8 MiB of zeros: ratio ~1000
        "per-file cap": archive_with(zipfile.ZipInfo("big.bin"), np.random.default_rng(0).bytes(300_000)),
    }
    for expected, path in cases.items():
        dest = tmp_path / f"dest-{path.stem}"
        limits = ExtractLimits(max_member_bytes=200_000 if expected == "per-file cap" else 1 << 30)
        with pytest.raises(UnsafeArchive, match=expected):
            safe_extract(path, dest, limits)
        assert not dest.exists() or not any(dest.iterdir())  # refused before anything was written
    total = tmp_path / "total.zip"
    total.write_bytes(zip_bytes({f"f{i}.bin": np.random.default_rng(i).bytes(50_000) for i in range(3)}))
    with pytest.raises(UnsafeArchive, match="total cap"):
        safe_extract(total, tmp_path / "dest-total", ExtractLimits(max_total_bytes=120_000))
    assert [p.name for p in safe_extract(total, tmp_path / "dest-ok")] == ["f0.bin", "f1.bin", "f2.bin"]


def test_urls_source(base_mp3, tmp_path, loopback_only):
    tracks = fma_catalogue(base_mp3, {"Rock": 2})
    with FmaServer(tracks) as server:
        url_file = tmp_path / "urls.txt"
        url_file.write_text(
            "# my list\n\n"
            f"{server.base_url}/files/100.mp3   ambient   # first\n"
            f"{server.base_url}/files/101.mp3\n"
            f"{server.base_url}/files/100.mp3\n"  # duplicate: fetched once
            f"{server.base_url}/robots.txt\n"  # not audio
            "http://10.0.0.1/private.mp3\n"  # named in the list, but a private address
        )
        result = ingest("urls", str(tmp_path / "out"), input=str(url_file), **FAST)
        assert len(server.requests_to("/files/100.mp3")) == 1
    entries = {e["source_url"].rsplit("/", 1)[1]: e for e in read_index(tmp_path / "out")}
    assert set(entries) == {"100.mp3", "101.mp3"}
    assert entries["100.mp3"]["genre"] == "ambient" and entries["101.mp3"]["genre"] == "unknown"
    assert (tmp_path / "out" / entries["100.mp3"]["file"]).read_bytes() == tracks[0].audio
    assert {f.item.rsplit("/", 1)[1]: f.reason for f in result.failures} == {
        "robots.txt": "content-type", "private.mp3": "address-not-allowed"}  # fmt: skip
    assert loopback_only == []
    bad = tmp_path / "bad.txt"
    bad.write_text("ftp://example.org/a.mp3\n")
    with pytest.raises(ValueError, match=r"bad.txt:1"):
        ingest("urls", str(tmp_path / "out2"), input=str(bad))


def write_wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1), handle.setsampwidth(2), handle.setframerate(8000)
        handle.writeframes(np.zeros(800, np.int16).tobytes())


def test_dir_source_collects_audio_skips_the_rest_and_resumes(base_mp3, tmp_path):
    source = tmp_path / "music"
    write_wav(source / "Rock" / "A Song.wav")
    (source / "Pop").mkdir()
    (source / "Pop" / "b.mp3").write_bytes(base_mp3)
    (source / "Pop" / "notes.txt").write_text("liner notes")
    (source / "Pop" / "fake.mp3").write_text("this is text renamed to mp3")
    out = tmp_path / "out"
    result = ingest("dir", str(out), input=str(source))
    assert sorted(e["file"] for e in read_index(out)) == ["pop/b.mp3", "rock/a-song.wav"]
    assert {Path(s.item).name: s.reason for s in result.skipped} == {"notes.txt": "not-audio", "fake.mp3": "not-audio"}
    assert not (out / "pop" / "fake.mp3").exists() and result.failures == ()
    again = ingest("dir", str(out), input=str(source))
    assert (again.downloaded, again.already_complete) == (0, 2)
    with pytest.raises(ValueError, match="not a folder"):
        ingest("dir", str(out), input=str(tmp_path / "missing"))


def test_synth_source_and_bad_options(tmp_path):
    result = ingest("synth", str(tmp_path / "out"), count=3, seed=1)
    entries = read_index(tmp_path / "out")
    assert result.downloaded == 3 and len(entries) == 3
    for entry in entries:
        assert (tmp_path / "out" / entry["file"]).stat().st_size == entry["bytes"] > 44
        assert entry["file"].startswith(entry["genre"] + "/")
    phrases = ingest("synth", str(tmp_path / "phrases"), count=2, seed=1, notes_per_clip=3)
    assert phrases.downloaded == 2
    assert all("-phrase-" in entry["file"] for entry in read_index(tmp_path / "phrases"))
    with pytest.raises(ValueError, match="unknown option"):
        ingest("synth", str(tmp_path / "x"), colour="blue")
    with pytest.raises(ValueError, match="notes_per_clip must be >= 1"):
        ingest("synth", str(tmp_path / "x"), notes_per_clip=0)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="not one of"):
        ingest("napster", str(tmp_path / "x"))


def test_remote_output_uploads_each_file_and_resumes(base_mp3, tmp_path, s3_env, s3_prefix):
    tracks = fma_catalogue(base_mp3, {"Rock": 3})
    staging = tmp_path / "staging"
    with FmaServer(tracks, page_size=10) as server:
        options = dict(genres=["Rock"], base_url=server.base_url, staging_dir=str(staging), **FAST)
        result = ingest("fma", s3_prefix, **options)
        assert result.downloaded == 3 and result.failures == ()
        listed = storage.list_files(s3_prefix)
        assert sorted(uri[len(s3_prefix) + 1 :] for uri in listed) == sorted(
            ["failures.jsonl", "index.jsonl"] + [e["file"] for e in read_index(staging)])  # fmt: skip
        for entry in read_index(staging):
            data = storage.read_bytes(storage.join(s3_prefix, entry["file"]))
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert not list(staging.rglob("*.mp3"))  # uploaded files do not stay on local disk

        before = len(server.log)
        fresh_staging = tmp_path / "staging-2"  # a new pod: the index comes back from object storage
        again = ingest("fma", s3_prefix, **{**options, "staging_dir": str(fresh_staging)})
        assert not [r for r in server.log[before:] if r.path.startswith("/files/")]
    assert (again.downloaded, again.already_complete) == (0, 3)


def test_dir_source_from_object_storage(base_mp3, tmp_path, s3_env, s3_prefix):
    storage.write_bytes(storage.join(s3_prefix, "in", "Rock", "one.mp3"), base_mp3)
    storage.write_bytes(storage.join(s3_prefix, "in", "cover.jpg"), b"\xff\xd8 not audio")
    result = ingest("dir", str(tmp_path / "out"), input=storage.join(s3_prefix, "in"))
    assert [e["file"] for e in read_index(tmp_path / "out")] == ["rock/one.mp3"]
    assert (tmp_path / "out" / "rock" / "one.mp3").read_bytes() == base_mp3
    assert [s.reason for s in result.skipped] == ["not-audio"]


def test_cli_urls_run(base_mp3, tmp_path, capsys):
    tracks = fma_catalogue(base_mp3, {"Rock": 1})
    with FmaServer(tracks) as server:
        url_file = tmp_path / "urls.txt"
        url_file.write_text(f"{server.base_url}/files/100.mp3 rock\n")
        code = cli_main(["ingest", "--source", "urls", "--input", str(url_file), "--out", str(tmp_path / "out"),
                         "--allow-loopback", "--rate", "100", "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["tracks"] == 1
    assert "1 tracks (1 new, 0 already complete)" in captured.err
    assert cli_main(["ingest", "--source", "urls", "--out", str(tmp_path / "o")]) == 2


def test_dir_source_reads_tags_falls_back_to_names_and_records_both(tmp_path):
    import subprocess

    source = tmp_path / "My Music"
    tagged = source / "Jazz & Blues" / "01 So What.ogg"
    tagged.parent.mkdir(parents=True)
    tags = {"title": "So What", "artist": "Miles Davis", "album": "Kind of Blue", "genre": "Modal Jazz",
            "license": "CC BY 4.0"}  # fmt: skip
    metadata = [arg for key, value in tags.items() for arg in ("-metadata", f"{key}={value}")]
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", *metadata,
                    "-c:a", "libvorbis", str(tagged)], check=True)  # fmt: skip
    (source / "Rock 'n' Roll").mkdir(exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=330:duration=0.5",
                    "-metadata", "title=Don't Stop", "-metadata", "artist=Band", "-c:a", "libmp3lame",
                    str(source / "Rock 'n' Roll" / "02 dont stop.mp3")], check=True)  # fmt: skip
    write_wav(source / "Rock 'n' Roll" / "03 Untagged.wav")

    ingest("dir", str(tmp_path / "by-folder"), input=str(source))
    entries = {e["from_names"]["title"]: e for e in read_index(tmp_path / "by-folder")}
    so_what = entries["01 So What"]
    assert (so_what["title"], so_what["artist"], so_what["album"], so_what["licence"]) == (
        "So What", "Miles Davis", "Kind of Blue", "CC BY 4.0")  # fmt: skip
    assert so_what["genre"] == "Jazz & Blues" and so_what["from_tags"]["genre"] == "Modal Jazz"
    assert entries["02 dont stop"]["title"] == "Don't Stop" and entries["02 dont stop"]["artist"] == "Band"
    untagged = entries["03 Untagged"]
    assert (untagged["title"], untagged["artist"], untagged["genre"], untagged["from_tags"]) == (
        "03 Untagged", "", "Rock 'n' Roll", {})  # fmt: skip

    assert cli_main(["ingest", "--source", "dir", "--input", str(source), "--out", str(tmp_path / "by-tag"),
                     "--genre-from", "tag", "--no-progress"]) == 0  # fmt: skip
    genres = {e["from_names"]["title"]: e["genre"] for e in read_index(tmp_path / "by-tag")}
    assert genres == {"01 So What": "Modal Jazz", "02 dont stop": "Rock 'n' Roll", "03 Untagged": "Rock 'n' Roll"}
    with pytest.raises(ValueError, match="genre_from must be one of"):
        ingest("dir", str(tmp_path / "x"), input=str(source), genre_from="filename")


def test_every_audio_extension_is_ingested_from_a_folder_and_listed_by_convert(tmp_path):
    """One list of extensions (audio.AUDIO_EXTENSIONS): a song the folder source keeps is one convert picks up, a URL's
    name keeps its extension, and the content sniffer knows every container (so no kind is dropped as "not-audio")."""
    import subprocess

    from waveforms import audio, convert
    from waveforms.scrape.urls import url_file_name

    source = tmp_path / "in" / "tones"
    source.mkdir(parents=True)
    for extension in audio.AUDIO_EXTENSIONS:  # ffmpeg's default encoder for each container (independent of waveforms)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=0.5",
                        "-ar", "48000", str(source / f"tone{extension}")], check=True)  # fmt: skip
    (source / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a song")
    result = ingest("dir", str(tmp_path / "out"), input=str(tmp_path / "in"))
    assert (result.downloaded, result.failures) == (len(audio.AUDIO_EXTENSIONS), ())
    assert [item.item.rsplit("/", 1)[-1] for item in result.skipped] == ["cover.jpg"]
    songs = convert.list_songs(str(tmp_path / "out"), 0.0)
    assert sorted(Path(song.song_id).suffix for song in songs) == sorted(audio.AUDIO_EXTENSIONS)
    for extension in audio.AUDIO_EXTENSIONS:
        assert url_file_name(f"http://127.0.0.1/music/tone{extension}").endswith(extension)
        decoded = audio.decode(source / f"tone{extension}", 16000)
        assert abs(len(decoded) - 8000) < 1000, extension
        peak_hz = np.argmax(np.abs(np.fft.rfft(decoded))) * 16000 / len(decoded)
        assert abs(peak_hz - 440) < 5, (extension, peak_hz)


def test_track_entry_owns_the_index_keys():
    from waveforms.scrape import track_entry

    entry = track_entry("http://127.0.0.1/a.mp3", "jazz/a.mp3", 10.0, "ab" * 32, title="A", genre="jazz", track_id="7")
    assert list(entry) == ["source_url", "title", "artist", "genre", "licence", "file", "bytes", "sha256", "track_id"]
    assert (entry["artist"], entry["bytes"], entry["track_id"]) == ("", 10, "7")
    with pytest.raises(ValueError, match="common keys"):
        track_entry("x", "y", 1, "z", title="t", genre="g", bytes=5)
