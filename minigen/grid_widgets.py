"""Views x time grids: SV4D's and SV4D 2.0's schedules drawn pass by pass, what each of the multi-view UNet's
mixers lets a token see, blends switched off, and a player for the grid beside its truth.

Taught in notebook 09 (SV4D and SV4D 2.0). The schedules come from the pipelines' own functions
(`minigen.pipelines.sv4d.sv4d_schedule`, `window_starts`) and the mixers are `minigen.nn.multiview`'s; windows
sampled from views of your choosing are `SV4D2Pipeline.generate(given_views=...)`. The reference has no such tools;
its flows are scripts/sampling/simple_video_sample_4d.py and simple_video_sample_4d2.py.
"""

import contextlib
import html
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO

import ipywidgets as widgets
import numpy as np
import PIL.Image
import torch
from einops import rearrange
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from . import io
from ._render import figure_png
from .camera import SV3D_NUM_FRAMES
from .data import scenes
from .nn.multiview import MultiviewTransformer, ResBlockWithTime
from .nn.video import AlphaBlender
from .pipelines.sv4d import (
    SV4D2Pipeline,
    SV4DPipeline,
    WindowSample,
    sv4d_schedule,
    window_starts,
)
from .presets import get_preset
from .video_widgets import tile_clips

# ---------------------------------------------------------------------------------------------- schedules

MODELS = ("sv4d", "sv4d2", "sv4d2_8views", "tiny_sv4d2")  # the multi-view video models the schedules cover


def window_shape(model: str) -> tuple[int, int]:
    """(T, V): the times and novel views one pass of `model` denoises, read from its preset's conditioner (the
    frames of cond_motion and of cond_view), without building a network."""
    frames = {entry.input_key: entry.embedder.params.get("n_cond_frames")
              for entry in get_preset(model).conditioner.emb_models}
    if frames.get("cond_motion") is None or frames.get("cond_view") is None:
        raise ValueError(f"{model!r} reads no cond_motion / cond_view: it is not an SV4D model; expected one of "
                         f"{MODELS}.")
    return frames["cond_motion"], frames["cond_view"]


@dataclass(frozen=True)
class Pass:
    """One sampler run of a multi-view video model: the rows (times) of the image matrix it fills."""

    name: str
    times: tuple[int, ...]  # the times it generates, ascending (every novel view of each)
    views_from: tuple[int, ...]  # the times whose views it reads as cond_view (SV4D's dense windows: two)
    frames_per_pass: int  # T x V frames, or SV3D's orbit


def schedule(model: str, num_frames: int | None = None) -> list[Pass]:
    """The passes `model` makes over a video of `num_frames` frames (default: the model's), in order.

    SV4D (sv4d, tiny_sv4d): an SV3D orbit of frame 0, one anchor pass, then dense windows (`sv4d_schedule`); its
    frame count is fixed, T (T - 1) + 1. SV4D 2.0: windows from `window_starts`, each reading the views at its
    first time, none for the window at time 0."""
    T, V = window_shape(model)
    if model in SV4DPipeline.DEFAULTS:
        fixed = T * (T - 1) + 1
        if num_frames not in (None, fixed):
            raise ValueError(f"{model} always makes {fixed} frames (T (T - 1) + 1 with T = {T}), not {num_frames}.")
        anchors, starts = sv4d_schedule(T)
        return [Pass("SV3D orbit", (0,), (), SV3D_NUM_FRAMES), Pass("anchors", tuple(anchors), (0,), T * V)] + [
            Pass(f"dense {t0}", tuple(range(t0, t0 + T)), (t0, t0 + T - 1), T * V) for t0 in starts]
    if model not in SV4D2Pipeline.DEFAULTS:
        raise ValueError(f"No schedule for {model!r}; expected one of {MODELS}.")
    defaults = SV4D2Pipeline.DEFAULTS[model]
    num_frames = defaults.num_frames if num_frames is None else num_frames
    if num_frames < T:
        raise ValueError(f"{model} covers {T} times a pass, so it needs at least {T} frames, got {num_frames}.")
    starts = window_starts(num_frames, T, T - defaults.window_overlap)
    return [Pass(f"window {t0}", tuple(range(t0, t0 + T)), (t0,) if t0 else (), T * V) for t0 in starts]


def schedule_counts(model: str, num_frames: int | None = None, num_steps: int | None = None) -> dict:
    """What a schedule costs: passes, guided UNet forwards (one per sampler step and pass: the guided batch holds
    the conditional and unconditional halves), novel-view images generated and kept."""
    passes = schedule(model, num_frames)
    T, V = window_shape(model)
    defaults = (SV4DPipeline.DEFAULTS | SV4D2Pipeline.DEFAULTS)[model]
    num_steps = defaults.num_steps if num_steps is None else num_steps
    frames = max(max(p.times) for p in passes) + 1
    return {"passes": len(passes), "guided forwards": len(passes) * num_steps,
            "images generated": sum(p.frames_per_pass for p in passes), "images kept": frames * V,
            "frames": frames, "T x V": f"{T} x {V}", "steps": num_steps}


FILLED_BEFORE, FILLING, INPUT, MOTION = "#c6dbef", "#e6550d", "#bdbdbd", "#636363"


def schedule_figure(model: str, num_frames: int | None = None, panel_width: float = 1.0,
                    dpi: int = 72) -> Figure:
    """The schedule pass by pass, one panel each: the image matrix (rows = times, columns = the input view then
    the novel views), the cells this pass fills (orange), those earlier passes filled (blue), the input video
    (grey; dark where this pass reads it as cond_motion) and, outlined, the rows whose views it reads."""
    passes = schedule(model, num_frames)
    _, V = window_shape(model)
    rows = max(max(p.times) for p in passes) + 1
    height = min(0.17 * rows + 1.3, 4.7)
    figure = Figure(figsize=(max(panel_width * len(passes) + 0.4, 5.2), height), dpi=dpi)  # the legend's width
    axes = figure.subplots(1, len(passes), squeeze=False)[0]
    filled = np.zeros((rows, V + 1), bool)
    for ax, step in zip(axes, passes, strict=True):
        colours = np.full((rows, V + 1, 3), 1.0)
        colours[:, 0] = _rgb(INPUT)
        colours[filled] = _rgb(FILLED_BEFORE)
        if step.name != "SV3D orbit":
            colours[list(step.times), 0] = _rgb(MOTION)  # cond_motion: the input video at the pass's times
        colours[list(step.times), 1:] = _rgb(FILLING)
        ax.imshow(colours, aspect="auto", interpolation="nearest")
        for time in step.views_from:
            ax.add_patch(Rectangle((0.5, time - 0.5), V, 1, fill=False, lw=1.6, ec="k"))
        ax.set_xticks(np.arange(0, V + 1, max(1, V // 4)))
        ax.set_yticks(np.arange(0, rows, max(1, rows // 5)))
        ax.set_xticks(np.arange(-0.5, V + 1), minor=True)
        ax.set_yticks(np.arange(-0.5, rows), minor=True)
        ax.grid(which="minor", color="w", lw=0.4)
        ax.tick_params(which="both", length=0, labelsize=7)
        ax.set_title(step.name, fontsize=8)
        filled[list(step.times), 1:] = True
    axes[0].set_ylabel("time", fontsize=8)
    axes[0].set_xlabel("view (0 = input)", fontsize=8)
    figure.suptitle(f"{model}: {len(passes)} passes over {rows} frames x {V} novel views", fontsize=9)
    legend = [Patch(color=FILLING, label="generated by the pass"),
              Patch(color=FILLED_BEFORE, label="by earlier passes"),
              Patch(color=INPUT, label="input video"), Patch(color=MOTION, label="input frames it reads"),
              Patch(fill=False, ec="k", label="views it reads (cond_view)")]
    figure.legend(handles=legend, loc="lower center", ncol=3, fontsize=7, frameon=False)
    figure.tight_layout(pad=0.3, w_pad=0.3, rect=(0, 0.62 / height, 1, 1))
    return figure


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])


class ScheduleExplorer(widgets.VBox):
    """A model, a frame count and a step count -> the schedule's picture and its cost. `seconds_per_forward`
    ({model: seconds}) adds an estimate of the sampling time from a measured guided forward."""

    def __init__(self, seconds_per_forward: dict | None = None, model: str = "sv4d2", dpi: int = 60):
        self.seconds_per_forward, self.dpi = dict(seconds_per_forward or {}), dpi
        style = {"description_width": "90px"}
        self.model = widgets.Dropdown(options=MODELS, value=model, description="model", style=style)
        self.frames = widgets.IntSlider(21, min=3, max=48, description="frames", continuous_update=False, style=style)
        self.steps = widgets.IntSlider(50, min=1, max=50, description="steps", continuous_update=False, style=style)
        self.image = widgets.Image(format="png")
        self.numbers = widgets.HTML()
        self.cache: dict = {}
        self.model.observe(self.model_changed, names="value")
        for control in (self.frames, self.steps):
            control.observe(self.update, names="value")
        super().__init__([widgets.HBox([self.model, self.frames, self.steps]), self.numbers, self.image])
        self.model_changed()

    def model_changed(self, change=None) -> None:
        """A new model: its scripts' step count, and the frames slider off for SV4D (its frame count is fixed)."""
        self.frames.disabled = self.model.value in SV4DPipeline.DEFAULTS
        self.steps.value = (SV4DPipeline.DEFAULTS | SV4D2Pipeline.DEFAULTS)[self.model.value].num_steps
        self.update()  # again if the steps changed: the picture is cached

    def update(self, change=None) -> None:
        """Show the schedule of the chosen model and frame count (each picture drawn once) and its cost in
        network passes; a frame count the model cannot take says why instead."""
        model = self.model.value
        frames = None if model in SV4DPipeline.DEFAULTS else self.frames.value
        key = (model, frames)
        try:
            counts = schedule_counts(model, frames, self.steps.value)
            if key not in self.cache:
                self.cache[key] = figure_png(schedule_figure(model, frames, dpi=self.dpi), 32)
        except ValueError as error:
            self.numbers.value = f"<pre style='color:#b00'>{html.escape(str(error))}</pre>"
            return
        self.image.value = self.cache[key]
        note = " (SV4D's frame count is fixed)" if frames is None else ""
        seconds = self.seconds_per_forward.get(model)
        estimate = (f"; about {counts['guided forwards'] * seconds:.0f} s of guided forwards at the measured "
                    f"{seconds:.2f} s each" if seconds else "")
        self.numbers.value = (f"<span style='font-size:12px'>{counts['frames']} frames{note}: {counts['passes']} "
                              f"passes of {counts['T x V']}, {counts['guided forwards']} guided forwards"
                              f"{' (plus SV3D)' if model in SV4DPipeline.DEFAULTS else ''}; "
                              f"{counts['images generated']} images generated for {counts['images kept']} kept"
                              f"{estimate}</span>")


def schedule_explorer(seconds_per_forward: dict | None = None, model: str = "sv4d2") -> ScheduleExplorer:
    """Build the schedule explorer (model dropdown, frames and steps sliders)."""
    return ScheduleExplorer(seconds_per_forward, model)


# ------------------------------------------------------------------------------------ the mixers' reach

MIXERS = ("spatial", "view", "motion")


@torch.no_grad()
def mixer_reach(layer: MultiviewTransformer, mixer: str, times: int, views: int, height: int, width: int,
                probe: tuple[int, int, int, int], use_3d_attention: bool | None = None, seed: int = 0) -> torch.Tensor:
    """How much each token of a `times x views x height x width` grid changes, `t v h w`, when the token at
    `probe` = (time, view, row, column) changes, through one mixer of `layer` as its forward pass runs it:
    "spatial" (attention inside each image), "view" (layer.view_attention) or "motion" (layer.motion_attention),
    blend included. Zero means the mixer never lets the two tokens meet. `use_3d_attention` overrides the
    layer's layout of the view attention (SV4D 2.0: True, SV4D: False)."""
    if mixer not in MIXERS:
        raise ValueError(f"Unknown mixer {mixer!r}; expected one of {MIXERS}.")
    generator = torch.Generator().manual_seed(seed)
    dim = layer.transformer_blocks[0].attn1.to_q.in_features
    sizes = dict(b=1, t=times, v=views, s=height * width)
    tokens = torch.randn(times * views, height * width, dim, generator=generator)  # (b t v) s c

    def run(x):
        if mixer == "spatial":
            context = torch.randn(times * views, 1, _context_dim(layer.transformer_blocks[0]), generator=generator)
            return layer.transformer_blocks[0](x, context=context)
        indicator = torch.zeros(1, times * views)
        if mixer == "motion":
            context = torch.randn(views * height * width, 1, _context_dim(layer.motion_blocks[0]), generator=generator)
            return layer.motion_attention(layer.motion_blocks[0], x, torch.zeros(times, 1, dim), context, sizes,
                                          indicator)
        three_d = layer.use_3d_attention if use_3d_attention is None else use_3d_attention
        context = torch.randn(times * height * width, 1, _context_dim(layer.time_mix_blocks[0]), generator=generator)
        view_emb = torch.zeros(views * (height * width if three_d else 1), 1, dim)
        with _attribute(layer, "use_3d_attention", three_d):
            return layer.view_attention(layer.time_mix_blocks[0], x, view_emb, context, sizes, indicator)

    state = generator.get_state()
    before = run(tokens)
    changed = tokens.clone()
    time, view, row, column = probe
    # a random change: LayerNorm would remove a constant shift of every channel
    changed[time * views + view, row * width + column] += torch.randn(dim, generator=generator)
    generator.set_state(state)  # the same contexts for both runs
    after = run(changed)
    difference = (after - before).abs().mean(-1)  # (t v) s
    return rearrange(difference, "(t v) (h w) -> t v h w", v=views, h=height)


@torch.no_grad()
def resblock_reach(block: ResBlockWithTime, times: int, views: int, height: int, width: int,
                   probe: tuple[int, int, int, int], seed: int = 0) -> torch.Tensor:
    """As `mixer_reach` for a ResBlockWithTime: per-image ResBlock, then the temporal ResBlock whose kernel runs
    along the (t v) order of the frames, blend included. `t v h w`."""
    generator = torch.Generator().manual_seed(seed)
    channels = block.in_layers[-1].in_channels
    x = torch.randn(times * views, channels, height, width, generator=generator)
    emb = torch.randn(1, block.emb_layers[-1].in_features, generator=generator).expand(times * views, -1)
    changed = x.clone()
    time, view, row, column = probe
    changed[time * views + view, :, row, column] += torch.randn(channels, generator=generator)
    difference = (block(changed, emb, times * views) - block(x, emb, times * views)).abs().mean(1)  # (t v) h w
    return rearrange(difference, "(t v) h w -> t v h w", v=views)


def _context_dim(block) -> int:
    return block.attn2.to_k.in_features


@contextlib.contextmanager
def _attribute(obj, name: str, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def reach_figure(reaches: dict, probe: tuple[int, int, int, int], dpi: int = 72) -> Figure:
    """Panels `name -> t v h w` change (from `mixer_reach` / `resblock_reach`): each a grid of times (rows) x views
    (columns) of small images, darker where the token changed more (log scale), white where it did not change."""
    figure = Figure(figsize=(2.6 * len(reaches), 2.5), dpi=dpi)
    axes = figure.subplots(1, len(reaches), squeeze=False)[0]
    for ax, (name, reach) in zip(axes, reaches.items(), strict=True):
        t, v, h, w = reach.shape
        mosaic = np.full((t * (h + 1) - 1, v * (w + 1) - 1), np.nan)
        for time in range(t):
            for view in range(v):
                mosaic[time * (h + 1):time * (h + 1) + h, view * (w + 1):view * (w + 1) + w] = reach[time, view]
        logs = np.where(mosaic > 1e-7, np.log10(np.maximum(mosaic, 1e-7)), np.nan)
        peak = np.nanmax(logs)
        ax.imshow(np.where(np.isnan(mosaic), 1.0, 0.93), cmap="gray", vmin=0, vmax=1)  # tokens grey, gaps white
        ax.imshow(logs, cmap="Reds", vmin=peak - 4, vmax=peak, interpolation="nearest")
        time, view, row, column = probe
        ax.add_patch(Rectangle((view * (w + 1) + column - 0.5, time * (h + 1) + row - 0.5), 1, 1, fill=False,
                               ec="C0", lw=1.5))
        ax.set_xticks([view * (w + 1) + (w - 1) / 2 for view in range(v)], [f"v{view}" for view in range(v)])
        ax.set_yticks([time * (h + 1) + (h - 1) / 2 for time in range(t)], [f"t{time}" for time in range(t)])
        ax.tick_params(length=0, labelsize=7)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title(name, fontsize=8)
    figure.tight_layout(pad=0.3)
    return figure


# --------------------------------------------------------------------------------------------- ablations

BLENDS = {"view": "time_mixer", "motion": "time_mixer_motion", "temporal conv": "time_mixer"}


def blenders(network: torch.nn.Module, which: str) -> list[AlphaBlender]:
    """The AlphaBlenders of one kind of mixer: "view" (each MultiviewTransformer's view attention), "motion"
    (its motion attention) or "temporal conv" (each ResBlockWithTime's temporal ResBlock)."""
    if which not in BLENDS:
        raise ValueError(f"Unknown blend {which!r}; expected one of {sorted(BLENDS)}.")
    owner = ResBlockWithTime if which == "temporal conv" else MultiviewTransformer
    found = []
    for module in network.modules():
        if isinstance(module, owner):
            if module.time_mix_legacy:
                raise ValueError(f"{type(module).__name__} uses time_mix_legacy: its blend is not an AlphaBlender.")
            if which == "motion" and not module.separate_motion_merge_factor:
                raise ValueError("This network blends motion with the view weight (no separate_motion_merge_factor):"
                                 " switch both off with 'view'.")
            found.append(getattr(module, BLENDS[which]))
    if not found:
        raise ValueError(f"The network has no {owner.__name__}: it is not a multi-view video UNet.")
    return found


@contextlib.contextmanager
def blend_off(network: torch.nn.Module, *which: str):
    """Inside the block, the chosen mixers ("view", "motion", "temporal conv") add nothing: their blend weight
    alpha (of what the tokens were before the mixer) is 1. The trained weights come back on leaving."""
    saved = [(blender, blender.mix_factor.detach().clone()) for kind in which for blender in blenders(network, kind)]
    try:
        with torch.no_grad():
            for blender, _ in saved:  # "fixed" uses the value itself; the learned kinds its sigmoid
                blender.mix_factor.fill_(1.0 if blender.merge_strategy == "fixed" else 1e4)
        yield
    finally:
        with torch.no_grad():
            for blender, value in saved:
                blender.mix_factor.copy_(value)


def blend_weights(network: torch.nn.Module, which: str) -> list[float]:
    """alpha of each blender of one kind (the share the tokens keep; 1 - alpha comes from the mixer)."""
    return [float(blender.get_alpha(torch.zeros(1, 1)).flatten()[0]) for blender in blenders(network, which)]


# ------------------------------------------------------------------------------------------ sampling


@torch.inference_mode()
def window_images(windows: Sequence[WindowSample], num_frames: int) -> torch.Tensor:
    """The novel views `t v 3 H W` the first windows give `num_frames` times, each time from the last window that
    generated it (what `generate` returns for a video of `num_frames` frames, when these are its windows)."""
    first = windows[0].images
    images = torch.zeros(num_frames, *first.shape[1:])
    covered = torch.zeros(num_frames, dtype=torch.bool)
    for window in windows:
        inside = window.times < num_frames
        images[window.times[inside]] = window.images[inside]
        covered[window.times[inside]] = True
    if not covered.all():
        raise ValueError(f"These windows do not cover times {torch.nonzero(~covered).flatten().tolist()}.")
    return images


def longer_clip(dataset: scenes.MovingObjectDataset, index: int, num_frames: int) -> dict:
    """Item `index` of a MovingObjectDataset, its motion carried on past the clip's end: `num_frames` frames at the
    dataset's own spacing in time (1 / (its frames - 1)), so the first frames are the item's, bit for bit, and the
    object keeps moving, turning and squashing at the same speeds. A longer video for the autoregressive windows."""
    if dataset.num_frames < 2 or num_frames < 1:
        raise ValueError(f"Need a dataset of clips of at least 2 frames and num_frames >= 1, got "
                         f"{dataset.num_frames} and {num_frames}.")
    return dataset.clip(index, torch.arange(num_frames) / (dataset.num_frames - 1))


# ------------------------------------------------------------------------------------------ the player


def grid_frames(rows: dict, gap: int = 2) -> np.ndarray:
    """Rows `name -> t v 3 H W` in [-1, 1] (truth, model, ...) as one clip `[t, H', W', 3]`: at each time the rows
    stacked, the views side by side."""
    clips = [io.to_uint8(rearrange(grid.float().clamp(-1, 1), "t v c h w -> v t h w c")) for grid in rows.values()]
    views = clips[0].shape[0]
    return tile_clips([view for clip in clips for view in clip], columns=views, gap=gap)


class GridPlayer(widgets.VBox):
    """Views x time grids beside their truth: pick an entry (an object, an ablation), then play the grid over time
    or step through it with the time slider (continuous_update=False). `entries` maps a name to rows
    `row name -> t v 3 H W` in [-1, 1]; every picture is made once and kept. `play=False` starts on the still of
    time 0 (a PNG: a notebook stores a fraction of the GIF's bytes)."""

    def __init__(self, entries: dict, caption: str = "", fps: float = 2, scale: int = 2, play: bool = True):
        if not entries:
            raise ValueError("The grid player needs at least one entry: {name: {row name: t v 3 H W}}.")
        times = {next(iter(rows.values())).shape[0] for rows in entries.values()}
        if len(times) != 1:
            raise ValueError(f"Every entry must have the same number of times, got {sorted(times)}.")
        self.entries, self.fps, self.scale = entries, fps, scale
        self.cache: dict = {}
        self.entry = widgets.Dropdown(options=list(entries), description="show")
        self.play = widgets.Checkbox(play, description="play", indent=False, layout={"width": "70px"})
        self.time = widgets.IntSlider(0, min=0, max=times.pop() - 1, description="time", continuous_update=False)
        self.image = widgets.Image()
        self.caption = widgets.HTML(f"<span style='font-size:11px'>{html.escape(caption)}</span>")
        for control in (self.entry, self.play, self.time):
            control.observe(self.update, names="value")
        super().__init__([widgets.HBox([self.entry, self.play, self.time]), self.image, self.caption])
        self.update()

    def picture(self, name: str, time: int | None) -> tuple[bytes, str]:
        """The GIF of the whole grid (time None) or the PNG of one time, made once."""
        key = (name, time)
        if key not in self.cache:
            frames = grid_frames(self.entries[name])
            if time is None:
                self.cache[key] = (io.gif_bytes(frames, self.fps, self.scale), "gif")
            else:
                still = frames[time].repeat(self.scale, 0).repeat(self.scale, 1)
                self.cache[key] = (png_bytes(still), "png")
        return self.cache[key]

    def update(self, change=None) -> None:
        """Show the chosen entry: its GIF while "play" is on (the time slider then off), else its still at the
        slider's time."""
        self.time.disabled = self.play.value
        value, kind = self.picture(self.entry.value, None if self.play.value else self.time.value)
        self.image.format, self.image.value = kind, value


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 image `[H, W, 3]` as PNG bytes for an ipywidgets.Image."""
    buffer = BytesIO()
    PIL.Image.fromarray(image).save(buffer, format="png", optimize=True)
    return buffer.getvalue()


def grid_player(entries: dict, caption: str = "", **kwargs) -> GridPlayer:
    """Build the grid player: {entry name: {row name: t v 3 H W in [-1, 1]}}."""
    return GridPlayer(entries, caption, **kwargs)
