"""2D Gaussian mixtures: data whose denoiser is known exactly, so diffusion can be studied with no network.

For a mixture sum_k w_k N(mu_k, s_k^2 I), the noised data x = x0 + sigma n is again a mixture,
with variances s_k^2 + sigma^2, and the ideal denoiser D(x, sigma) = E[x0 | x] has a closed form.
Samplers run on it to measure their own error (notebooks 00, 01, 03; benchmarks/samplers.py);
the tiny MLP at the end learns it in seconds (notebook 02).
"""

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..diffusion import Denoiser, EDMSampling, EDMWeighting, StandardDiffusionLoss
from ..diffusion.training import fit_denoiser


@dataclass
class GaussianMixture2D:
    """An isotropic Gaussian mixture in the plane."""

    means: torch.Tensor  # k 2
    stds: torch.Tensor  # k
    weights: torch.Tensor  # k, summing to 1

    def __post_init__(self):
        k = self.means.shape[0]
        if self.means.shape != (k, 2) or self.stds.shape != (k,) or self.weights.shape != (k,):
            raise ValueError(
                f"Expected means (k, 2), stds (k,) and weights (k,); got {tuple(self.means.shape)}, "
                f"{tuple(self.stds.shape)} and {tuple(self.weights.shape)}."
            )
        if (self.stds <= 0).any() or (self.weights < 0).any():
            raise ValueError("Mixture stds must be positive and weights non-negative.")
        self.weights = self.weights / self.weights.sum()

    @property
    def std(self) -> float:
        """Standard deviation of one coordinate of the data, averaged over x and y (the data's sigma_data)."""
        mean = (self.weights[:, None] * self.means).sum(0)
        second_moment = (self.weights[:, None] * (self.means**2 + self.stds[:, None] ** 2)).sum(0)
        return float((second_moment - mean**2).mean().sqrt())

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n clean samples, shape n 2."""
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, 2, generator=generator)
        return self.means[component] + self.stds[component, None] * noise

    def _component_log_likelihoods(self, x: torch.Tensor, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        """log(w_k N(x; mu_k, (s_k^2 + sigma^2) I)) for every point and component (n k), and the variances."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1)  # n|1 1
        variances = self.stds[None] ** 2 + sigma**2  # n|1 k
        squared_distances = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)  # n k
        log_normal = -0.5 * squared_distances / variances - torch.log(2 * math.pi * variances)
        return self.weights.log()[None] + log_normal, variances

    def log_density(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        """log p(x) of the data noised to level sigma (sigma = 0: the clean data), shape n."""
        log_likelihoods, _ = self._component_log_likelihoods(x, sigma)
        return torch.logsumexp(log_likelihoods, dim=1)

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The exact denoiser E[x0 | x0 + sigma n = x]: a posterior-weighted shrink towards each mean."""
        log_likelihoods, variances = self._component_log_likelihoods(x, sigma)
        responsibilities = torch.softmax(log_likelihoods, dim=1)  # n k: p(component | x)
        shrink = (self.stds[None] ** 2 / variances)[..., None]  # n|1 k 1
        per_component = self.means[None] + shrink * (x[:, None, :] - self.means[None])  # n k 2
        return (responsibilities[..., None] * per_component).sum(1)

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """grad log p_sigma(x) = (D(x, sigma) - x) / sigma^2 (Tweedie's formula)."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1)
        return (self.denoise(x, sigma) - x) / sigma**2

    def as_denoiser(self):
        """The exact denoiser with the samplers' signature `denoiser(x, sigma, cond)`."""
        return lambda x, sigma, cond: self.denoise(x, sigma)


def ring(num_modes: int = 8, radius: float = 1.0, std: float = 0.05) -> GaussianMixture2D:
    """Equal modes evenly spaced on a circle."""
    angles = torch.arange(num_modes) * 2 * math.pi / num_modes
    means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    return GaussianMixture2D(means, torch.full((num_modes,), std), torch.ones(num_modes))


def grid(size: int = 3, spacing: float = 1.0, std: float = 0.05) -> GaussianMixture2D:
    """size x size modes on a square grid centred on the origin."""
    coordinates = (torch.arange(size) - (size - 1) / 2) * spacing
    means = torch.cartesian_prod(coordinates, coordinates)
    return GaussianMixture2D(means, torch.full((size * size,), std), torch.ones(size * size))


def spiral(num_modes: int = 12, turns: float = 1.5, radius: float = 1.5, std: float = 0.04) -> GaussianMixture2D:
    """Modes along an Archimedean spiral, smaller and lighter towards the centre."""
    position = torch.linspace(0.15, 1.0, num_modes)
    angles = 2 * math.pi * turns * position
    means = radius * position[:, None] * torch.stack([angles.cos(), angles.sin()], dim=1)
    return GaussianMixture2D(means, std * (0.5 + position), position)


MIXTURES = {"ring": ring, "grid": grid, "spiral": spiral}


def make_mixture(name: str, **kwargs) -> GaussianMixture2D:
    """The mixture called `name` in MIXTURES ("ring", "grid" or "spiral"), built with `kwargs`: how notebooks and
    the command line pick a toy data set by name."""
    if name not in MIXTURES:
        raise ValueError(f"Unknown mixture {name!r}; expected one of {sorted(MIXTURES)}.")
    return MIXTURES[name](**kwargs)


class ToyMLP(nn.Module):
    """A small MLP network F(x, c_noise) for 2D data; the noise input c_noise is one extra input feature, taken as
    the scaling gives it: raw sigma (eps scaling) spans orders of magnitude where ln(sigma) / 4 (EDM) stays near
    the range the network trained on (notebook 02 measures what that costs)."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(2 + 1, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, 2),
        )

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict | None = None) -> torch.Tensor:
        c_noise = c_noise.reshape(-1, 1).to(x.dtype).expand(x.shape[0], 1)  # n 1
        return self.layers(torch.cat([x, c_noise], dim=1))


def train_toy_denoiser(
    mixture: GaussianMixture2D,
    scaling,
    steps: int = 1500,
    batch_size: int = 512,
    learning_rate: float = 1e-2,
    sigma_sampler=None,
    loss_weighting=None,
    seed: int = 0,
    hidden: int = 128,
):
    """Train a ToyMLP as `Denoiser(scaling)` on `mixture`; returns (denoiser function, network, losses).

    The returned function has the samplers' signature `denoiser(x, sigma, cond)`.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the MLP's initial weights
    network = ToyMLP(hidden=hidden)
    denoiser = Denoiser(scaling)
    loss_fn = StandardDiffusionLoss(
        sigma_sampler or EDMSampling(), loss_weighting or EDMWeighting(sigma_data=mixture.std)
    )
    losses = fit_denoiser(network, denoiser, loss_fn, lambda: (mixture.sample(batch_size, generator=generator), {}),
                          lambda _: {}, steps, learning_rate, generator)

    @torch.no_grad()
    def trained_denoiser(x, sigma, cond=None):
        return denoiser(network, x, sigma, cond or {})

    return trained_denoiser, network, losses
