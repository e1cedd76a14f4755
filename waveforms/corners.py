"""Sound-space corners chosen from the data: a rule that works on any collection.

A corner request is a list with one entry per corner (W E, or NW NE SW SE). An entry names a genre (a label of the
ingested songs: their folder or tag genre), a song (its id under the songs folder, e.g. `jazz/take-five.mp3`, its
original file name or path as ingest recorded it, or its title, with or without a track number), or is empty: then the corner takes the next genre not
yet used, in listing order, and when the collection has fewer genres than corners, the next unused song of a genre
already used. So the default (no entries) is "the first 2 or 4 genres present" on any collection with enough songs.

Each corner sound is a representative excerpt, not the song's intro: the loudest `seconds` of the song (highest RMS
over windows stepped by a tenth of the excerpt), written as a WAV named after the corner, genre and title. Everything is checked before anything is written,
so a request that cannot be met fails at once with a message naming the genres and songs there are.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass

import numpy as np

# a sound space's corners, by corner count, in the order of the grid weights (soundspace.grid_points)
CORNER_NAMES: dict[int, tuple[str, ...]] = {2: ("W", "E"), 4: ("NW", "NE", "SW", "SE")}

CORNERS_FILE = "corners.json"
SILENT_PEAK = 1e-3  # -60 dBFS: a song this quiet cannot be a corner


class CornerError(ValueError):
    """A corner request that the collection cannot meet."""


@dataclass(frozen=True)
class Corner:
    name: str  # W E, or NW NE SW SE
    song_id: str  # path under the songs folder
    genre: str
    title: str
    start_seconds: float  # where the excerpt starts in the song
    seconds: float
    file: str  # the excerpt WAV, relative to the corners folder


def _index_entries(songs_dir: str) -> dict[str, dict]:
    """Ingest's index.jsonl by file (title, original source); empty when the folder was not written by ingest."""
    path = os.path.join(songs_dir, "index.jsonl")
    entries = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("file"):
                    entries[entry["file"]] = entry
    return entries


def _titles(song, entry: dict) -> set[str]:
    """A song's title (ingest's, else its file name), also without a leading track number, lower case."""
    title = str(entry.get("title") or os.path.splitext(os.path.basename(song.song_id))[0]).strip().lower()
    return {title, re.sub(r"^\d+[\s._-]*", "", title)}


def _matches_song(request: str, song, entry: dict) -> bool:
    source = str(entry.get("source_url", ""))
    return (
        request in (song.song_id, source, os.path.basename(source))
        or ("/" in request and source.endswith("/" + request.lstrip("/")))
        or request.lower() in _titles(song, entry)
    )


def resolve(songs, index: dict[str, dict], requests: list[str], count: int) -> list:
    """One Song per corner from the requests (genre, song or "" for the next unused genre); raises CornerError."""
    if count not in CORNER_NAMES:
        raise CornerError(f"a sound space has 2 or 4 corners, not {count}")
    requests = [str(r).strip() for r in requests] or [""] * count
    if len(requests) != count:
        raise CornerError(
            f"{count} corners need {count} entries (genre, song or empty), got {len(requests)}: {requests}"
        )
    if len(songs) < count:
        raise CornerError(f"{count} corners need {count} songs; the collection has {len(songs)}")
    genres = list(dict.fromkeys(song.genre for song in songs))
    chosen: list = [None] * count
    for position, request in enumerate(requests):
        if not request:
            continue
        matches = [s for s in songs if _matches_song(request, s, index.get(s.song_id, {}))]
        genre = next((g for g in genres if g == request), None) or next(
            (g for g in genres if g.lower() == request.lower()), None
        )  # the exact name, else any case
        if not matches and genre is not None:
            matches = [s for s in songs if s.genre == genre and s not in chosen]
            if not matches:
                count_in_genre = sum(s.genre == genre for s in songs)
                raise CornerError(f"corner {position + 1}: genre {genre!r} has no song left ({count_in_genre} in all, "
                                  f"all taken by other corners)")  # fmt: skip
        if not matches:
            known = ", ".join(repr(s.song_id) for s in songs[:5]) + (" ..." if len(songs) > 5 else "")
            raise CornerError(f"corner {position + 1}: {request!r} is neither a genre nor a song of the collection "
                              f"(genres: {genres}; songs: {known})")  # fmt: skip
        chosen[position] = matches[0]
    used_genres = {song.genre for song in chosen if song}
    for position in range(count):
        if chosen[position] is None:
            unused = [s for s in songs if s.genre not in used_genres] or [s for s in songs if s not in chosen]
            chosen[position] = unused[0]
            used_genres.add(unused[0].genre)
    if len({song.song_id for song in chosen}) < count:
        raise CornerError(f"corners repeat a song: {[song.song_id for song in chosen]}; name {count} different ones")
    return chosen


def loudest_excerpt(clip: np.ndarray, length: int) -> tuple[int, np.ndarray]:
    """(start, clip[start:start+length]) with the highest energy, the start on a grid of length/10; a shorter clip is
    returned whole from 0. Works on per-step energies, so a long song costs no more memory than itself."""
    if len(clip) <= length:
        return 0, clip
    step = max(1, length // 10)
    steps = len(clip) // step
    energy = np.square(clip[: steps * step].reshape(steps, step), dtype=np.float64).sum(axis=1)  # (steps,)
    per_window = -(-length // step)  # steps a window spans
    windows = np.convolve(energy, np.ones(per_window), mode="valid")  # (starts,)
    start = min(int(np.argmax(windows)) * step, len(clip) - length)
    return start, clip[start : start + length]


MAX_DECODED_SECONDS = 1800.0  # corners look at a song's first 30 minutes (a DJ mix need not be held whole)


def choose_corners(songs_dir: str, requests: list[str], count: int) -> list:
    """Resolve the request against the songs folder (no audio decoded): fails fast, before any training."""
    from waveforms.convert import list_songs

    return resolve(list_songs(songs_dir, 0.0), _index_entries(songs_dir), list(requests), count)


def write_corners(
    songs_dir: str, out_dir: str, requests: list[str], count: int, *, seconds: float, sample_rate: int = 16000
) -> list[Corner]:
    """The corners' excerpts as out_dir/<NAME>.wav plus out_dir/corners.json; -> the corners in corner order."""
    from waveforms import audio

    if not seconds > 0:
        raise CornerError(f"corner excerpts need a positive length, got {seconds} s")
    songs = choose_corners(songs_dir, requests, count)
    index = _index_entries(songs_dir)
    length = int(round(seconds * sample_rate))
    corners = []
    for name, song in zip(CORNER_NAMES[count], songs, strict=True):
        try:
            clip = _first_seconds(song.source, sample_rate, MAX_DECODED_SECONDS)
        except audio.AudioDecodeError as error:
            raise CornerError(f"corner {name}: cannot decode {song.song_id} ({error.reason})") from None
        if not clip.size or float(np.max(np.abs(clip))) < SILENT_PEAK:
            raise CornerError(f"corner {name}: {song.song_id} is silent; name another song or genre")
        start, excerpt = loudest_excerpt(clip, length)
        title = str(index.get(song.song_id, {}).get("title") or os.path.splitext(os.path.basename(song.song_id))[0])
        file = f"{name} {_readable(song.genre, 30)} - {_readable(title, 50)}.wav"  # the name pages show for the corner
        os.makedirs(out_dir, exist_ok=True)
        audio.write_wav(os.path.join(out_dir, file), excerpt, sample_rate)
        corners.append(Corner(name, song.song_id, song.genre, title, round(start / sample_rate, 3),
                              round(len(excerpt) / sample_rate, 3), file))  # fmt: skip
    with open(os.path.join(out_dir, CORNERS_FILE), "w", encoding="utf-8") as handle:
        json.dump({"corners": [asdict(c) for c in corners], "sample_rate": sample_rate}, handle, indent=2)
    return corners


def _first_seconds(path: str, sample_rate: int, seconds: float) -> np.ndarray:
    """The first `seconds` of a file, decoded in blocks (memory bounded by `seconds`, whatever the file's length)."""
    from waveforms import audio

    wanted, blocks, total = int(seconds * sample_rate), [], 0
    for block in audio.iter_decode(path, sample_rate):
        blocks.append(block[: wanted - total])
        total += len(blocks[-1])
        if total >= wanted:
            break
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def _readable(text: str, max_length: int) -> str:
    """Text as it reads (spaces, apostrophes, accents kept) but safe in a file name and a URL path segment."""
    kept = re.sub(r"[^\w\s'&(),.!-]+", "-", text, flags=re.UNICODE)
    return re.sub(r"\s+", " ", kept).strip(" .-")[:max_length].strip() or "untitled"


def read_corners(corners_dir: str) -> list[Corner]:
    with open(os.path.join(corners_dir, CORNERS_FILE), encoding="utf-8") as handle:
        return [Corner(**entry) for entry in json.load(handle)["corners"]]


def label(corner: Corner) -> str:
    """How a page names a corner: genre and title."""
    return f"{corner.genre}: {corner.title}"
