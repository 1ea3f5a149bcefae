"""Training a denoiser: which noise levels to train on, how to weight them, and the loss itself.

Taught in notebook 02; corresponds to the reference's `sigma_sampling.py`, `loss_weighting.py`
and `loss.py` in `sgm/modules/diffusionmodules/`.
"""

import torch
from torch import nn

from .denoiser import append_dims

# ---------------------------------------------------------------- sigma samplers


class EDMSampling:
    """log(sigma) ~ Normal(p_mean, p_std) (Karras et al. 2022, section 5)."""

    def __init__(self, p_mean: float = -1.2, p_std: float = 1.2):
        self.p_mean = p_mean  # centre of the log-normal: most training happens around exp(p_mean)
        self.p_std = p_std

    def __call__(self, n_samples: int, rand: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        if rand is None:
            rand = torch.randn((n_samples,), generator=generator)
        return (self.p_mean + self.p_std * rand).exp()


class DiscreteSampling:
    """A uniformly random one of the `num_idx` sigmas of a discrete schedule (DDPM-style training)."""

    def __init__(self, discretization, num_idx: int, do_append_zero: bool = False, flip: bool = True):
        self.num_idx = num_idx
        self.sigmas = discretization(num_idx, do_append_zero=do_append_zero, flip=flip)

    def idx_to_sigma(self, idx: torch.Tensor) -> torch.Tensor:
        """The schedule's sigma at each index."""
        return self.sigmas[idx]

    def __call__(self, n_samples: int, rand: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        """n_samples sigmas at uniformly random indices (or at the indices `rand`)."""
        if rand is None:
            rand = torch.randint(0, self.num_idx, (n_samples,), generator=generator)
        return self.idx_to_sigma(rand)


class ZeroSampler:
    """A (nearly) zero sigma: SV4D's conditioning frames are encoded clean, 1e-5 keeps log(sigma) finite."""

    def __call__(self, n_samples: int, rand: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        shape = rand.shape if rand is not None else (n_samples,)
        return torch.zeros(shape) + 1.0e-5


# ---------------------------------------------------------------- loss weightings


class UnitWeighting:
    """Every noise level counts the same."""

    def __call__(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(sigma, device=sigma.device)


class EDMWeighting:
    """lambda(sigma) = 1 / c_out^2: the loss on the network's own output then has unit weight."""

    def __init__(self, sigma_data: float = 0.5):
        self.sigma_data = sigma_data

    def __call__(self, sigma: torch.Tensor) -> torch.Tensor:
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2


class VWeighting(EDMWeighting):
    """EDM weighting with sigma_data = 1, which is the v-prediction loss."""

    def __init__(self, sigma_data: float = 1.0):
        super().__init__(sigma_data=sigma_data)


class EpsWeighting:
    """lambda(sigma) = 1 / sigma^2, which is the epsilon-prediction (DDPM) loss."""

    def __call__(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma**-2.0


# ---------------------------------------------------------------- the loss


class StandardDiffusionLoss(nn.Module):
    """Denoising score matching: noise a clean batch, denoise it, compare with the clean batch.

    loss = lambda(sigma) * || D(x + sigma * n, sigma) - x ||  (per sample, averaged over its elements)
    """

    def __init__(self, sigma_sampler, loss_weighting=None, loss_type: str = "l2", offset_noise_level: float = 0.0,
                 batch2model_keys=None):
        super().__init__()
        if loss_type not in ("l2", "l1"):
            raise ValueError(f"loss_type must be 'l2' or 'l1', got {loss_type!r}.")
        self.sigma_sampler = sigma_sampler
        self.loss_weighting = loss_weighting if loss_weighting is not None else UnitWeighting()
        self.loss_type = loss_type
        # offset noise adds one random constant per sample, so the model learns to change mean brightness
        self.offset_noise_level = offset_noise_level
        if isinstance(batch2model_keys, str):
            batch2model_keys = [batch2model_keys]
        # batch entries handed to the network as extra keyword inputs (e.g. "image_only_indicator")
        self.batch2model_keys = set(batch2model_keys or [])

    def forward(self, network, denoiser, conditioner, x: torch.Tensor, batch: dict | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample losses (shape `b`) of `denoiser(network, ...)` on the clean batch `x`."""
        batch = batch or {}
        cond = conditioner(batch)
        sigmas, noise = self.draw_noise(x, generator)
        return self.denoising_loss(network, denoiser, cond, x, sigmas, noise, self.model_inputs(batch))

    def model_inputs(self, batch: dict) -> dict:
        """The batch entries named in `batch2model_keys`, which the network receives as keyword inputs."""
        return {key: batch[key] for key in self.batch2model_keys.intersection(batch)}

    def draw_noise(self, x: torch.Tensor, generator: torch.Generator | None = None,
                   num_video_frames: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The random half of the loss: the noise levels `sigmas` (b) and the unit noise (shaped like `x`).

        With `num_video_frames`, `x` holds `(b t)` frames and the frames of one video share one sigma.
        This is minigen.train's deliberate choice, not the reference's (its loss draws one sigma per frame):
        at inference all frames of a video share one sigma, so the trainer teaches that case.
        """
        frames_per_sigma = num_video_frames or 1
        sigmas = self.sigma_sampler(x.shape[0] // frames_per_sigma, generator=generator).to(x.device)
        sigmas = sigmas.repeat_interleave(frames_per_sigma)  # b, or (b t) with one sigma per video
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        if self.offset_noise_level > 0.0:
            offset = torch.randn(x.shape[0], generator=generator, dtype=x.dtype).to(x.device)
            noise = noise + self.offset_noise_level * append_dims(offset, x.ndim)
        return sigmas, noise

    def denoising_loss(self, network, denoiser, cond: dict, x: torch.Tensor, sigmas: torch.Tensor,
                       noise: torch.Tensor, model_inputs: dict) -> torch.Tensor:
        """Per-sample losses of denoising `x + sigmas * noise` with `denoiser(network, ...)`."""
        noised = x + noise * append_dims(sigmas, x.ndim)
        denoised = denoiser(network, noised, sigmas, cond, **model_inputs)
        weight = append_dims(self.loss_weighting(sigmas), x.ndim)
        return self.get_loss(denoised, x, weight)

    def get_loss(self, denoised: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Per-sample mean of the weighted squared (l2) or absolute (l1) error."""
        error = (denoised - target) ** 2 if self.loss_type == "l2" else (denoised - target).abs()
        return (weight * error).reshape(target.shape[0], -1).mean(dim=1)


def fit_denoiser(network: nn.Module, denoiser, loss_fn: StandardDiffusionLoss, next_batch, conditioner,
                 steps: int, learning_rate: float, generator: torch.Generator, progress=None) -> list[float]:
    """The course's small training loop: Adam with cosine learning-rate decay on the diffusion loss.

    Every step draws a fresh clean batch `x, batch = next_batch()`, and `loss_fn` noises it, denoises it with
    `denoiser(network, ...)` and weights the error; `conditioner(batch)` gives the network its conditioning.
    Returns the loss of every step; the network is left in eval mode.
    """
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    progress = progress or (lambda steps: steps)  # e.g. tqdm, to show the steps as they go
    losses = []
    network.train()
    for _ in progress(range(steps)):
        x, batch = next_batch()
        loss = loss_fn(network, denoiser, conditioner, x, batch, generator=generator).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    network.eval()
    return losses
