"""Sound-space corners from the data: the default rule, explicit genres and songs, loudest excerpts, early failures."""

import json

import numpy as np
import pytest
from audio_fixtures import encode, sine

from waveforms import audio, corners
from waveforms.convert import Song
from waveforms.stages import corners_stage

RATE = 16000


def _songs(*pairs):
    return [Song(song_id=f"{genre}/{name}", source=f"/x/{genre}/{name}", genre=genre) for genre, name in pairs]


def test_default_takes_the_first_genres_then_more_songs_when_genres_run_out():
    songs = _songs(("blues", "a.mp3"), ("blues", "b.mp3"), ("jazz", "c.mp3"), ("rock", "d.mp3"), ("ska", "e.ogg"))
    assert [s.song_id for s in corners.resolve(songs, {}, [], 2)] == ["blues/a.mp3", "jazz/c.mp3"]
    assert [s.genre for s in corners.resolve(songs, {}, [], 4)] == ["blues", "jazz", "rock", "ska"]
    two_genres = _songs(("blues", "a.mp3"), ("blues", "b.mp3"), ("jazz", "c.mp3"), ("jazz", "d.mp3"))
    chosen = corners.resolve(two_genres, {}, [], 4)
    assert [s.genre for s in chosen[:2]] == ["blues", "jazz"] and len({s.song_id for s in chosen}) == 4


def test_explicit_genres_songs_titles_and_original_names_fill_their_corners():
    songs = _songs(("blues", "a.mp3"), ("jazz", "c.mp3"), ("rock", "d.mp3"), ("rock", "f.mp3"))
    index = {"rock/f.mp3": {"title": "Don't Stop", "source_url": "/home/me/Music/Rock Hits/Don't Stop.flac"}}
    assert [s.song_id for s in corners.resolve(songs, index, ["rock", "Blues"], 2)] == ["rock/d.mp3", "blues/a.mp3"]
    assert corners.resolve(songs, index, ["Don't Stop", ""], 2)[0].song_id == "rock/f.mp3"
    assert corners.resolve(songs, index, ["Rock Hits/Don't Stop.flac", ""], 2)[0].song_id == "rock/f.mp3"
    assert corners.resolve(songs, index, ["Don't Stop.flac", "jazz/c.mp3"], 2)[1].song_id == "jazz/c.mp3"
    # the blank corner takes the first genre not already named
    assert [s.genre for s in corners.resolve(songs, index, ["", "blues", "rock", "rock"], 4)] == [
        "jazz", "blues", "rock", "rock"]  # fmt: skip


@pytest.mark.parametrize(
    "songs, request_, count, message",
    [
        (_songs(("blues", "a.mp3"), ("jazz", "b.mp3")), ["classical", ""], 2, "'classical' is neither a genre nor"),
        (_songs(("blues", "a.mp3"), ("jazz", "b.mp3")), ["blues"], 2, "2 corners need 2 entries"),
        (_songs(("blues", "a.mp3"), ("jazz", "b.mp3")), [], 4, "4 corners need 4 songs; the collection has 2"),
        (_songs(("blues", "a.mp3"), ("jazz", "b.mp3")), ["blues/a.mp3", "blues/a.mp3"], 2, "corners repeat a song"),
        (_songs(("blues", "a.mp3"), ("jazz", "b.mp3")), ["blues", "Blues"], 2, "genre 'blues' has no song left"),
    ],
)
def test_requests_the_collection_cannot_meet_fail_with_a_clear_message(songs, request_, count, message):
    with pytest.raises(corners.CornerError, match=message):
        corners.resolve(songs, {}, request_, count)


def test_loudest_excerpt_skips_a_quiet_intro():
    clip = np.concatenate([sine(220, RATE, 2.0, 0.01), sine(440, RATE, 1.0, 0.8), sine(220, RATE, 2.0, 0.05)])
    start, excerpt = corners.loudest_excerpt(clip, RATE)
    assert abs(start - 2 * RATE) <= RATE // 10 and len(excerpt) == RATE
    start, short = corners.loudest_excerpt(clip[:100], RATE)
    assert start == 0 and len(short) == 100


def test_stage_writes_loud_excerpts_of_real_files_in_awkward_folders(tmp_path):
    songs = tmp_path / "songs"
    formats = {"Rock 'n' Roll": ".mp3", "Jazz & Blues": ".flac", "Folk": ".ogg", "Big Band": ".mp3", "Ska": ".ogg"}
    for number, (genre, suffix) in enumerate(formats.items()):
        (songs / genre).mkdir(parents=True)
        quiet_intro = sine(110, RATE, 1.5, 0.005)
        song = np.concatenate([quiet_intro, sine(330 + 50 * number, RATE, 1.0)])
        encode(songs / genre / f"0{number} Don't Stop{suffix}", song, RATE)
    labels = corners_stage(str(songs), str(tmp_path / "corners"), corners_2=[], corners_4=["Ska", "", "", ""],
                           seconds=0.5)  # fmt: skip
    assert labels["2"] == ["Big Band: 03 Don't Stop", "Folk: 02 Don't Stop"]  # listing order: sorted folders
    assert [label.split(":")[0] for label in labels["4"]] == ["Ska", "Big Band", "Folk", "Jazz & Blues"]
    chosen = corners.read_corners(str(tmp_path / "corners" / "4"))
    assert [c.name for c in chosen] == ["NW", "NE", "SW", "SE"]
    assert chosen[0].file == "NW Ska - 04 Don't Stop.wav"  # readable, as pages show it
    for corner in chosen:
        excerpt = audio.decode(tmp_path / "corners" / "4" / corner.file, RATE, normalize=False)
        assert corner.start_seconds >= 1.3 and corner.seconds == 0.5  # past the quiet intro
        assert np.sqrt(np.mean(excerpt**2)) > 0.1 and abs(len(excerpt) - RATE // 2) < 50
    assert json.loads((tmp_path / "corners" / "2" / "corners.json").read_text())["sample_rate"] == RATE


def test_stage_checks_both_requests_before_writing_anything(tmp_path):
    songs = tmp_path / "songs"
    for genre in ("a", "b"):
        (songs / genre).mkdir(parents=True)
        encode(songs / genre / "x.wav", sine(440, RATE, 1.0), RATE)
    with pytest.raises(corners.CornerError, match="4 corners need 4 songs"):
        corners_stage(str(songs), str(tmp_path / "corners"), corners_2=[], corners_4=[], seconds=0.5)
    assert not (tmp_path / "corners").exists()
