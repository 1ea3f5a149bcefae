"""The image-to-video flow that SVD and SV3D share, step by step as the reference sampling script runs it.

One conditioning image becomes a batch of per-frame conditions; the conditioner turns it into c and uc
(uc: the image embeddings zeroed); crossattn and concat are repeated to every frame; the sampler walks
`num_frames` latents down from noise, guided frame by frame; the first stage decodes them in chunks of
`decoding_t` frames. `ImageToVideoPipeline` wraps the flow with loading, dtypes, offload, seeds and
input checks; `SVDPipeline` (svd.py) and `SV3DPipeline` (sv3d.py) only add their own conditions.
Used by the second half of the course (the video notebooks).
Reference: `sample` in scripts/sampling/simple_video_sample.py and
`DiffusionEngine.decode_first_stage` in sgm/models/diffusion.py.
"""

import contextlib
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange, repeat

from .. import diffusion
from ..conditioning import GeneralConditioner, VideoPredictionEmbedderWithEncoder
from ..diffusion import EulerEDMSampler
from ..io import to_uint8
from ..nn.autoencoder import AutoencoderKL
from .common import (
    Pipeline,
    check_count,
    generator_for,
    image_to_tensor,
    input_keys,
    make_sampler,
)
from .engine import DiffusionEngine

# the embeddings zeroed in the unconditional branch: guidance pushes away from "no image"
FORCE_UC_ZERO_EMBEDDINGS = ("cond_frames", "cond_frames_without_noise")


@dataclass(frozen=True)
class VideoDefaults:
    """One model's defaults, from its sampling config (guider, sigma_max) and the sampling script (the rest)."""

    num_frames: int  # frames generated (and the guider's num_frames)
    num_steps: int  # sampler steps
    guider: type  # the config's guider class: LinearPredictionGuider (SVD) or TrianglePredictionGuider (SV3D)
    cfg: float  # the guider's max_scale (the scripts' "cfg")
    min_cfg: float = 1.0  # the guider's min_scale
    cond_aug: float = 0.02  # std of the noise added to the image the VAE encodes (cond_frames)
    sigma_max: float = 700.0  # EDMDiscretization's sigma_max: where sampling starts
    image_size: tuple[int, int] | None = (576, 1024)  # (H, W) the model was trained at; other sizes are warned about
    sampler: type = EulerEDMSampler  # the scripts' sampler
    preprocess: bool = False  # SV3D: cut the object out and frame it first, as its script always does


@dataclass
class VideoSample:
    """Everything one run produced: the sampler's latents, the decoded frames and the conditionings."""

    latents: torch.Tensor  # t 4 h w, scaled latents
    decoded: torch.Tensor  # t 3 H W, roughly in [-1, 1]
    c: dict  # conditional conditioning, crossattn / concat repeated to every frame
    uc: dict  # unconditional conditioning

    @property
    def frames(self) -> torch.Tensor:
        """t 3 H W in [0, 1], as the script clamps them before saving."""
        return torch.clamp((self.decoded.float() + 1.0) / 2.0, 0.0, 1.0)

    def to_uint8(self) -> np.ndarray:
        """The frames as the script saves them: uint8 `[t, H, W, 3]`, truncated (minigen.io.to_uint8)."""
        return to_uint8(rearrange(self.decoded, "t c h w -> t h w c"), mode="truncate")


# ---------------------------------------------------------------- the flow, one function per step


def build_batch(values: dict, keys: list[str], num_frames: int, device) -> dict:
    """The script's `get_batch` for one sample: numbers are repeated to every frame, images (1 3 H W) and
    per-frame tensors (t values, e.g. SV3D_p's angles) pass as they are."""
    missing = [key for key in keys if key not in values]
    if missing:
        raise ValueError(f"The model's conditioner reads {missing}, which this pipeline does not provide "
                         f"(it gives {sorted(values)}); is the checkpoint meant for another pipeline?")
    batch = {}
    for key in keys:
        value = values[key]
        if isinstance(value, torch.Tensor):
            batch[key] = value.to(device)
        else:
            batch[key] = torch.tensor([value], device=device).repeat(num_frames)  # t: one number per frame
    return batch


@contextlib.contextmanager
def encoding_chunks(conditioner: GeneralConditioner, encoding_t: int | None):
    """Let the conditioner's VAE encoders take `encoding_t` frames per call (None: leave them as they are)."""
    encoders = [e for e in conditioner.embedders if isinstance(e, VideoPredictionEmbedderWithEncoder)]
    saved = [encoder.en_and_decode_n_samples_a_time for encoder in encoders]
    if encoding_t is not None:
        for encoder in encoders:
            encoder.en_and_decode_n_samples_a_time = encoding_t
    try:
        yield
    finally:
        for encoder, chunk in zip(encoders, saved, strict=True):
            encoder.en_and_decode_n_samples_a_time = chunk


def conditionings(conditioner: GeneralConditioner, batch: dict, num_frames: int,
                  encoding_t: int | None = None) -> tuple[dict, dict]:
    """c and uc for guidance; the image's crossattn (b 1 d) and concat (b 4 h w) repeated to `(b t)` frames."""
    with encoding_chunks(conditioner, encoding_t):
        # batch_uc is a copy of batch in the script: passing none means the same to the conditioner
        c, uc = conditioner.get_unconditional_conditioning(batch, force_uc_zero_embeddings=FORCE_UC_ZERO_EMBEDDINGS)
    for cond in (c, uc):
        for key in ("crossattn", "concat"):
            cond[key] = repeat(cond[key], "b ... -> (b t) ...", t=num_frames)
    return c, uc


def latent_shape(first_stage: AutoencoderKL, num_frames: int, height: int, width: int) -> tuple[int, ...]:
    """t c h w of the latents the first stage decodes into `height x width` frames (c 4, h = H / 8 officially)."""
    factor = 2 ** (len(first_stage.decoder.up) - 1)
    return (num_frames, first_stage.latent_channels, height // factor, width // factor)


def sample_latents(engine: DiffusionEngine, sampler, randn: torch.Tensor, c: dict, uc: dict, num_frames: int,
                   generator: torch.Generator | None = None, callback=None) -> torch.Tensor:
    """Run the sampler from unit noise `randn` (t c h w); every frame is a video frame (image_only_indicator 0)."""

    def denoiser(x, sigma, cond):
        image_only_indicator = x.new_zeros(x.shape[0] // num_frames, num_frames)  # (2 b) t: cond and uncond halves
        return engine.denoise(x, sigma, cond, image_only_indicator=image_only_indicator,
                              num_video_frames=num_frames)

    return sampler(denoiser, randn, c, uc, callback=callback, generator=generator)


def decode_latents(first_stage: AutoencoderKL, latents: torch.Tensor, decoding_t: int | None,
                   num_frames: int) -> torch.Tensor:
    """Latents -> frames, `decoding_t` frames per decoder call (the temporal decoder mixes frames within a call)."""
    return first_stage.decode(latents, chunk_size=decoding_t, num_frames=num_frames)


class ImageToVideoPipeline(Pipeline):
    """One image to `num_frames` frames with an SVD-family engine. Subclasses set DEFAULTS (preset -> defaults),
    `replaces_last_frame`, and give `conditions(num_frames, ...)`: the model's own entries of the batch."""

    DEFAULTS: dict[str, VideoDefaults] = {}
    replaces_last_frame = False  # SV3D: the input view is the orbit's last frame, shown as it is

    # -- the steps of a call

    def image_tensor(self, image) -> torch.Tensor:
        """uint8 `[H, W, 3]` (or a path) -> `1 3 H W` in [-1, 1]; warns when the size is not the trained one."""
        image = image_to_tensor(image, multiple_of=64)
        size = tuple(image.shape[-2:])
        if self.defaults.image_size is not None and size != self.defaults.image_size:
            expected = "x".join(map(str, self.defaults.image_size))
            warnings.warn(f"The image is {size[0]}x{size[1]}, not {expected}: the model was trained at {expected}, "
                          "so results may be worse.", stacklevel=3)
        return image

    def make_sampler(self, num_steps: int | None = None, *, num_frames: int, cfg: float | None = None,
                     min_cfg: float | None = None, sampler: str | type | None = None,
                     sampler_options: dict | None = None,
                     progress: bool = True):
        """The config's sampler: EDM schedule up to sigma_max and the per-frame guider (cfg: its largest scale)."""
        guider = self.defaults.guider(
            max_scale=self.defaults.cfg if cfg is None else cfg,
            min_scale=self.defaults.min_cfg if min_cfg is None else min_cfg,
            num_frames=num_frames,
        )
        discretization = diffusion.EDMDiscretization(sigma_max=self.defaults.sigma_max)
        return make_sampler(sampler or self.defaults.sampler, discretization,
                            self.defaults.num_steps if num_steps is None else num_steps, guider, progress=progress,
                            **(sampler_options or {}))

    def sample_frames(self, image: torch.Tensor, values: dict, num_frames: int, *, num_steps: int | None,
                      decoding_t: int | None, encoding_t: int | None, seed: int | None, cfg: float | None,
                      min_cfg: float | None, sampler: str | type | None, sampler_options: dict | None, callback,
                      progress: bool) -> np.ndarray:
        """What every pipeline call does once its conditions are known: sample, decode, return uint8 frames."""
        check_count("decoding_t", decoding_t)
        check_count("encoding_t", encoding_t)
        sampler = self.make_sampler(num_steps, num_frames=num_frames, cfg=cfg, min_cfg=min_cfg, sampler=sampler,
                                    sampler_options=sampler_options, progress=progress)
        generator = generator_for(seed, self.placement.device)
        sample = self.generate(image, values, num_frames, sampler, decoding_t=decoding_t, encoding_t=encoding_t,
                               generator=generator, callback=callback)
        return sample.to_uint8()

    @torch.inference_mode()
    def generate(self, image: torch.Tensor, values: dict, num_frames: int, sampler, *, decoding_t: int | None = None,
                 encoding_t: int | None = None, generator: torch.Generator | None = None,
                 cond_aug_noise: torch.Tensor | None = None, randn: torch.Tensor | None = None,
                 callback=None) -> VideoSample:
        """The sampling script's flow on a `1 3 H W` image in [-1, 1] and the model's `values` (cond_aug, ...).

        Draws, in the script's order, the conditioning-image noise and then the start noise from `generator`,
        unless they are given (`cond_aug_noise` 1 3 H W, `randn` t c h w: the golden cases store them).
        """
        if image.ndim != 4 or image.shape[:2] != (1, 3):
            raise ValueError(f"Expected one image shaped (1, 3, H, W) in [-1, 1], got {tuple(image.shape)}.")
        device, engine = self.placement.device, self.engine
        image = image.to(device, torch.float32)
        if cond_aug_noise is None:
            cond_aug_noise = torch.randn(image.shape, generator=generator, device=device)
        values = {"cond_frames_without_noise": image,
                  "cond_frames": image + values["cond_aug"] * cond_aug_noise.to(device), **values}
        batch = build_batch(values, input_keys(engine.conditioner), num_frames, device)
        with self.placement.use(engine.conditioner):
            c, uc = conditionings(engine.conditioner, batch, num_frames, encoding_t)
        if randn is None:
            shape = latent_shape(engine.first_stage_model, num_frames, *image.shape[-2:])
            randn = torch.randn(shape, generator=generator, device=device)
        with self.placement.use(engine.model):
            latents = sample_latents(engine, sampler, randn.to(device), c, uc, num_frames, generator, callback)
        with self.placement.use(engine.first_stage_model):
            decoded = decode_latents(engine.first_stage_model, latents, decoding_t, num_frames)
        if self.replaces_last_frame:
            decoded[-1:] = image
        return VideoSample(latents, decoded, c, uc)
