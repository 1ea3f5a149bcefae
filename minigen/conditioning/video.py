"""The latent image conditioning of SVD, SV3D and SV4D: frames -> VAE latents concatenated to the UNet input.

`VideoPredictionEmbedderWithEncoder` optionally noises the conditioning frames (sigma from its
sigma sampler; SV4D uses the ZeroSampler and also embeds that sigma as a vector), encodes them
with its own VAE (the posterior's mode) in chunks of `en_and_decode_n_samples_a_time` frames,
and, with one conditioning frame per sample (SVD, SV3D), repeats its latent `n_copies` times.
With several frames per sample (SV4D) each frame keeps its own latent: the multi-view UNet reads
them frame by frame. Taught in notebook 06. Reference: `VideoPredictionEmbedderWithEncoder` in
sgm/modules/encoders/modules.py.
"""

import torch
from einops import repeat
from torch import nn

from minigen.diffusion.denoiser import append_dims
from minigen.nn.autoencoder import AutoencoderKL

from .scalars import ConcatTimestepEmbedderND


class VideoPredictionEmbedderWithEncoder(nn.Module):
    """Frames `(b t) 3 H W` (t = n_cond_frames) -> latents: `(b n_copies) 4 H/8 W/8` when t = 1 (SVD, SV3D),
    `(b t) 4 H/8 W/8` when t > 1 (SV4D: one latent per frame, n_copies must be 1).

    With `sigma_cond` the output is a pair: the latents and the sigma embedding, one row per latent.
    """

    draws_noise = True  # the GeneralConditioner hands its generator to forward()

    def __init__(
        self,
        n_cond_frames: int,  # frames per sample, stacked along the channels of the latent
        n_copies: int,  # repeats of each sample along the batch (the video's frame count for SVD)
        encoder: AutoencoderKL,  # the configs' AutoencoderKLModeOnly: an AutoencoderKL with scale_factor 1
        sigma_sampler=None,  # noise level of the augmentation per sample, e.g. ZeroSampler(); None: no noise
        sigma_cond: ConcatTimestepEmbedderND | None = None,  # embeds that noise level as a vector
        scale_factor: float = 1.0,  # multiplies the latents (1.0 in every official config)
        disable_encoder_autocast: bool = False,  # encode in float32 even inside a CUDA autocast
        en_and_decode_n_samples_a_time: int | None = None,  # frames per encoder call; None: all at once
    ):
        super().__init__()
        if encoder.scale_factor != 1.0:
            raise ValueError(f"The conditioning encoder must return raw latents (scale_factor 1.0, as the configs' "
                             f"AutoencoderKLModeOnly), got scale_factor={encoder.scale_factor}; pass the scaling "
                             "as this embedder's scale_factor instead.")
        if n_cond_frames > 1 and n_copies != 1:
            raise ValueError(f"With n_cond_frames={n_cond_frames} (SV4D: one latent per frame) n_copies must be 1, "
                             f"got {n_copies}.")
        if sigma_cond is not None and sigma_sampler is None:
            raise ValueError("sigma_cond embeds the augmentation noise level, so it needs a sigma_sampler.")
        self.n_cond_frames = n_cond_frames
        self.n_copies = n_copies
        self.encoder = encoder
        self.sigma_sampler = sigma_sampler
        self.sigma_cond = sigma_cond
        self.scale_factor = scale_factor
        self.disable_encoder_autocast = disable_encoder_autocast
        self.en_and_decode_n_samples_a_time = en_and_decode_n_samples_a_time

    def forward(self, frames: torch.Tensor, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None, latents: torch.Tensor | None = None):
        """`noise` (shaped like `frames`): the unit noise to add instead of drawing it, e.g. a recorded run's.
        `latents`: the encoder's output for these frames when it is already known (a training set's latents are
        computed once, before training); the encoder is then skipped. Only for frames the augmentation all but
        leaves as they are (SV4D's sigma of 1e-5), since known latents are those of the clean frames."""
        if frames.ndim != 4 or frames.shape[0] % self.n_cond_frames:
            raise ValueError(f"{type(self).__name__} expects frames shaped ((b t), 3, height, width) with "
                             f"t = n_cond_frames = {self.n_cond_frames}, got shape {tuple(frames.shape)}.")
        sigma_embedding = None
        clean = frames
        if self.sigma_sampler is not None:
            frames, sigma_embedding = self.add_noise(frames, generator, noise)
        latents = self.scale_factor * (self.encode(frames) if latents is None else self.known(latents, frames, clean))
        if self.n_cond_frames == 1:
            latents = repeat(latents, "b c h w -> (b s) c h w", s=self.n_copies)
        return latents if sigma_embedding is None else (latents, sigma_embedding)

    def add_noise(self, frames: torch.Tensor, generator: torch.Generator | None, noise: torch.Tensor | None = None):
        """frames + sigma * noise, one sigma per sample; also the sigma's embedding when there is sigma_cond."""
        b = frames.shape[0] // self.n_cond_frames
        sigmas = self.sigma_sampler(b, generator=generator).to(frames.device)  # b
        sigma_embedding = None
        if self.sigma_cond is not None:
            rows = self.n_copies if self.n_cond_frames == 1 else self.n_cond_frames  # one per output latent
            sigma_embedding = repeat(self.sigma_cond(sigmas), "b d -> (b s) d", s=rows)
        sigmas = repeat(sigmas, "b -> (b t)", t=self.n_cond_frames)
        if noise is None:
            noise = torch.randn(frames.shape, generator=generator, dtype=frames.dtype)
        elif noise.shape != frames.shape:
            raise ValueError(f"The given noise is shaped {tuple(noise.shape)}; it must be shaped like the frames, "
                             f"{tuple(frames.shape)}.")
        noise = noise.to(frames.device, frames.dtype)
        return frames + noise * append_dims(sigmas, frames.ndim), sigma_embedding

    # frames noised by less than this are their clean selves: it is a tenth of a frame's 8-bit step (2 / 255)
    KNOWN_LATENTS_TOLERANCE = 1e-3

    def known(self, latents: torch.Tensor, frames: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """Given latents `(b t) c h w`, checked against the frames they stand for (one per frame, not noised)."""
        if latents.ndim != 4 or latents.shape[0] != frames.shape[0]:
            raise ValueError(f"Known latents must be shaped ((b t), c, h, w), one per frame: {frames.shape[0]} "
                             f"frames, got latents shaped {tuple(latents.shape)}.")
        if (frames - clean).abs().max() > self.KNOWN_LATENTS_TOLERANCE:
            raise ValueError("Known latents are those of the clean frames, but this embedder's augmentation noised "
                             "them (cond_aug > 0); leave the latents out so that the noised frames are encoded.")
        return latents.to(frames.device, frames.dtype)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """The posterior's mode, `en_and_decode_n_samples_a_time` frames per encoder call."""
        autocast = frames.device.type == "cuda" and not self.disable_encoder_autocast  # the reference's default
        with torch.autocast(frames.device.type, enabled=autocast):
            return self.encoder.encode(frames, chunk_size=self.en_and_decode_n_samples_a_time)
