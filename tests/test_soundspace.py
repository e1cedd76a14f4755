"""Sound-space grid maths, naming, manifest, post-processing and validation: no model needed."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import TINY_AUTOENCODER

from waveforms.audio import apply_fades, pitch_shift, postprocess, remove_clicks, remove_dc, write_wav
from waveforms.soundspace import (
    CORNER_NAMES,
    CORNER_XY,
    SoundSpaceError,
    SoundSpaceSpec,
    bilinear_weights,
    grid_points,
    interpolate,
    load_corner_audio,
    manifest_for,
    nsynth_weights,
    parse_corners,
    spaces_for,
    validate_spec,
)

SR = 16000


@pytest.mark.parametrize("resolution", [2, 3, 5, 9, 64])
@pytest.mark.parametrize("weighting", ["bilinear", "nsynth"])
def test_four_corner_grid_weights_sum_to_one_and_corners_are_exact(resolution, weighting):
    points = grid_points(4, resolution, weighting)
    assert len(points) == resolution * resolution
    for p in points:
        assert math.isclose(sum(p.weights), 1.0, abs_tol=1e-12)
        assert all(w >= 0 for w in p.weights)
        assert p.x == p.col / (resolution - 1) and p.y == p.row / (resolution - 1)
    by_position = {(p.row, p.col): p for p in points}
    last = resolution - 1
    # NW NE SW SE: each corner point is entirely its own corner
    for (row, col), corner in zip([(0, 0), (0, last), (last, 0), (last, last)], range(4), strict=True):
        expected = [0.0] * 4
        expected[corner] = 1.0
        assert by_position[(row, col)].weights == pytest.approx(expected, abs=1e-12)
        assert (by_position[(row, col)].x, by_position[(row, col)].y) == CORNER_XY[CORNER_NAMES[4][corner]]


def test_bilinear_weights_are_the_textbook_formula_and_reproduce_positions():
    rng = np.random.default_rng(1)
    for x, y in rng.uniform(0, 1, (50, 2)):
        w = bilinear_weights(x, y)
        assert w == pytest.approx(((1 - x) * (1 - y), x * (1 - y), (1 - x) * y, x * y))
        # interpolating the corner positions with the weights gives back the point itself
        corners = np.array([CORNER_XY[n] for n in CORNER_NAMES[4]])
        assert np.asarray(w) @ corners == pytest.approx([x, y])


def test_nsynth_weighting_distance_rule():
    assert nsynth_weights(0.5, 0.5) == pytest.approx([0.25] * 4)
    # north edge midpoint: the southern corners are more than 1 away and drop out
    assert nsynth_weights(0.5, 0.0) == pytest.approx([0.5, 0.5, 0.0, 0.0])
    # a point near NW: weights fall with distance, NW largest, SE (farthest) zero
    w = nsynth_weights(0.2, 0.1)
    raw = [max(0.0, 1 - math.hypot(0.2 - cx, 0.1 - cy)) for cx, cy in [(0, 0), (1, 0), (0, 1), (1, 1)]]
    assert w == pytest.approx([r / sum(raw) for r in raw])
    assert w[0] > w[1] > 0 and w[0] > w[2] > 0 and w[3] == 0.0
    # it differs from bilinear away from corners and centre
    assert not np.allclose(w, bilinear_weights(0.2, 0.1))


def test_two_corner_path_has_r_points_like_each_side_of_a_four_corner_grid():
    points = grid_points(2, 5)
    assert len(points) == len([p for p in grid_points(4, 5) if p.row == 0])
    assert [p.x for p in points] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all(p.y == 0.0 and p.row == 0 for p in points)
    assert [p.weights for p in points] == [(1.0, 0.0), (0.75, 0.25), (0.5, 0.5), (0.25, 0.75), (0.0, 1.0)]


def test_names_match_coordinates_and_are_unique_at_the_highest_resolution():
    for n_corners in (2, 4):
        points = grid_points(n_corners, 64)
        names = [p.name for p in points]
        assert len(set(names)) == len(names)
        for p in points:
            x, y = p.name.removeprefix("x").split("_y")
            assert float(x) == pytest.approx(p.x, abs=5.001e-4) and float(y) == pytest.approx(p.y, abs=5.001e-4)
    assert grid_points(4, 5)[1 * 5 + 2].name == "x0.500_y0.250"  # row 1 (south of the top), col 2


def test_interpolate_reproduces_corners_and_mixes_linearly():
    rng = np.random.default_rng(0)
    corners = rng.normal(size=(4, 6, 16)).astype(np.float32)
    points = grid_points(4, 3)
    mixed = interpolate(corners, np.array([p.weights for p in points]))
    assert mixed.shape == (9, 6, 16)
    np.testing.assert_allclose(mixed[0], corners[0], atol=1e-6)  # NW
    np.testing.assert_allclose(mixed[2], corners[1], atol=1e-6)  # NE
    np.testing.assert_allclose(mixed[6], corners[2], atol=1e-6)  # SW
    np.testing.assert_allclose(mixed[8], corners[3], atol=1e-6)  # SE
    np.testing.assert_allclose(mixed[4], corners.mean(axis=0), atol=1e-6)  # centre


def test_combinations_and_pitch_axis_prefix_names():
    spaces = spaces_for([("a", "b"), ("c",), ("d",), ("e", "f")], pitch_shifts=(-12, 0))
    assert len(spaces) == 2 * 2 * 2
    assert {s.sources for s in spaces} == {
        ("a", "c", "d", "e"),
        ("a", "c", "d", "f"),
        ("b", "c", "d", "e"),
        ("b", "c", "d", "f"),
    }
    assert spaces[0].prefix == "c00_p-12_" and spaces[1].prefix == "c00_p+0_" and spaces[-1].prefix == "c03_p+0_"
    single = spaces_for([("a",), ("b",)], pitch_shifts=())
    assert len(single) == 1 and single[0].prefix == "" and single[0].pitch_shift is None


def test_manifest_lists_every_file_with_coordinates_weights_and_sources():
    spec = SoundSpaceSpec(
        corners=(("n/a.wav", "n/b.wav"), ("ne.wav",), ("sw.wav",), ("se.wav",)),
        resolution=3,
        weighting="nsynth",
        formats="both",
    )
    spaces = spaces_for(spec.corners, ())
    points = grid_points(4, 3, "nsynth")
    manifest = manifest_for(spec, spaces, points, sample_rate=SR, model_uri="m", extensions=("wav", "mp3"))
    json.dumps(manifest)  # serialisable
    assert manifest["corner_names"] == ["NW", "NE", "SW", "SE"]
    assert manifest["corners"]["NW"] == ["a.wav", "b.wav"]
    assert manifest["rows"] == manifest["cols"] == 3
    assert len(manifest["points"]) == 2 * 9
    names = [e["name"] for e in manifest["points"]]
    assert len(set(names)) == len(names)
    for entry in manifest["points"]:
        assert entry["files"] == {"wav": entry["name"] + ".wav", "mp3": entry["name"] + ".mp3"}
        assert entry["name"].endswith(f"x{entry['x']:.3f}_y{entry['y']:.3f}")
        assert math.isclose(sum(entry["weights"].values()), 1.0, abs_tol=1e-5)
        assert entry["weights"] == pytest.approx(
            dict(zip(CORNER_NAMES[4], nsynth_weights(entry["x"], entry["y"]), strict=True)), abs=1e-6
        )
    first = manifest["points"][0]
    assert first["name"] == "c00_x0.000_y0.000" and first["sources"]["NW"] == "a.wav" and first["weights"]["NW"] == 1.0
    assert manifest["points"][9]["sources"]["NW"] == "b.wav"


def test_postprocess_removes_dc_and_spikes_fades_trims_and_normalises():
    t = np.arange(SR + 500) / SR
    clip = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2  # DC offset
    clip[4000] = 0.95  # an isolated spike
    out = postprocess(clip.astype(np.float32), SR, SR, peak_dbfs=-1.0, fade_ms=10)
    assert out.shape == (SR,)
    assert abs(float(np.mean(out[2000:-2000]))) < 0.01
    assert np.max(np.abs(out)) == pytest.approx(10 ** (-1 / 20), rel=1e-4)
    assert abs(out[0]) < 1e-6 and abs(out[-1]) < 1e-6  # faded to silence at both ends
    # the spike is gone: the sample lies on the sine again
    sine = out[3990:4010]
    assert np.max(np.abs(np.diff(sine, 2))) < 0.1


def test_click_removal_keeps_genuine_signal():
    t = np.arange(SR) / SR
    square = np.sign(np.sin(2 * np.pi * 100 * t)).astype(np.float32) * 0.9  # big steps but no isolated spikes
    np.testing.assert_array_equal(remove_clicks(square), square)
    spiky = np.zeros(100, np.float32)
    spiky[50] = 0.9
    assert remove_clicks(spiky)[50] == 0.0


def test_remove_dc_is_a_high_pass():
    t = np.arange(SR) / SR
    low = np.sin(2 * np.pi * 2 * t).astype(np.float32)  # 2 Hz drift
    high = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    assert np.std(remove_dc(low + 0.5, SR)[2000:-2000]) < 0.15
    assert np.std(remove_dc(high, SR)[2000:-2000]) == pytest.approx(np.std(high), rel=0.02)
    assert apply_fades(np.ones(SR, np.float32), SR, 10)[160:-160].min() == 1.0


def test_a_corner_window_is_the_loudest_stretch_unless_the_start_is_asked_for():
    from waveforms.soundspace import corner_window

    song = np.concatenate([np.full(SR, 0.001, np.float32), np.full(SR // 2, 0.5, np.float32), np.zeros(SR, np.float32)])
    assert np.all(corner_window(song, SR // 2) == 0.5)  # the loud half second, not the near-silent intro
    assert np.all(corner_window(song, SR // 2, "start") == 0.001)
    short = corner_window(song[:100], 400)
    assert len(short) == 400 and np.all(short[100:] == 0)


def test_pitch_shift_moves_frequency_by_semitones():
    t = np.arange(SR) / SR
    sine = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    up = pitch_shift(sine, 12)
    assert len(up) == pytest.approx(SR / 2, abs=2)
    spectrum = np.abs(np.fft.rfft(up[:4000] * np.hanning(4000)))
    assert np.argmax(spectrum) * SR / 4000 == pytest.approx(880, abs=5)


# ---------------------------------------------------------------- validation: clear errors before any work


def spec_with(**changes):
    base = dict(corners=(("a.wav",), ("b.wav",)), resolution=4)
    return SoundSpaceSpec(**{**base, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(corners=(("a",), ("b",), ("c",))), "got 3 corners"),
        (dict(corners=(("a",),)), "got 1 corners"),
        (dict(resolution=1), "--resolution: got 1"),
        (dict(resolution=65), "--resolution: got 65"),
        (dict(weighting="cubic"), "--weighting"),
        (dict(weighting="nsynth"), "needs 4 corners"),
        (dict(seconds=0.0), "--seconds"),
        (dict(formats="ogg"), "--format"),
        (dict(pitch_shifts=(0, 0)), "repeated"),
        (dict(pitch_shifts=(30,)), "beyond"),
        (dict(peak_dbfs=3.0), "--peak-dbfs"),
        (dict(pitch_filter=1.0), "--pitch-filter: got 1.0"),
        (dict(pitch_filter=-0.1), "--pitch-filter"),
        (dict(envelope_filter=1.5), "--envelope-filter: got 1.5"),
        (dict(envelope_filter=-1), "--envelope-filter"),
    ],
)
def test_bad_parameters_are_rejected_with_a_clear_message(changes, message):
    with pytest.raises(SoundSpaceError, match=message):
        validate_spec(spec_with(**changes))


def test_missing_unreadable_undecodable_and_short_files_are_rejected(tmp_path):
    good = tmp_path / "good.wav"
    write_wav(good, np.sin(np.arange(4000) / 10).astype(np.float32), SR)
    with pytest.raises(SoundSpaceError, match="missing.wav: no such file"):
        validate_spec(spec_with(corners=((str(good),), (str(tmp_path / "missing.wav"),))))
    text = tmp_path / "text.mp3"
    text.write_text("not audio at all")
    with pytest.raises(SoundSpaceError, match="text.mp3: cannot decode"):
        load_corner_audio(spec_with(corners=((str(good),), (str(text),))), SR, 512)
    short = tmp_path / "short.wav"
    write_wav(short, np.ones(300, np.float32) * 0.5, SR)
    with pytest.raises(SoundSpaceError, match="short.wav: 300 samples is shorter than one embedding hop"):
        load_corner_audio(spec_with(corners=((str(good),), (str(short),))), SR, 512)
    # 4000 samples is enough at the original pitch, not after shifting up three octaves (4000 / 8 = 500 < 512)
    shifted = spec_with(corners=((str(good),), (str(good),)), pitch_shifts=(0, 24))
    assert load_corner_audio(spec_with(corners=((str(good),), (str(good),))), SR, 512)[str(good)].shape == (4000,)
    with pytest.raises(SoundSpaceError, match=r"after a \+24 semitone shift"):
        load_corner_audio(shifted, SR, 1024)


def test_directories_and_unreadable_files_are_rejected(tmp_path):
    with pytest.raises(SoundSpaceError, match="is a directory"):
        validate_spec(spec_with(corners=((str(tmp_path),), (str(tmp_path),))))
    locked = tmp_path / "locked.wav"
    write_wav(locked, np.zeros(2000, np.float32), SR)
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):  # root reads anything: then the file must pass
            validate_spec(spec_with(corners=((str(locked),), (str(locked),))))
        else:
            with pytest.raises(SoundSpaceError, match="locked.wav: not readable"):
                validate_spec(spec_with(corners=((str(locked),), (str(locked),))))
    finally:
        locked.chmod(0o644)


def test_parse_corners_splits_comma_lists():
    assert parse_corners(["a.wav,b.wav", " c.wav "]) == (("a.wav", "b.wav"), ("c.wav",))
    with pytest.raises(SoundSpaceError, match="corner 2 is empty"):
        parse_corners(["a.wav", ","])


def test_cli_rejects_three_corners_before_loading_anything(tmp_path):
    files = []
    for name in "abc":
        path = tmp_path / f"{name}.wav"
        write_wav(path, np.zeros(2000, np.float32), SR)
        files.append(str(path))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "waveforms.cli",
            "soundspace",
            str(tmp_path / "no-model"),
            str(tmp_path / "out"),
            "--corners",
            *files,
            "--resolution",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "got 3 corners" in result.stderr
    assert not (tmp_path / "out").exists()
    assert "tensorflow" not in result.stderr.lower()


# ---------------------------------------------------------------- end to end with a tiny (untrained) model


@pytest.mark.slow
def test_cli_end_to_end_four_corners_combinations_and_pitch_axis(tmp_path, capsys):
    from helpers import save_autoencoder

    from waveforms.autoencoder import build_autoencoder
    from waveforms.cli import main
    from waveforms.synth import Note, render_note

    save_autoencoder(build_autoencoder(TINY_AUTOENCODER), tmp_path / "model")
    corners = []
    for family in ("organ", "reed", "bell", "string", "drum"):
        path = tmp_path / f"{family}.wav"
        write_wav(path, render_note(Note(family, 60, 100, 0), SR, seconds=0.5), SR)
        corners.append(str(path))
    out = tmp_path / "space"
    code = main(
        [
            "soundspace",
            str(tmp_path / "model"),
            str(out),
            "--corners",
            f"{corners[0]},{corners[4]}",
            *corners[1:4],
            "--resolution",
            "3",
            "--seconds",
            "0.25",
            "--pitch-axis",
            "0",
            "12",
            "--format",
            "both",
        ]
    )
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["corners"]["NW"] == ["organ.wav", "drum.wav"]
    assert len(manifest["spaces"]) == 4 and len(manifest["points"]) == 36
    assert manifest["decode"]["batch"] == 36 and manifest["decode"]["passes"] == 1  # every point in one pass
    from waveforms.audio import decode

    for entry in manifest["points"]:
        assert (
            entry["name"]
            == ("c00_" if entry["sources"]["NW"] == "organ.wav" else "c01_")
            + f"p{entry['pitch_shift']:+d}_x{entry['x']:.3f}_y{entry['y']:.3f}"
        )
        clip = decode(out / entry["files"]["wav"], SR, normalize=False)
        assert len(clip) == 4000
        assert np.max(np.abs(clip)) == pytest.approx(10 ** (-1 / 20), abs=2e-3)  # -1 dBFS
        assert (out / entry["files"]["mp3"]).stat().st_size > 0
    page = (out / "explorer.html").read_text()
    assert page.count('class="cell') == 36 and "data:audio/mpeg;base64," in page
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".wav") == sorted(
        e["files"]["wav"] for e in manifest["points"]
    )
