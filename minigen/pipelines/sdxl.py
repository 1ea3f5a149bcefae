"""Text to image: SD 2.1, SDXL with its refiner, and the one-to-four-step Turbo models (SDXL-Turbo, SD-Turbo).

    pipe = TextToImagePipeline.from_checkpoint("checkpoints/sd_xl_base_1.0.safetensors", device="cuda",
                                               dtype=torch.float16)
    refiner = TextToImagePipeline.from_checkpoint("checkpoints/sd_xl_refiner_1.0.safetensors", device="cuda",
                                                  dtype=torch.float16)
    images = pipe("an astronaut riding a pig", refiner=refiner)  # uint8 [1, 1024, 1024, 3]

The flow is the reference demo's: prompts (and SDXL's image sizes) -> conditioner -> c and uc -> sampler
with classifier-free guidance from unit noise -> VAE decoder. `image_to_image` noises images (or latents)
part of the way down the schedule and denoises them back, which is how the SDXL refiner finishes the base
model's latents. `TurboPipeline` samples without guidance in 1-4 steps. Taught in the text-to-image
notebook. Reference: scripts/demo/sampling.py, scripts/demo/turbo.py, sgm/inference/helpers.py.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import diffusion
from .common import (
    Pipeline,
    check_count,
    check_number,
    check_size,
    frames_to_uint8,
    generator_for,
    identify_preset,
    image_to_tensor,
    input_keys,
    make_sampler,
)

SIZE_MULTIPLE = 64  # pixels: the VAE divides sizes by 8 and the UNet's levels by up to 8 more
LATENT_FACTOR = 8  # pixels per latent, for every official VAE and the tiny ones


@dataclass(frozen=True)
class TextToImageDefaults:
    """One model's defaults, from the demo's VERSION2SPECS and sampling widgets."""

    size: int  # native height and width in pixels
    num_steps: int = 50  # the demo's default
    cfg: float = 5.0  # the demo's default VanillaCFG scale
    sampler: str = "EulerEDMSampler"
    # The demo's `is_legacy=False` (SDXL base and Turbo): the unconditional text embeddings are zeros
    # rather than the embeddings of the empty prompt. minigen embeds a negative prompt when one is given.
    zero_empty_negative: bool = False


@dataclass
class MicroConditioning:
    """SDXL's extra conditions (Podell et al. 2023, section 2.2), read by the conditioners that have them.

    The defaults are the demo's: the image was not cropped and had the generated size; the refiner was
    trained with aesthetic scores, and guidance pushes from a poor score (2.5) towards a good one (6.0).
    """

    original_size: tuple[int, int] | None = None  # (height, width) of the "training image"; None: the output's
    crop_coords_top_left: tuple[int, int] = (0, 0)  # (top, left) of the crop taken from it
    target_size: tuple[int, int] | None = None  # (height, width); None: the output's
    aesthetic_score: float = 6.0  # refiner only
    negative_aesthetic_score: float = 2.5  # refiner only, in the unconditional branch

    def __post_init__(self):
        for name in ("original_size", "crop_coords_top_left", "target_size"):
            pair = getattr(self, name)
            if pair is not None and (len(pair) != 2 or not all(isinstance(n, (int, float)) for n in pair)):
                raise ValueError(f"{name} is a pair of numbers (height, width) or (top, left), got {pair!r}.")


# ---------------------------------------------------------------- schedules


class StrengthDiscretization:
    """The lowest `strength` fraction of a schedule's sigmas (and its final 0), for image-to-image.

    strength 1 keeps the whole schedule (pure noise: the input is forgotten); strength 0.3 starts 30 %
    of the way up the noise levels, so the input's composition survives. Reference: `Img2ImgDiscretizationWrapper`
    in sgm/inference/helpers.py.
    """

    def __init__(self, discretization, strength: float):
        self.discretization = discretization
        self.strength = strength

    def __call__(self, num_steps: int, device="cpu") -> torch.Tensor:
        sigmas = self.discretization(num_steps, device=device)  # num_steps + 1, high to low, ending at 0
        keep = max(int(self.strength * len(sigmas)), 1)
        return sigmas[len(sigmas) - keep:]


class TurboDiscretization:
    """SDXL-Turbo's schedule: 1-4 of the 1000 training noise levels (indices 0, 100, 200, 300), then 0.

    Reference: `SubstepSampler` in scripts/demo/turbo.py, which picks these indices from a 1000-step
    LegacyDDPMDiscretization.
    """

    STARTS = (0, 100, 200, 300)  # indices into the 1000 sigmas, high to low

    def __init__(self, discretization=None):
        self.discretization = discretization or diffusion.LegacyDDPMDiscretization()

    def __call__(self, num_steps: int, device="cpu") -> torch.Tensor:
        if not 1 <= num_steps <= len(self.STARTS):
            raise ValueError(f"Turbo models sample in 1 to {len(self.STARTS)} steps, got num_steps={num_steps}.")
        sigmas = self.discretization(1000, device=device)  # 1001: 1000 sigmas and the final 0
        return sigmas[[*self.STARTS[:num_steps], 1000]]


# ---------------------------------------------------------------- inputs


def prompt_list(prompt, count: int | None = None, what: str = "prompt", per: str = "image") -> list[str]:
    """A prompt or a list of prompts as a list; a single prompt is repeated to `count` when given."""
    prompts = [prompt] * (count or 1) if isinstance(prompt, str) else prompt
    if not isinstance(prompts, (list, tuple)) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"{what} must be a string or a non-empty list of strings, got {prompt!r}.")
    if count is not None and len(prompts) != count:
        raise ValueError(f"Got {len(prompts)} {what}s for {count} {per}s; give one, or one per {per}.")
    return list(prompts)


def conditioner_batches(keys: list[str], prompts: list[str], negative_prompts: list[str], height: int, width: int,
                        micro: MicroConditioning, device) -> tuple[dict, dict]:
    """The demo's `get_batch`: what each embedder reads, for the conditional and the unconditional branch."""

    def rows(*values) -> torch.Tensor:  # the same numbers for every image: b d
        return torch.tensor([values] * len(prompts), dtype=torch.float32, device=device)

    batch = {
        "txt": prompts,
        "original_size_as_tuple": rows(*(micro.original_size or (height, width))),
        "crop_coords_top_left": rows(*micro.crop_coords_top_left),
        "target_size_as_tuple": rows(*(micro.target_size or (height, width))),
        "aesthetic_score": rows(micro.aesthetic_score),
    }
    batch_uc = {**batch, "txt": negative_prompts, "aesthetic_score": rows(micro.negative_aesthetic_score)}
    unknown = [key for key in keys if key not in batch]
    if unknown:
        raise ValueError(f"The model's conditioner reads {unknown}, which a text-to-image pipeline does not "
                         f"provide (it gives {sorted(batch)}); is the checkpoint meant for another pipeline?")
    return {key: batch[key] for key in keys}, {key: batch_uc[key] for key in keys}


# ---------------------------------------------------------------- pipelines


class TextToImagePipeline(Pipeline):
    """Prompts -> uint8 images `[N, H, W, 3]` with SD 2.1, SDXL base or the SDXL refiner (and their tiny versions).

    `offload="model"` keeps every part on the CPU except while it runs; `dtype` applies to the network and
    the text encoders, while the VAE stays float32 (SDXL's VAE overflows in float16).
    """

    DEFAULTS = {
        "sd_2_1": TextToImageDefaults(size=512),
        "sd_2_1_768": TextToImageDefaults(size=768),
        "sd_xl_base": TextToImageDefaults(size=1024, zero_empty_negative=True),
        "sd_xl_refiner": TextToImageDefaults(size=1024),
        "tiny_sd": TextToImageDefaults(size=64, num_steps=4),
        "tiny_sdxl": TextToImageDefaults(size=64, num_steps=4, zero_empty_negative=True),
    }

    # -- public calls

    @torch.inference_mode()
    def __call__(
        self,
        prompt,  # a string or a list of strings
        negative_prompt="",  # a string or one per prompt; steers away from it when cfg > 1
        height: int | None = None,  # pixels, a multiple of 64; default: the model's native size
        width: int | None = None,
        num_steps: int | None = None,  # default: 50 (official models)
        cfg: float | None = None,  # VanillaCFG scale; 1 turns guidance (and the unconditional pass) off
        sampler: str | None = None,  # a minigen sampler name; default "EulerEDMSampler"
        sampler_options: dict | None = None,  # e.g. {"s_churn": 1.0}, {"eta": 0.5}, {"order": 3}
        seed: int | None = None,
        num_images: int = 1,  # images per prompt
        micro: MicroConditioning | None = None,  # SDXL's size (and aesthetic) conditions
        refiner: "TextToImagePipeline | None" = None,  # finish the latents with this model (SDXL refiner)
        refiner_strength: float = 0.3,  # the demo's default refinement strength
        callback=None,  # callback(x, denoised, sigma, step) after every sampler step
        progress: bool = True,
        return_latents: bool = False,  # the scaled latents `N 4 H/8 W/8` instead of images
    ):
        """`len(prompts) * num_images` images as uint8 `[N, H, W, 3]`."""
        check_count("num_images", num_images, allow_none=False)
        distinct = prompt_list(prompt)
        negatives = prompt_list(negative_prompt, len(distinct), "negative_prompt", per="prompt")
        prompts = [p for p in distinct for _ in range(num_images)]  # each prompt num_images times, side by side
        negative_prompts = [n for n in negatives for _ in range(num_images)]
        height, width = self.image_size(height, width)
        sampler = self.make_sampler(num_steps, cfg, sampler, sampler_options, progress)
        generator = generator_for(seed, self.placement.device)
        noise = torch.randn(self.latent_shape(len(prompts), height, width), generator=generator,
                            device=self.placement.device)
        latents = self.sample(noise, prompts, negative_prompts, sampler, micro, generator, callback)
        if refiner is not None:
            return refiner.refine_latents(latents, prompts, negative_prompts, refiner_strength, generator,
                                          progress=progress, return_latents=return_latents)
        return latents if return_latents else self.decode(latents)

    @torch.inference_mode()
    def image_to_image(
        self,
        images,  # uint8 [H, W, 3] or [N, H, W, 3] (or a path), or latents `N 4 H/8 W/8` from `return_latents`
        prompt,  # a string, or one per image
        negative_prompt="",
        strength: float = 0.5,  # fraction of the schedule run again: 1 forgets the input, 0.3 refines it
        num_steps: int | None = None,  # of the full schedule; about strength * num_steps of them run
        cfg: float | None = None,
        sampler: str | None = None,
        sampler_options: dict | None = None,
        seed: int | None = None,
        micro: MicroConditioning | None = None,
        callback=None,
        progress: bool = True,
        return_latents: bool = False,
    ):
        """The images redrawn towards the prompt, uint8 `[N, H, W, 3]` (the demo's img2img and refiner)."""
        generator = generator_for(seed, self.placement.device)
        latents = self.to_latents(images, generator)
        prompts = prompt_list(prompt, len(latents))
        negative_prompts = prompt_list(negative_prompt, len(latents), "negative_prompt")
        return self.refine_latents(latents, prompts, negative_prompts, strength, generator, num_steps, cfg, sampler,
                                   sampler_options, micro, callback, progress, return_latents)

    # -- the steps

    def image_size(self, height: int | None, width: int | None) -> tuple[int, int]:
        height = self.defaults.size if height is None else height
        width = self.defaults.size if width is None else width
        check_size(height, width, SIZE_MULTIPLE, "height x width", "use")
        return height, width

    def latent_shape(self, batch_size: int, height: int, width: int) -> tuple[int, int, int, int]:
        channels = self.engine.first_stage_model.latent_channels
        return (batch_size, channels, height // LATENT_FACTOR, width // LATENT_FACTOR)  # b c h w

    def discretization(self):
        """The demo's schedule: num_steps of the 1000 training noise levels, evenly spread."""
        return diffusion.LegacyDDPMDiscretization()

    def make_sampler(self, num_steps, cfg, sampler, sampler_options, progress, discretization=None):
        """The named sampler over the schedule, with VanillaCFG, or no guider at cfg 1 (it would return the
        conditional prediction anyway, after a wasted unconditional pass)."""
        cfg = self.defaults.cfg if cfg is None else cfg
        check_number("cfg", cfg)
        guider = diffusion.IdentityGuider() if cfg == 1 else diffusion.VanillaCFG(cfg)
        return make_sampler(sampler or self.defaults.sampler, discretization or self.discretization(),
                            self.defaults.num_steps if num_steps is None else num_steps, guider, progress=progress,
                            **(sampler_options or {}))

    def conditionings(self, prompts, negative_prompts, height, width, micro, guided: bool) -> tuple[dict, dict]:
        """c and uc (None without guidance); with `zero_empty_negative` and no negative prompt, uc's text
        embeddings are zeros."""
        conditioner = self.engine.conditioner
        batch, batch_uc = conditioner_batches(input_keys(conditioner), prompts, negative_prompts, height, width,
                                              micro or MicroConditioning(), self.placement.device)
        zeroed = ["txt"] if self.defaults.zero_empty_negative and not any(negative_prompts) else []
        with self.placement.use(conditioner):
            if not guided:
                return conditioner.embed(batch, (), generator=None, dropout=False), None
            return conditioner.get_unconditional_conditioning(batch, batch_uc, force_uc_zero_embeddings=zeroed)

    @torch.inference_mode()
    def sample(self, x: torch.Tensor, prompts, negative_prompts, sampler, micro, generator, callback) -> torch.Tensor:
        """Latents `b 4 h w` from `x`, unit noise (or, for image-to-image, noised latents scaled like it)."""
        height, width = (side * LATENT_FACTOR for side in x.shape[-2:])
        guided = not isinstance(sampler.guider, diffusion.IdentityGuider)
        c, uc = self.conditionings(prompts, negative_prompts, height, width, micro, guided)
        with self.placement.use(self.engine.model), self.placement.use(self.engine.denoiser):
            return sampler(self.engine.denoise, x, c, uc, callback=callback, generator=generator)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        with self.placement.use(self.engine.first_stage_model):
            return frames_to_uint8(self.engine.first_stage_model.decode(latents.float()))

    @torch.inference_mode()
    def to_latents(self, images, generator) -> torch.Tensor:
        """Images -> scaled latents (a sample of the VAE's posterior, as the reference encodes); latents pass."""
        device, first_stage = self.placement.device, self.engine.first_stage_model
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[1] != first_stage.latent_channels:
                raise ValueError(f"Expected latents shaped (N, {first_stage.latent_channels}, H/8, W/8), got "
                                 f"{tuple(images.shape)}; pass uint8 images as numpy arrays.")
            check_size(*(side * LATENT_FACTOR for side in images.shape[-2:]), SIZE_MULTIPLE, "Image size of the "
                       "latents", "use latents of")
            return images.to(device, torch.float32)
        if isinstance(images, np.ndarray) and images.ndim == 4:
            pixels = torch.cat([image_to_tensor(image, SIZE_MULTIPLE, device) for image in images])
        else:
            pixels = image_to_tensor(images, SIZE_MULTIPLE, device)  # 1 3 H W
        with self.placement.use(first_stage):
            return first_stage.encode(pixels, sample=True, generator=generator)

    def refine_latents(self, latents, prompts, negative_prompts, strength, generator, num_steps=None, cfg=None,
                       sampler=None, sampler_options=None, micro=None, callback=None, progress=True,
                       return_latents=False):
        """Noise the latents up to the `strength` point of the schedule and sample them back down."""
        check_number("strength", strength)
        if strength > 1:
            raise ValueError(f"strength is a fraction of the schedule in [0, 1], got {strength}.")
        schedule = StrengthDiscretization(self.discretization(), strength)
        sampler = self.make_sampler(num_steps, cfg, sampler, sampler_options, progress, schedule)
        sigma = schedule(sampler.num_steps, device=latents.device)[0]  # the highest noise level kept
        noise = torch.randn(latents.shape, generator=generator, device=latents.device)
        # the sampler multiplies its input by sqrt(1 + sigma^2), expecting unit-variance noise: divide first
        start = (latents + sigma * noise) / torch.sqrt(1.0 + sigma**2)
        refined = self.sample(start, prompts, negative_prompts, sampler, micro, generator, callback)
        return refined if return_latents else self.decode(refined)


class TurboPipeline(TextToImagePipeline):
    """SDXL-Turbo / SD-Turbo: 1-4 steps of Euler ancestral sampling without guidance (no negative prompt, no cfg).

    SD-Turbo is the sd_2_1 architecture (its file reads as sd_2_1); SDXL-Turbo is sd_xl_base's.
    Reference: scripts/demo/turbo.py.
    """

    DEFAULTS = {
        "sd_xl_turbo": TextToImageDefaults(size=512, num_steps=1, cfg=1.0, sampler="EulerAncestralSampler"),
        "sd_2_1": TextToImageDefaults(size=512, num_steps=1, cfg=1.0, sampler="EulerAncestralSampler"),
        "tiny_sdxl": TextToImageDefaults(size=64, num_steps=1, cfg=1.0, sampler="EulerAncestralSampler"),
        "tiny_sd": TextToImageDefaults(size=64, num_steps=1, cfg=1.0, sampler="EulerAncestralSampler"),
    }
    SAME_ARCHITECTURE = {"sd_xl_base": "sd_xl_turbo"}  # SDXL-Turbo has no manifest: its file reads as sd_xl_base

    @classmethod
    def from_checkpoint(cls, path, preset: str | None = None, device="cpu", dtype: torch.dtype = torch.float32,
                        offload: str | None = None) -> "TurboPipeline":
        if preset is None:
            found = identify_preset(path, [*cls.DEFAULTS, *cls.SAME_ARCHITECTURE])
            preset = cls.SAME_ARCHITECTURE.get(found, found)
        return cls.from_preset(preset, weights=Path(path), device=device, dtype=dtype, offload=offload)

    def __call__(self, prompt, height: int | None = None, width: int | None = None, num_steps: int = 1,
                 seed: int | None = None, num_images: int = 1, micro: MicroConditioning | None = None,
                 callback=None, progress: bool = True, return_latents: bool = False):
        """`len(prompts) * num_images` images as uint8 `[N, H, W, 3]`, in `num_steps` (1-4) network calls."""
        return super().__call__(prompt, height=height, width=width, num_steps=num_steps, seed=seed,
                                num_images=num_images, micro=micro, callback=callback, progress=progress,
                                return_latents=return_latents)

    def discretization(self):
        return TurboDiscretization()
