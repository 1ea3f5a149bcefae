"""Orbits beside their truth: sample a camera-conditioned model at any trajectory, draw it above the renderer's
views, and the camera explorer of notebook 06 driving the model.

Taught in notebook 08 (SV3D). The truth comes from `minigen.data.scenes`, whose cameras follow `minigen.camera`
exactly, so every novel view can be scored; the model is any SV3D_p `SV3DPipeline` (the course's tiny_sv3d on a
CPU). The reference has no such tools; `sample_orbit` is `scripts/sampling/simple_video_sample.py`'s sv3d_p
branch on a tensor, with the guider exposed.
"""

from dataclasses import dataclass

import ipywidgets as widgets
import torch
from IPython.display import Image
from matplotlib.figure import Figure

from . import io
from ._render import figure_png
from .camera import Trajectory, relative_azimuths_deg
from .camera_widgets import CameraExplorer
from .data import scenes
from .recipes.quality import as_uint8, psnr, to_unit  # as_uint8: orbits `v 3 H W` -> uint8 views
from .video_widgets import tile_clips

PNG_COLOURS = 128  # the widget's PNG palette: enough for the renders' smooth shading, still small to store


# ------------------------------------------------------------------------------------------------- sampling


@torch.inference_mode()
def sample_orbit(pipeline, image: torch.Tensor, trajectory: Trajectory, *, seed: int = 0, num_steps: int | None = None,
                 cfg: float | None = None, min_cfg: float | None = None, guider=None) -> torch.Tensor:
    """The model's orbit `v 3 H W` in [-1, 1] at the trajectory's cameras, from `image` (`1 3 H W` in [-1, 1]), the
    view from the trajectory's LAST camera (SV3D_p's input view); the last frame returned is that image.

    `cfg` / `min_cfg` set the preset's triangle guider (peak and ends); `guider` replaces it altogether (any guider
    with one scale per frame, e.g. `LinearPredictionGuider`). Same arguments, same orbit: the noise comes from `seed`.
    """
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"Expected the input view as one image (1, 3, H, W) in [-1, 1], got {tuple(image.shape)}.")
    num_frames = trajectory.num_frames
    values = pipeline.conditions(num_frames, trajectory.elevations_deg, trajectory.azimuths_deg)
    sampler = pipeline.make_sampler(num_steps, num_frames=num_frames, cfg=cfg, min_cfg=min_cfg, progress=False)
    if guider is not None:
        if len(guider.frame_scales) != num_frames:
            raise ValueError(f"The guider has {len(guider.frame_scales)} frame scales; the trajectory has "
                             f"{num_frames} frames.")
        sampler.guider = guider
    generator = torch.Generator().manual_seed(seed)
    sample = pipeline.generate(image, values, num_frames, sampler, generator=generator)
    return sample.decoded.float().clamp(-1, 1)


def view_psnr(images: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each view `v 3 H W` against the truth, both in [-1, 1] (`minigen.recipes.quality.psnr`)."""
    if images.shape != truth.shape:
        raise ValueError(f"images {tuple(images.shape)} and truth {tuple(truth.shape)} must have the same shape.")
    return psnr(to_unit(images), to_unit(truth))


# ------------------------------------------------------------------------------------------------- pictures


def camera_titles(trajectory: Trajectory) -> list[str]:
    """One short title per view: its azimuth relative to the input view and its elevation."""
    relative = relative_azimuths_deg(trajectory.azimuths_deg).tolist()
    return [f"{azimuth:+.0f}°, el {elevation:.0f}°" if index < trajectory.num_frames - 1 else
            f"input, el {elevation:.0f}°"
            for index, (azimuth, elevation) in enumerate(zip(relative, trajectory.elevations_deg, strict=True))]


def views_figure(rows: dict, column_titles=None, notes: dict | None = None, width: float = 1.05,
                 dpi: int = 72) -> Figure:
    """Rows of views, `name -> v 3 H W` in [-1, 1], one column per view; `notes[name]` adds one line per view
    under that row (e.g. its PSNR)."""
    notes = notes or {}
    names = list(rows)
    count = max(len(rows[name]) for name in names)
    figure = Figure(figsize=(width * count + 0.9, width * len(names) + 0.3 + 0.15 * bool(notes)), dpi=dpi)
    axes = figure.subplots(len(names), count, squeeze=False)
    for row, name in enumerate(names):
        for column in range(count):
            ax = axes[row, column]
            ax.set(xticks=[], yticks=[])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if column >= len(rows[name]):
                continue
            ax.imshow(((rows[name][column].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy())
            if row == 0 and column_titles is not None:
                ax.set_title(column_titles[column], fontsize=7)
            if name in notes:
                ax.set_xlabel(notes[name][column], fontsize=7)
        axes[row, 0].set_ylabel(name, fontsize=8)
    figure.tight_layout(pad=0.3, w_pad=0.2, h_pad=0.3)
    return figure


def views_image(rows: dict, column_titles=None, notes: dict | None = None, **kwargs) -> Image:
    """`views_figure` as a PNG of PNG_COLOURS colours for a notebook to show: about a fifth of the bytes, which
    matters when notebooks keep their outputs."""
    return Image(figure_png(views_figure(rows, column_titles, notes, **kwargs), PNG_COLOURS))


def orbit_gif(*orbits: torch.Tensor, fps: float = 3, scale: int = 2) -> bytes:
    """Orbits `v 3 H W` in [-1, 1] side by side (`video_widgets.tile_clips`), as an animated GIF for
    `ipywidgets.Image(format="gif")`."""
    return io.gif_bytes(tile_clips([as_uint8(orbit) for orbit in orbits]), fps=fps, scale=scale)


# --------------------------------------------------------------------------------------------- the explorer


@dataclass
class OrbitResult:
    """One explorer sample: the cameras, the renderer's truth, the model's views and each view's PSNR."""

    trajectory: Trajectory
    truth: torch.Tensor  # v 3 H W in [-1, 1]; the last view is the model's input
    generated: torch.Tensor  # v 3 H W in [-1, 1]; the last view is the input itself
    psnr: torch.Tensor  # v: dB of each generated view against the truth (the input view's is exact)

    @property
    def novel_psnr(self) -> float:
        """Mean PSNR over the novel views (the input view excluded)."""
        return self.psnr[:-1].mean().item()


class OrbitExplorer(widgets.VBox):
    """The camera explorer (notebook 06) driving an SV3D_p pipeline, one of `objects` at a time.

    Move the sliders to choose the cameras, pick an object, press "sample": the renderer draws the truth at those
    cameras, its last view goes to the model as the input view, and the model's orbit appears under the truth
    with each view's PSNR, plus an animation. Samples are cached by (object, cameras, seed), so going back is free.
    The explorer is a widget (display it); `explorer.sample()` does what the button does.
    """

    def __init__(self, pipeline, objects: list, *, seed: int = 0, num_steps: int | None = None, size: int = 64,
                 dpi: int = 72):
        if not objects:
            raise ValueError("The explorer needs at least one scene object (minigen.data.scenes.random_object).")
        self.pipeline, self.objects, self.num_steps, self.size, self.dpi = pipeline, list(objects), num_steps, size, dpi
        self.cameras = CameraExplorer(dpi)
        self.cameras.num_frames.value = pipeline.defaults.num_frames  # what the model was trained on
        style = {"description_width": "110px"}
        self.object = widgets.Dropdown(options=[(f"object {i} ({o.shape})", i) for i, o in enumerate(self.objects)],
                                       description="object", style=style)
        self.seed = widgets.IntText(seed, description="seed", style=style, layout={"width": "200px"})
        self.button = widgets.Button(description="sample", button_style="primary", icon="play")
        self.button.on_click(lambda _: self.sample())
        self.status = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.animation = widgets.Image(format="gif")
        super().__init__([
            self.cameras,
            widgets.HBox([self.object, self.seed, self.button]),
            self.status, self.image, widgets.HBox([widgets.HTML("truth | model "), self.animation]),
        ])
        self.cache: dict = {}
        self.result: OrbitResult | None = None

    def key(self, trajectory: Trajectory) -> tuple:
        """What makes a sample: object, cameras, seed and step count (the cache's key)."""
        return (self.object.value, trajectory.elevations_deg, trajectory.azimuths_deg, self.seed.value,
                self.num_steps)

    def compute(self, trajectory: Trajectory) -> OrbitResult:
        """Render the truth at the trajectory's cameras and sample the model from its last view (cached)."""
        key = self.key(trajectory)
        if key not in self.cache:
            truth = scenes.render(self.objects[self.object.value], trajectory.elevations_deg,
                                  trajectory.azimuths_deg, size=self.size)
            generated = sample_orbit(self.pipeline, truth[-1:], trajectory, seed=self.seed.value,
                                     num_steps=self.num_steps)
            self.cache[key] = OrbitResult(trajectory, truth, generated, view_psnr(generated, truth))
        return self.cache[key]

    def sample(self) -> OrbitResult | None:
        """Sample the current cameras and object, and show the result (None if the cameras are invalid)."""
        trajectory = self.cameras.trajectory
        if trajectory is None or self.cameras.message.value:
            self.status.value = "<span style='color:#b00'>Fix the cameras first (see the message above).</span>"
            return None
        try:
            result = self.compute(trajectory)
        except ValueError as error:  # e.g. an orbit that does not go round in one direction
            self.status.value = f"<pre style='color:#b00'>{error}</pre>"
            return None
        self.show(result)
        return result

    def show(self, result: OrbitResult) -> None:
        """Put a sample on screen: the mean PSNR of the novel views (and a warning for a view count the model was
        not trained on), truth above model with each view's PSNR, and the animation."""
        trained = self.pipeline.defaults.num_frames
        views = result.trajectory.num_frames
        warning = (f" The model was trained on {trained}-view orbits; {views} views are outside its training."
                   if views != trained else "")
        self.status.value = (f"object {self.object.value}, {views} views, seed {self.seed.value}: novel views at "
                             f"<b>{result.novel_psnr:.2f} dB</b> mean PSNR against the truth.{warning}")
        figure = views_figure({"truth": result.truth, "model": result.generated}, camera_titles(result.trajectory),
                              {"model": [f"{value:.1f} dB" for value in result.psnr[:-1].tolist()] + ["(input)"]},
                              dpi=self.dpi)
        self.image.value = figure_png(figure, PNG_COLOURS)
        self.animation.value = orbit_gif(result.truth, result.generated)
        self.result = result


def orbit_explorer(pipeline, objects: list, **kwargs) -> OrbitExplorer:
    """Build the orbit explorer for an SV3D_p pipeline and a list of scene objects; `explorer.result` is the last
    sample shown."""
    return OrbitExplorer(pipeline, objects, **kwargs)
