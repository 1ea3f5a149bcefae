"""Widgets for short clips: a GIF player for frames, and an explorer that makes a clip for each setting of its
controls, keeps it, and shows it beside the numbers measured on it.

Taught in notebook 07 (SVD: image to video); any notebook that shows tiny videos can use them. Clips are uint8
frames `[T, H, W, C]` as the pipelines return them; the GIFs come from `minigen.io.gif_bytes`, pixels enlarged
without blur, so they play in any Jupyter front end and are stored with the notebook. The reference has no such
tools.
"""

import html
import warnings

import ipywidgets as widgets
import numpy as np

from .io import check_uint8, gif_bytes


def check_clip(frames, what: str = "A clip") -> np.ndarray:
    """`frames` as a uint8 array `[T, H, W, C]` (C 1, 3 or 4: what the pipelines return), or an error that says
    what was expected."""
    return check_uint8(frames, 4, what)


def tile_clips(clips, columns: int | None = None, gap: int = 2, background: int = 255) -> np.ndarray:
    """Several clips of one size `[T, H, W, C]` as one clip, laid out in a grid of `columns` (default: one row),
    `gap` pixels of `background` apart: truth beside model, or one knob's settings side by side."""
    clips = [check_clip(clip, f"Clip {index}") for index, clip in enumerate(clips)]
    if not clips:
        raise ValueError("tile_clips needs at least one clip.")
    if any(clip.shape != clips[0].shape for clip in clips):
        raise ValueError(f"Every clip must have the same shape [T, H, W, C]; got {[list(c.shape) for c in clips]}.")
    columns = len(clips) if columns is None else columns
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}.")
    t, h, w, c = clips[0].shape
    rows = -(-len(clips) // columns)
    tiled = np.full((t, rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, c), background, np.uint8)
    for index, clip in enumerate(clips):
        top, left = (index // columns) * (h + gap), (index % columns) * (w + gap)
        tiled[:, top:top + h, left:left + w] = clip
    return tiled


def frame_strip(frames, gap: int = 1, background: int = 255) -> np.ndarray:
    """A clip's frames side by side, `[H, T W + (T - 1) gap, C]`: a still picture of a clip for a figure."""
    frames = check_clip(frames)
    return tile_clips(list(frames[:, None]), gap=gap, background=background)[0]


class ClipPlayer(widgets.VBox):
    """A clip as a looping GIF above a caption. `player.show(frames, caption)` replaces it; `player.frames` is the
    clip shown."""

    def __init__(self, frames, fps: float = 7, scale: int = 3, caption: str = ""):
        self.fps, self.scale = fps, scale  # frames per second of the GIF; each pixel shown as scale x scale
        self.image = widgets.Image(format="gif")
        self.caption = widgets.HTML()
        super().__init__([self.image, self.caption])
        self.show(frames, caption)

    def show(self, frames, caption: str | None = None) -> None:
        self.frames = check_clip(frames)
        self.image.value = gif_bytes(self.frames, self.fps, self.scale)
        if caption is not None:
            self.caption.value = f"<span style='font-size:11px'>{html.escape(caption)}</span>"


def clip_player(frames, fps: float = 7, scale: int = 3, caption: str = "") -> ClipPlayer:
    """Play uint8 frames `[T, H, W, C]` as a GIF (tile several with `tile_clips` first)."""
    return ClipPlayer(frames, fps, scale, caption)


def setting_key(values: dict) -> tuple:
    """A hashable key for a setting; floats rounded to 6 decimals, so 0.30000000000000004 from a slider is 0.3."""
    return tuple(sorted((name, round(value, 6) if isinstance(value, float) else value)
                        for name, value in values.items()))


class ClipExplorer(widgets.VBox):
    """Controls -> `generate(**values)` -> a clip, shown as a GIF with the numbers `measure(clip, values)` returns.

    `controls` maps keyword arguments of `generate` to ipywidgets value widgets (sliders with
    `continuous_update=False`, dropdowns). Each new setting calls `generate` once; the clip is kept in `cache`
    (setting -> clip) and shown again instantly when the controls come back to it. `clip_for(**values)` makes or
    reuses the clip of any setting (unset controls keep their value), so a notebook can sweep a knob, measure the
    sweep, and leave the cache full for the sliders. `measure` receives the clip and the setting that made it (to
    compare with that setting's input or ground truth) and returns {name: number}. Warnings raised by `generate` are
    shown under the clip and errors instead of it. `explorer.values`, `explorer.clip` and `explorer.measured` are
    what it shows.
    """

    def __init__(self, generate, controls: dict, measure=None, fps: float = 7, scale: int = 3,
                 cache: dict | None = None):
        for name, control in controls.items():
            if not isinstance(control, widgets.ValueWidget):
                raise ValueError(f"Control {name!r} must be an ipywidgets value widget (a slider, a dropdown), got "
                                 f"{type(control).__name__}.")
        self.generate, self.measure = generate, measure
        self.controls = dict(controls)
        self.cache = {} if cache is None else cache  # setting_key(values) -> uint8 clip
        self.notes = {}  # setting_key(values) -> the warnings its generation raised
        self.clip, self.measured = None, {}
        self.player = ClipPlayer(np.full((1, 8, 8, 3), 255, np.uint8), fps, scale)
        self.numbers = widgets.HTML()
        self.message = widgets.HTML()
        for control in self.controls.values():
            control.observe(self.update, names="value")
        super().__init__([widgets.HBox([widgets.VBox(list(self.controls.values())),
                                        widgets.VBox([self.player, self.numbers, self.message])])])
        self.update()

    @property
    def values(self) -> dict:
        """The setting the controls describe now: {keyword: value}."""
        return {name: control.value for name, control in self.controls.items()}

    def clip_for(self, **values) -> np.ndarray:
        """The clip of a setting (the controls' values where `values` leaves one out), made once and then reused."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise ValueError(f"{unknown} are not controls of this explorer; it has {sorted(self.controls)}.")
        setting = self.values | values
        key = setting_key(setting)
        if key not in self.cache:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                clip = check_clip(self.generate(**dict(key)), "generate's result")
            self.cache[key] = clip
            self.notes[key] = list(dict.fromkeys(str(warning.message) for warning in caught))
        return self.cache[key]

    def update(self, change=None) -> None:
        """Show the clip of the controls' setting and what `measure` says of it."""
        try:
            clip = self.clip_for()
        except Exception as error:  # noqa: BLE001 - an impossible setting is shown, never crashes the widget
            self.message.value = f"<pre style='color:#b00'>{html.escape(f'{type(error).__name__}: {error}')}</pre>"
            return
        self.clip = clip
        self.measured = dict(self.measure(clip, self.values)) if self.measure is not None else {}
        self.player.show(clip, "")
        rows = "".join(f"<tr><td>{html.escape(name)}</td><td style='text-align:right'>{format_number(value)}</td></tr>"
                       for name, value in self.measured.items())
        self.numbers.value = f"<table style='font-size:12px'>{rows}</table>" if rows else ""
        notes = self.notes.get(setting_key(self.values), [])
        self.message.value = "".join(f"<div style='color:#777; font-size:11px'>warning: {html.escape(note)}</div>"
                                     for note in notes)


def format_number(value) -> str:
    """A measurement for the explorer's HTML table: floats to 4 significant digits, anything else as escaped
    text."""
    return f"{value:.4g}" if isinstance(value, (float, np.floating)) else html.escape(str(value))


def clip_explorer(generate, controls: dict, measure=None, **kwargs) -> ClipExplorer:
    """Build a ClipExplorer: `generate(**values)` -> uint8 frames, `measure(frames, values)` -> {name: number}."""
    return ClipExplorer(generate, controls, measure, **kwargs)
