"""The denoiser: a network wrapped in its preconditioning, D(x, sigma) = c_skip x + c_out F(c_in x, c_noise).

Taught in notebook 02; corresponds to the reference's `sgm/modules/diffusionmodules/denoiser.py`.
The network is called as `network(x * c_in, c_noise, cond, **extra_inputs)`.
"""

import torch
from torch import nn

from .discretization import Discretization


def append_dims(x: torch.Tensor, target_ndim: int) -> torch.Tensor:
    """Add trailing singleton dimensions so a per-sample tensor `b` broadcasts against `b c h w`."""
    missing = target_ndim - x.ndim
    if missing < 0:
        raise ValueError(f"Cannot broadcast a {x.ndim}-d tensor to {target_ndim} dimensions.")
    return x[(...,) + (None,) * missing]


class Denoiser(nn.Module):
    """Continuous-sigma denoiser (EDM, SVD, SV3D, SV4D)."""

    def __init__(self, scaling):
        super().__init__()
        self.scaling = scaling  # one of minigen.diffusion.scaling's classes

    def quantize_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """The noise level the network really sees (identity here; snapped for discrete models)."""
        return sigma

    def quantize_c_noise(self, c_noise: torch.Tensor) -> torch.Tensor:
        """The network's noise input as it receives it: c_noise itself here, an index for discrete models."""
        return c_noise

    def forward(self, network, x: torch.Tensor, sigma: torch.Tensor, cond: dict, **extra_inputs) -> torch.Tensor:
        """D(x, sigma) = c_skip x + c_out F(c_in x, c_noise): the network F preconditioned by the scaling."""
        sigma = self.quantize_sigma(sigma)  # b
        c_skip, c_out, c_in, c_noise = self.scaling(append_dims(sigma, x.ndim))  # each b 1 1 1
        c_noise = self.quantize_c_noise(c_noise.reshape(sigma.shape))  # b
        return network(x * c_in, c_noise, cond, **extra_inputs) * c_out + x * c_skip


class DiscreteDenoiser(Denoiser):
    """Denoiser of a model trained on `num_idx` discrete noise levels (SD 2.1, SDXL).

    Any sigma is snapped to the nearest of the training sigmas, and with `quantize_c_noise` the
    network receives that sigma's index (0 .. num_idx - 1) as its timestep.
    """

    def __init__(
        self,
        scaling,
        num_idx: int,
        discretization: Discretization,
        do_append_zero: bool = False,
        quantize_c_noise: bool = True,
        flip: bool = True,
    ):
        super().__init__(scaling)
        self.num_idx = num_idx
        self.quantize_c_noise_to_index = quantize_c_noise
        # ascending with flip=True, so the index grows with the noise level like a DDPM timestep
        self.register_buffer("sigmas", discretization(num_idx, do_append_zero=do_append_zero, flip=flip))

    def sigma_to_idx(self, sigma: torch.Tensor) -> torch.Tensor:
        """The index of the training sigma nearest to each sigma (the DDPM timestep)."""
        distances = (sigma - self.sigmas[:, None]).abs()  # num_idx b
        return distances.argmin(dim=0).view(sigma.shape)

    def idx_to_sigma(self, idx) -> torch.Tensor:
        """The training sigma at each index."""
        return self.sigmas[idx]

    def quantize_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.idx_to_sigma(self.sigma_to_idx(sigma))

    def quantize_c_noise(self, c_noise: torch.Tensor) -> torch.Tensor:
        """The index of c_noise's nearest training sigma, what the network was trained on
        (c_noise itself with quantize_c_noise=False)."""
        return self.sigma_to_idx(c_noise) if self.quantize_c_noise_to_index else c_noise
