"""Denoiser preconditioning: how a network's input and output are scaled at noise level sigma.

A denoiser computes D(x, sigma) = c_skip * x + c_out * F(c_in * x, c_noise), where F is the network.
Each scaling below is one row of Table 1 in Karras et al., "Elucidating the Design Space of
Diffusion-Based Generative Models" (2022). Taught in notebook 02; corresponds to the reference's
`sgm/modules/diffusionmodules/denoiser_scaling.py`.
"""

import torch

Coefficients = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class EDMScaling:
    """EDM preconditioning: network inputs and training targets both have unit variance."""

    def __init__(self, sigma_data: float = 0.5):
        self.sigma_data = sigma_data  # expected standard deviation of the training data

    def __call__(self, sigma: torch.Tensor) -> Coefficients:
        total_variance = sigma**2 + self.sigma_data**2
        c_skip = self.sigma_data**2 / total_variance
        c_out = sigma * self.sigma_data / total_variance**0.5
        c_in = 1 / total_variance**0.5
        c_noise = 0.25 * sigma.log()
        return c_skip, c_out, c_in, c_noise


class EpsScaling:
    """Epsilon prediction (DDPM, SD 2.1 512, SDXL): the network predicts the added noise."""

    def __call__(self, sigma: torch.Tensor) -> Coefficients:
        c_skip = torch.ones_like(sigma)
        c_out = -sigma
        c_in = 1 / (sigma**2 + 1.0) ** 0.5
        c_noise = sigma.clone()
        return c_skip, c_out, c_in, c_noise


class VScaling:
    """v prediction (SD 2.1 768): the network predicts a mix of noise and signal (sigma_data = 1)."""

    def __call__(self, sigma: torch.Tensor) -> Coefficients:
        c_skip = 1.0 / (sigma**2 + 1.0)
        c_out = -sigma / (sigma**2 + 1.0) ** 0.5
        c_in = 1.0 / (sigma**2 + 1.0) ** 0.5
        c_noise = sigma.clone()
        return c_skip, c_out, c_in, c_noise


class VScalingWithEDMcNoise(VScaling):
    """v prediction with EDM's log-sigma noise input (SVD, SV3D, SV4D)."""

    def __call__(self, sigma: torch.Tensor) -> Coefficients:
        c_skip, c_out, c_in, _ = super().__call__(sigma)
        c_noise = 0.25 * sigma.log()
        return c_skip, c_out, c_in, c_noise
