"""The explorer page in headless Chromium: loads clean, every cell present, a click plays audio, also sandboxed."""

from __future__ import annotations

import html

import numpy as np
import pytest

from waveforms.explorer import audio_mime, encode_all_for_page, encode_for_page, render_explorer
from waveforms.soundspace import SoundSpaceSpec, grid_points, manifest_for, spaces_for
from waveforms.spectral import spectrogram_png

SR = 16000


def nine_by_nine_space():
    """A 9x9 manifest whose clip at (x, y) is a 1-s tone whose pitch grows east and brightness grows south."""
    spec = SoundSpaceSpec(corners=(("nw.wav",), ("ne.wav",), ("sw.wav",), ("se.wav",)), resolution=9)
    points = grid_points(4, 9)
    manifest = manifest_for(spec, spaces_for(spec.corners, ()), points, sample_rate=SR, extensions=("mp3",))
    t = np.arange(SR) / SR
    clips = {}
    for entry in manifest["points"]:
        f0 = 200 * 2 ** (2 * entry["x"])
        tone = sum((entry["y"] ** (k - 1)) * np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
        clips[entry["name"]] = (0.5 * tone / np.max(np.abs(tone)) * np.exp(-2 * t)).astype(np.float32)
    return manifest, clips


@pytest.fixture(scope="module")
def space_audio():
    """The 9x9 space with its clips encoded for the page once (81 ffmpeg runs) for every test of the module."""
    manifest, clips = nine_by_nine_space()
    return manifest, clips, encode_all_for_page(clips, SR, "mp3")


@pytest.fixture(scope="module")
def page_html(space_audio):
    manifest, clips, audio = space_audio
    thumbnails = {name: spectrogram_png(clip, SR, 96, 48) for name, clip in clips.items()}
    return manifest, render_explorer(manifest, audio, thumbnails, title="test space")


def open_page(browser, content):
    page = browser.new_page()
    problems = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda err: problems.append(str(err)))
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.set_content(content, wait_until="load")
    return page, problems, requests


def assert_plays_alone(root, audio_id, cell_name=None):
    """The player `audio_id` is playing (or has just played to its end) and every other player is silent.

    One snapshot of the whole page: the clips are 1 s long, and on a slow machine a second query could land after the
    clip has ended, when the page has rightly stopped it and taken its highlight off."""
    snapshot = root.locator("body").evaluate(
        """body => ({
            players: Array.from(document.querySelectorAll("audio")).map(
                a => ({id: a.id, paused: a.paused, ended: a.ended, time: a.currentTime})),
            highlighted: Array.from(document.querySelectorAll(".cell.playing")).map(c => c.dataset.name),
        })"""
    )
    clicked = next(player for player in snapshot["players"] if player["id"] == audio_id)
    if clicked["ended"]:
        assert snapshot["highlighted"] == []
    else:
        assert clicked["paused"] is False and clicked["time"] > 0.05, clicked
        if cell_name is not None:
            assert snapshot["highlighted"] == [cell_name]
    assert [player["id"] for player in snapshot["players"] if not player["paused"] and player["id"] != audio_id] == []


def assert_click_plays(root, page, name):
    cell = root.locator(f'.cell[data-name="{name}"]')
    cell.click()
    page.wait_for_timeout(400)
    assert_plays_alone(root, cell.get_attribute("data-audio"), name)


@pytest.mark.slow
def test_page_is_self_contained_and_small(page_html):
    manifest, content = page_html
    size_mb = len(content.encode()) / 1e6
    print(f"9x9 explorer page of 1-s clips: {size_mb:.2f} MB")
    assert size_mb < 2.0
    for external in ("http://", "https://", 'src="//', '<link rel="stylesheet"', "localStorage", "window.open"):
        assert external not in content
    assert content.count('class="cell') == 81


def test_grid_layout_click_plays_and_no_console_errors(browser, page_html):
    manifest, content = page_html
    page, problems, requests = open_page(browser, content)
    cells = page.locator(".cell")
    assert cells.count() == 81
    # every point is there, at its spatial place: x grows east (left to right), y grows south (top to bottom)
    boxes = {}
    for entry in manifest["points"]:
        cell = page.locator(f'.cell[data-name="{entry["name"]}"]')
        assert cell.count() == 1
        boxes[(entry["row"], entry["col"])] = cell.bounding_box()
    assert boxes[(0, 0)]["x"] < boxes[(0, 8)]["x"] and boxes[(0, 0)]["y"] == boxes[(0, 8)]["y"]
    assert boxes[(0, 0)]["y"] < boxes[(8, 0)]["y"] and boxes[(0, 0)]["x"] == boxes[(8, 0)]["x"]
    labels = page.locator(".label").all_inner_texts()
    assert [label.split()[0] if " " in label else label[:2] for label in labels] == ["NW", "NE", "SW", "SE"]
    for name, label in zip(["nw.wav", "ne.wav", "sw.wav", "se.wav"], labels, strict=True):
        assert name in label
    # NW label sits above-left of the grid, SE below-right
    nw, se = page.locator(".label").nth(0).bounding_box(), page.locator(".label").nth(3).bounding_box()
    assert nw["y"] < boxes[(0, 0)]["y"] and se["y"] > boxes[(8, 8)]["y"]
    assert_click_plays(page, page, "x0.500_y0.250")
    assert_click_plays(page, page, "x1.000_y1.000")
    assert problems == []
    assert all(url.startswith(("data:", "about:")) for url in requests)
    page.close()


def test_plays_inside_the_kubeflow_sandboxed_iframe(browser, page_html):
    _, content = page_html
    host = f'<!DOCTYPE html><html><body><iframe sandbox="allow-scripts" width="1400" height="1000" srcdoc="{html.escape(content, quote=True)}"></iframe></body></html>'
    page, problems, requests = open_page(browser, host)
    frame = page.frame_locator("iframe")
    assert frame.locator(".cell").count() == 81
    assert_click_plays(frame, page, "x0.250_y0.750")
    # hover mode: tick the box, then moving over a cell plays it
    frame.locator("#hover").check()
    hovered = frame.locator('.cell[data-name="x0.000_y0.000"]')
    hovered.hover()
    page.wait_for_timeout(400)
    assert_plays_alone(frame, hovered.get_attribute("data-audio"), "x0.000_y0.000")
    assert problems == []
    page.close()


def test_audio_mime_detection():
    from waveforms.audio import wav_bytes

    assert audio_mime(wav_bytes(np.zeros(100, np.float32), SR)) == "audio/wav"
    assert audio_mime(encode_for_page(np.zeros(SR, np.float32), SR, "mp3")) == "audio/mpeg"
    with pytest.raises(ValueError, match="WAV or mp3"):
        audio_mime(b"OggS....")


def test_missing_audio_is_a_clear_error():
    manifest, clips = nine_by_nine_space()
    with pytest.raises(ValueError, match="no audio for 81 point"):
        render_explorer(manifest, {})


def test_corner_originals_play_beside_their_labels_and_cells_fill_the_page(browser, space_audio):
    manifest, clips, audio = space_audio
    originals = {name: encode_for_page(clips[point], SR) for name, point in
                 (("nw.wav", "x0.000_y0.000"), ("se.wav", "x1.000_y1.000"))}  # fmt: skip
    content = render_explorer(manifest, audio, title="test space", corner_audio=originals)
    page, problems, _ = open_page(browser, content)
    page.set_viewport_size({"width": 1400, "height": 1000})
    buttons = page.locator(".corner-play")
    assert buttons.count() == 2  # the corners that have an original; the others have none
    buttons.first.click()
    page.wait_for_timeout(400)
    assert_plays_alone(page, buttons.first.get_attribute("data-audio"))
    grid = page.locator(".grid").bounding_box()
    assert grid["width"] > 700  # larger cells: the grid takes most of a 1400-px window, not 9 x 96 px
    assert problems == []
    page.close()


def test_original_corner_sounds_are_shown_and_played_beside_the_decoded_corners(browser, space_audio):
    manifest, clips, audio = space_audio
    corners = {
        "nw.wav": "x0.000_y0.000",
        "ne.wav": "x1.000_y0.000",
        "sw.wav": "x0.000_y1.000",
        "se.wav": "x1.000_y1.000",
    }
    originals = {name: encode_for_page(clips[point], SR) for name, point in corners.items()}
    pictures = {name: spectrogram_png(clips[point], SR, 96, 48) for name, point in corners.items()}
    content = render_explorer(manifest, audio, title="test space", corner_audio=originals, corner_thumbnails=pictures)
    page, problems, _ = open_page(browser, content)
    page.set_viewport_size({"width": 1400, "height": 1000})
    grid = page.locator(".grid").bounding_box()
    for name, point in corners.items():
        original = page.locator(f'.corner-play.original[title="the original: {name}"]')
        assert original.count() == 1
        image = original.locator("img")
        assert image.get_attribute("src").startswith("data:image/png;base64,")
        assert image.evaluate("img => img.naturalWidth") == 96  # the picture decoded: it is shown
        # beside its decoded corner: on the same side of the grid, and no further from it than a cell's width or two
        cell, box = page.locator(f'.cell[data-name="{point}"]').bounding_box(), original.bounding_box()
        assert (box["x"] < grid["x"]) == (point.startswith("x0")), name
        assert (box["y"] < grid["y"] + grid["height"] / 2) == point.endswith("y0.000"), name
        gap_x = max(0.0, box["x"] - (cell["x"] + cell["width"]), cell["x"] - (box["x"] + box["width"]))
        gap_y = max(0.0, box["y"] - (cell["y"] + cell["height"]), cell["y"] - (box["y"] + box["height"]))
        assert gap_x < 2 * cell["width"] and gap_y < 2 * cell["height"], (name, box, cell)
        original.click()
        page.wait_for_timeout(400)
        assert_plays_alone(page, original.get_attribute("data-audio"))  # the original, and nothing else
        # the decoded corner next to it plays its own clip
        assert_click_plays(page, page, point)
    assert problems == []
    page.close()
