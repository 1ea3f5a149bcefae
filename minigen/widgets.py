"""Interactive views of 2D diffusion: a slider over the noise level, and a slider over a sampler's steps.

Taught in notebooks 01 (`sigma_explorer`) and 03 (`sampler_stepper`); the reference has no such tools.
CPU only: matplotlib renders a PNG into an `ipywidgets.Image`, so the widgets work in any Jupyter front
end and in tests, and each keeps what it shows as plain attributes (`explorer.sigma`, `stepper.x`, ...).
"""

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from ._render import figure_png, stepped_style
from .camera_widgets import camera_explorer  # noqa: F401  (notebook 06; lives beside the camera code)
from .data.toy2d import GaussianMixture2D

DENSITY_STYLE = stepped_style("Greys", alpha=0.6, origin="lower")


def data_extent(mixture: GaussianMixture2D, margin: float = 0.5) -> float:
    """Half-width of a square window centred on the origin that holds every mode of `mixture`."""
    return float(mixture.means.abs().max() + 3 * mixture.stds.max() + margin)


def grid_points(extent: float, size: int) -> torch.Tensor:
    """size x size points evenly covering [-extent, extent]^2, shape (size size) 2, x varying fastest."""
    axis = torch.linspace(-extent, extent, size)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=1)


def draw_density(ax, mixture: GaussianMixture2D, sigma: float, extent: float, size: int = 60) -> None:
    """The noised density p_sigma(x) as a grey image on [-extent, extent]^2."""
    points = grid_points(extent, size)
    density = mixture.log_density(points, sigma).exp().reshape(size, size)
    ax.imshow(density.numpy(), extent=(-extent, extent, -extent, extent), **DENSITY_STYLE)


@torch.no_grad()
def draw_vector_field(ax, denoiser, mixture: GaussianMixture2D, sigma: float, extent: float,
                      size: int = 15) -> torch.Tensor:
    """Arrows from grid points x towards the denoiser's guess D(x, sigma), over the density p_sigma.

    The arrow D(x, sigma) - x is sigma^2 times the score (Tweedie). It is drawn at true length (reaching
    D(x, sigma)) unless the longest would exceed 1.5 grid cells; then all are shrunk by the same factor,
    which the title reports. Returns the arrows at true length, shape (size size) 2.
    """
    draw_density(ax, mixture, sigma, extent)
    points = grid_points(extent, size)
    arrows = denoiser(points, torch.full((len(points),), sigma), {}) - points
    cell = 2 * extent / (size - 1)
    shrink = max(1.0, float(arrows.norm(dim=1).max()) / (1.5 * cell))
    ax.quiver(*points.T, *arrows.T, angles="xy", scale_units="xy", scale=shrink, width=0.005, color="C3")
    ax.set(xlim=(-extent, extent), ylim=(-extent, extent), aspect="equal",
           title="D(x, sigma) - x" + (f", drawn at 1/{shrink:.2g} length" if shrink > 1 else ""))
    return arrows


class SigmaExplorer(widgets.VBox):
    """A log slider over sigma: the data noised to sigma (left), the denoiser's field D(x, sigma) - x (right).

    The noised points are x0 + sigma * n for one fixed draw of clean points x0 and noise n, so moving the
    slider shows the same points diffusing. The explorer is a widget (display it); `explorer.sigma`,
    `explorer.noised` (n 2) and `explorer.arrows` ((15 15) 2) are what it shows.
    """

    def __init__(self, mixture: GaussianMixture2D, denoiser=None, sigma: float = 0.5, num_points: int = 1000,
                 seed: int = 0, dpi: int = 72):
        if not 1e-3 <= sigma <= 1e2:
            raise ValueError(f"sigma must lie in the slider's range [0.001, 100], got {sigma}.")
        self.mixture = mixture
        self.denoiser = denoiser or mixture.as_denoiser()  # denoiser(x, sigma, cond); exact by default
        self.dpi = dpi
        generator = torch.Generator().manual_seed(seed)
        self.clean = mixture.sample(num_points, generator=generator)  # n 2
        self.noise = torch.randn(num_points, 2, generator=generator)  # n 2
        self.extent = data_extent(mixture)
        self.slider = widgets.FloatLogSlider(sigma, base=10, min=-3, max=2, step=0.05, description="sigma",
                                             readout_format=".3g", continuous_update=False)
        self.image = widgets.Image(format="png")
        super().__init__([self.slider, self.image])
        self.slider.observe(self.update, names="value")
        self.update()

    @property
    def sigma(self) -> float:
        """The noise level the slider shows."""
        return self.slider.value

    def update(self, change=None) -> None:
        """Recompute the noised points and the field at the slider's sigma, and redraw."""
        self.noised = self.clean + self.sigma * self.noise
        figure = Figure(figsize=(8, 3.8), dpi=self.dpi)
        left, right = figure.subplots(1, 2)
        # the noised cloud grows like sqrt(sigma_data^2 + sigma^2): widen the left window with it
        extent = max(self.extent, 3 * self.sigma + self.extent / 2)
        left.scatter(*self.noised.T, s=2, alpha=0.5)
        left.scatter(*self.mixture.means.T, s=12, c="k", marker="x")
        left.set(xlim=(-extent, extent), ylim=(-extent, extent), aspect="equal",
                 title=f"x = x0 + sigma n, sigma = {self.sigma:.3g}")
        self.arrows = draw_vector_field(right, self.denoiser, self.mixture, self.sigma, self.extent)
        figure.tight_layout()
        self.image.value = figure_png(figure)


def sigma_explorer(mixture: GaussianMixture2D, denoiser=None, **kwargs) -> SigmaExplorer:
    """Build a SigmaExplorer for `mixture` (exact denoiser unless `denoiser(x, sigma, cond)` is given)."""
    return SigmaExplorer(mixture, denoiser, **kwargs)


class SamplerStepper(widgets.VBox):
    """A slider over the steps of one sampler run: the state x (left) and the denoised estimate (right).

    The run happens once, at construction, and is recorded through the samplers' callback
    `callback(x, denoised, sigma, step)`: after step i, `xs[i]` is the state, `denoised[i]` the estimate
    the step was computed from and `sigmas[i]` the noise level it was computed at. The stepper is a
    widget (display it); `stepper.step`, `stepper.x` and `stepper.estimate` are what it shows.
    """

    def __init__(self, sampler, denoiser, noise: torch.Tensor, cond: dict | None = None,
                 uc: dict | None = None, num_steps: int | None = None,
                 generator: torch.Generator | None = None, mixture: GaussianMixture2D | None = None,
                 dpi: int = 72):
        if noise.ndim != 2 or noise.shape[1] != 2:
            raise ValueError(
                f"SamplerStepper draws 2D points: expected noise of shape (n, 2), got {tuple(noise.shape)}."
            )
        self.xs, self.denoised, self.sigmas = [], [], []

        def record(x, denoised, sigma, step):
            self.xs.append(x.detach().clone())
            self.denoised.append(denoised.detach().clone())
            self.sigmas.append(float(sigma))

        self.name = type(sampler).__name__
        cond = cond or {}
        self.samples = sampler(denoiser, noise, cond, uc, num_steps, callback=record, generator=generator)
        self.mixture = mixture  # drawn as grey modes behind the points, when given
        self.extent = data_extent(mixture) if mixture is not None else float(self.samples.abs().max() + 0.5)
        self.dpi = dpi
        self.slider = widgets.IntSlider(0, min=0, max=len(self.xs) - 1, description="step",
                                        continuous_update=False)
        self.image = widgets.Image(format="png")
        super().__init__([self.slider, self.image])
        self.slider.observe(self.update, names="value")
        self.update()

    @property
    def step(self) -> int:
        """The step the slider shows, counted from 0 (the state after the first step)."""
        return self.slider.value

    @property
    def x(self) -> torch.Tensor:
        """The state after the current step (n 2)."""
        return self.xs[self.step]

    @property
    def estimate(self) -> torch.Tensor:
        """The denoised estimate D(x, sigma) the current step used (n 2)."""
        return self.denoised[self.step]

    def update(self, change=None) -> None:
        """Redraw the current step."""
        figure = Figure(figsize=(8, 3.8), dpi=self.dpi)
        left, right = figure.subplots(1, 2)
        # early states are far out (sigma_0 can be 80): the left window follows the points
        extent = max(self.extent, float(self.x.abs().quantile(0.95)) * 1.1)
        for ax, points, window in ((left, self.x, extent), (right, self.estimate, self.extent)):
            if self.mixture is not None:
                ax.scatter(*self.mixture.means.T, s=150, c="0.85")
            ax.scatter(*points.T, s=2, alpha=0.5, c="C0" if ax is left else "C1")
            ax.set(xlim=(-window, window), ylim=(-window, window), aspect="equal")
        sigma = self.sigmas[self.step]
        left.set_title(f"{self.name}: x after step {self.step + 1}/{len(self.xs)}")
        right.set_title(f"denoised D(x, sigma = {sigma:.3g})")
        figure.tight_layout()
        self.image.value = figure_png(figure)


def sampler_stepper(sampler, denoiser, noise: torch.Tensor, **kwargs) -> SamplerStepper:
    """Run `sampler(denoiser, noise, cond, uc, num_steps)` once, recording every step, and step through it."""
    return SamplerStepper(sampler, denoiser, noise, **kwargs)

