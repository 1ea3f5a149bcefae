"""A tiny class-conditional UNet and the short loop that trains it on a CPU in about a minute.

The UNet (`minigen.nn.unet.UNetModel`) gets the class label as `y` through its label embedding, is wrapped
in EDM preconditioning (`Denoiser(EDMScaling)`) and trained with the standard diffusion loss; a fraction
of the labels is replaced by a "null" label so that the same network also learns the unconditional
model that classifier-free guidance needs. Taught in notebook 04. Reference: the training step of
`sgm/models/diffusion.py` and `OpenAIWrapper` in `sgm/modules/diffusionmodules/wrappers.py`; the full
trainer (EMA, checkpoints, DDP) is `minigen.train`'s job.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .diffusion import Denoiser, EDMSampling, EDMScaling, EDMWeighting, StandardDiffusionLoss
from .diffusion.training import fit_denoiser
from .nn.unet import UNetModel


def tiny_class_unet(num_classes: int, in_channels: int = 3, model_channels: int = 32) -> UNetModel:
    """A UNet that halves small images (16x16, 32x32) twice, with self-attention at a quarter of the size.

    It takes `num_classes + 1` labels: the last one is the null label used for guidance.
    """
    return UNetModel(
        in_channels=in_channels, out_channels=in_channels, model_channels=model_channels,
        channel_mult=(1, 2, 2),  # full size at 32 channels, 1/2 and 1/4 of it at 64
        num_res_blocks=1, attention_resolutions=(4,),  # a SpatialTransformer at 1/4 of the size
        num_head_channels=32, num_classes=num_classes + 1,
    )


class LabelConditionedNetwork(nn.Module):
    """The denoiser's view of the UNet: `network(x, c_noise, cond)` with the labels in `cond["vector"]`.

    Same role as the reference's OpenAIWrapper, which hands `cond["vector"]` to the UNet as `y`.
    """

    def __init__(self, unet: UNetModel):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict) -> torch.Tensor:
        return self.unet(x, timesteps=c_noise, y=cond["vector"])


def drop_labels(labels: torch.Tensor, null_label: int, rate: float, generator=None) -> torch.Tensor:
    """Replace each label by `null_label` with probability `rate` (the reference's `ucg_rate`)."""
    dropped = torch.rand(labels.shape, generator=generator) < rate
    return torch.where(dropped, torch.full_like(labels, null_label), labels)


@dataclass
class TrainedModel:
    """What `train_class_conditional` returns; `denoiser(x, sigma, cond)` is ready for the samplers."""

    network: LabelConditionedNetwork
    denoiser: Callable
    null_label: int
    losses: list[float] = field(default_factory=list)


def train_class_conditional(
    unet: UNetModel,
    sample_batch: Callable,  # sample_batch(batch_size, generator) -> (images b c h w, labels b)
    num_classes: int,
    steps: int = 300,
    batch_size: int = 32,
    learning_rate: float = 2e-3,
    label_dropout: float = 0.1,  # fraction of training labels replaced by the null label (for CFG)
    sigma_data: float = 0.5,  # standard deviation of the training images, for EDM's preconditioning
    seed: int = 0,
    progress: Callable | None = None,  # e.g. tqdm.auto.tqdm, to watch the steps
) -> TrainedModel:
    """Train `unet` (with `num_classes + 1` labels, the last one null) as an EDM denoiser on fresh batches.

    Every step draws a new batch, drops labels, noises the images at EDM's log-normal sigmas and
    follows the gradient of the EDM-weighted denoising loss (Adam, cosine learning-rate decay).
    """
    generator = torch.Generator().manual_seed(seed)
    network = LabelConditionedNetwork(unet)
    denoiser = Denoiser(EDMScaling(sigma_data))
    loss_fn = StandardDiffusionLoss(EDMSampling(), EDMWeighting(sigma_data))

    def next_batch():
        images, labels = sample_batch(batch_size, generator)
        labels = drop_labels(labels, null_label=num_classes, rate=label_dropout, generator=generator)
        return images, {"label": labels}

    losses = fit_denoiser(network, denoiser, loss_fn, next_batch, lambda batch: {"vector": batch["label"]},
                          steps, learning_rate, generator, progress)

    @torch.no_grad()
    def trained_denoiser(x, sigma, cond):
        return denoiser(network, x, sigma, cond)

    return TrainedModel(network, trained_denoiser, null_label=num_classes, losses=losses)
