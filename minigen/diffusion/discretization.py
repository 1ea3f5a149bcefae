"""Noise schedules: the decreasing sequence of sigmas a sampler walks through.

`Discretization(n)` returns n sigmas from high to low, followed by a final 0 (the clean sample)
unless `do_append_zero=False`; `flip=True` returns them low to high. Taught in notebook 03;
corresponds to the reference's `sgm/modules/diffusionmodules/discretizer.py`.
"""

import math

import numpy as np
import torch


def _check_num_sigmas(n: int) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"A schedule needs n >= 1 sigmas (num_steps >= 1), got {n!r}.")


def _check_sigma_range(sigma_min: float, sigma_max: float) -> None:
    if not (sigma_min > 0 and sigma_max > 0):
        raise ValueError(
            f"sigma_min and sigma_max must be positive, got sigma_min={sigma_min}, sigma_max={sigma_max}."
        )
    if sigma_min >= sigma_max:
        raise ValueError(
            f"sigma_min must be smaller than sigma_max, got sigma_min={sigma_min} >= sigma_max={sigma_max}; "
            "swap them."
        )


class Discretization:
    """Base class: subclasses implement `get_sigmas(n, device)` (n sigmas, high to low)."""

    def __call__(self, n: int, do_append_zero: bool = True, device="cpu", flip: bool = False) -> torch.Tensor:
        """n sigmas high to low, then a final 0 with do_append_zero (where sampling ends); flip: low to high."""
        _check_num_sigmas(n)
        sigmas = self.get_sigmas(n, device=device)
        if do_append_zero:
            sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
        return torch.flip(sigmas, (0,)) if flip else sigmas

    def get_sigmas(self, n: int, device="cpu") -> torch.Tensor:
        """The schedule's own n sigmas, high to low: what each discretization defines."""
        raise NotImplementedError


class EDMDiscretization(Discretization):
    """Karras et al. (2022), eq. 5: sigmas evenly spaced in sigma^(1/rho) between sigma_max and sigma_min."""

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
        _check_sigma_range(sigma_min, sigma_max)
        self.sigma_min = sigma_min  # smallest noise level visited
        self.sigma_max = sigma_max  # largest noise level, where sampling starts
        self.rho = rho  # larger rho spends more steps at low noise

    def get_sigmas(self, n: int, device="cpu") -> torch.Tensor:
        ramp = torch.linspace(0, 1, n, device=device)
        max_inv_rho = self.sigma_max ** (1 / self.rho)
        min_inv_rho = self.sigma_min ** (1 / self.rho)
        return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** self.rho


class TunedEDMDiscretization(EDMDiscretization):
    """EDM's schedule with rho = 15 instead of 7: steps closer to even in log(sigma) (rho -> infinity), so
    longer than rho 7's at the highest noise levels and shorter at the lowest.

    Not an official schedule. rho = 15 gave DEISSampler its smallest error at 10 NFE in a scan of rho (5 to 50)
    on the spiral mixture with its exact denoiser, on start noise other than the benchmark's; the tiny image
    model, not used for the choice, agrees (benchmarks/samplers.py, docs/benchmarks.md). Higher-order
    multistep samplers gain most from it; Euler and LMS do not.
    """

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 15.0):
        super().__init__(sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)


class ExponentialDiscretization(Discretization):
    """Sigmas evenly spaced in log(sigma) (k-diffusion's `get_sigmas_exponential`).

    Not used by an official model: notebook 03 compares it with the EDM schedule.
    """

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0):
        _check_sigma_range(sigma_min, sigma_max)
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max

    def get_sigmas(self, n: int, device="cpu") -> torch.Tensor:
        log_sigmas = torch.linspace(math.log(self.sigma_max), math.log(self.sigma_min), n, device=device)
        return log_sigmas.exp()


def ddpm_alphas_cumprod(linear_start: float, linear_end: float, num_timesteps: int) -> np.ndarray:
    """The DDPM "scaled linear" schedule: betas linear in sqrt, then alpha_bar = prod(1 - beta)."""
    betas = np.linspace(linear_start**0.5, linear_end**0.5, num_timesteps, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


class LegacyDDPMDiscretization(Discretization):
    """The discrete DDPM schedule of SD 2.1 and SDXL, expressed as sigma = sqrt((1 - a) / a).

    With n < num_timesteps, n of the training timesteps are picked roughly evenly (always ending
    on the noisiest one, num_timesteps - 1).
    """

    def __init__(self, linear_start: float = 0.00085, linear_end: float = 0.0120, num_timesteps: int = 1000):
        if not 0 < linear_start < linear_end < 1:
            raise ValueError(
                "LegacyDDPMDiscretization needs 0 < linear_start < linear_end < 1, "
                f"got linear_start={linear_start}, linear_end={linear_end}."
            )
        self.num_timesteps = num_timesteps
        self.alphas_cumprod = ddpm_alphas_cumprod(linear_start, linear_end, num_timesteps)

    def get_sigmas(self, n: int, device="cpu") -> torch.Tensor:
        if n > self.num_timesteps:
            raise ValueError(
                f"LegacyDDPMDiscretization has {self.num_timesteps} timesteps; cannot pick n={n} of them. "
                f"Use n <= {self.num_timesteps}."
            )
        alphas_cumprod = self.alphas_cumprod
        if n < self.num_timesteps:
            # n evenly spaced training steps, counted down from the noisiest and returned ascending
            timesteps = np.linspace(self.num_timesteps - 1, 0, n, endpoint=False).astype(int)[::-1]
            alphas_cumprod = alphas_cumprod[timesteps]
        sigmas = torch.tensor((1 - alphas_cumprod) / alphas_cumprod, dtype=torch.float32, device=device) ** 0.5
        return torch.flip(sigmas, (0,))
