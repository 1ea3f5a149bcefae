"""The clip widgets build without a display: tiling and strips keep every pixel where it belongs, the player holds
a GIF, and the explorer generates each setting once, shows what it measured, and reports warnings and errors."""

import warnings

import ipywidgets as widgets
import numpy as np
import pytest

from minigen.video_widgets import clip_explorer, clip_player, frame_strip, setting_key, tile_clips


def clip(value: int, frames: int = 3, size: int = 4) -> np.ndarray:
    return np.full((frames, size, size, 3), value, np.uint8)


def test_tile_clips_lays_clips_in_a_grid_with_gaps():
    tiled = tile_clips([clip(0), clip(50), clip(100)], columns=2, gap=1)
    assert tiled.shape == (3, 4 + 1 + 4, 4 + 1 + 4, 3)
    assert (tiled[:, :4, :4] == 0).all() and (tiled[:, :4, 5:] == 50).all() and (tiled[:, 5:, :4] == 100).all()
    assert (tiled[:, 4] == 255).all() and (tiled[:, 5:, 5:] == 255).all()  # the gap and the empty cell
    assert tile_clips([clip(0), clip(1)], gap=0).shape == (3, 4, 8, 3)  # default: one row


def test_tile_clips_refuses_mismatched_or_float_clips():
    with pytest.raises(ValueError, match="same shape"):
        tile_clips([clip(0), clip(0, frames=2)])
    with pytest.raises(ValueError, match="uint8 frames"):
        tile_clips([np.zeros((3, 4, 4, 3), np.float32)])


def test_frame_strip_puts_frames_side_by_side():
    frames = np.stack([np.full((2, 2, 3), value, np.uint8) for value in (10, 20, 30)])
    strip = frame_strip(frames, gap=1)
    assert strip.shape == (2, 3 * 2 + 2, 3)
    assert strip[0, 0, 0] == 10 and strip[0, 3, 0] == 20 and strip[0, 6, 0] == 30 and strip[0, 2, 0] == 255


def test_clip_player_shows_a_gif_and_replaces_it():
    player = clip_player(clip(0), fps=4, scale=2, caption="first")
    first = bytes(player.image.value)
    assert first.startswith(b"GIF8") and "first" in player.caption.value
    player.show(clip(200), "second")
    assert bytes(player.image.value) != first and "second" in player.caption.value
    assert (player.frames == 200).all()


def make_explorer(**kwargs):
    calls = []

    def generate(brightness, frames):
        calls.append((brightness, frames))
        return clip(int(brightness), frames=frames)

    controls = {"brightness": widgets.FloatSlider(10.0, min=0, max=250, continuous_update=False),
                "frames": widgets.Dropdown(options=[2, 3], value=2)}
    explorer = clip_explorer(generate, controls, measure=lambda c, setting: {"mean": float(c.mean()), "frames": len(c),
                                                                  "asked": setting["brightness"]},
                             **kwargs)
    return explorer, calls


def test_clip_explorer_generates_each_setting_once_and_shows_its_measures():
    explorer, calls = make_explorer()
    assert calls == [(10.0, 2)] and explorer.values == {"brightness": 10.0, "frames": 2}
    assert explorer.measured == {"mean": 10.0, "frames": 2, "asked": 10.0} and "10" in explorer.numbers.value
    first_gif = bytes(explorer.player.image.value)

    explorer.controls["brightness"].value = 100.0
    assert calls[-1] == (100.0, 2) and explorer.measured["mean"] == explorer.measured["asked"] == 100.0
    assert bytes(explorer.player.image.value) != first_gif

    explorer.controls["brightness"].value = 10.0  # back to a setting it has seen: no new call
    assert len(calls) == 2 and explorer.measured["mean"] == 10.0


def test_clip_explorer_sweeps_fill_the_cache_the_controls_read():
    explorer, calls = make_explorer()
    swept = [explorer.clip_for(brightness=b) for b in (0.0, 50.0)]  # unset controls keep their value (frames 2)
    assert [c.shape[0] for c in swept] == [2, 2] and len(calls) == 3
    explorer.controls["brightness"].value = 50.0
    assert len(calls) == 3 and explorer.clip is swept[1]
    assert setting_key({"x": 0.1 + 0.2}) == setting_key({"x": 0.3})  # slider round-off hits the same entry
    with pytest.raises(ValueError, match="not controls"):
        explorer.clip_for(contrast=1.0)


def test_clip_explorer_shows_warnings_and_errors_instead_of_crashing():
    def generate(level):
        if level > 5:
            raise ValueError("level too high")
        if level > 2:
            warnings.warn("level above 2 was never seen in training", stacklevel=2)
        return clip(level)

    explorer = clip_explorer(generate, {"level": widgets.IntSlider(1, min=0, max=9)})
    assert explorer.message.value == ""
    explorer.controls["level"].value = 3
    assert "never seen" in explorer.message.value and (explorer.clip == 3).all()
    explorer.controls["level"].value = 7
    assert "level too high" in explorer.message.value and (explorer.clip == 3).all()  # the last good clip stays


def test_clip_explorer_refuses_controls_that_are_not_value_widgets():
    with pytest.raises(ValueError, match="value widget"):
        clip_explorer(lambda level: clip(level), {"level": widgets.Button()})
