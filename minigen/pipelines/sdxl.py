"""Text to image: SD 2.1, SDXL with its refiner, and the one-to-four-step Turbo models (SDXL-Turbo, SD-Turbo).

    pipe = TextToImagePipeline.from_checkpoint("checkpoints/sd_xl_base_1.0.safetensors", device="cuda",
                                               dtype=torch.float16)
    refiner = TextToImagePipeline.from_checkpoint("checkpoints/sd_xl_refiner_1.0.safetensors", device="cuda",
                                                  dtype=torch.float16)
    images = pipe("an astronaut riding a pig", refiner=refiner)  # uint8 [1, 1024, 1024, 3]

The flow is the reference demo's: prompts (and SDXL's image sizes) -> conditioner -> c and uc -> sampler
with classifier-free guidance from unit noise -> VAE decoder. `image_to_image` noises images (or latents)
part of the way down the schedule and denoises them back. With a refiner, the base model stops part of the
way down and the refiner finishes the same trajectory (`Refinement`). `TurboPipeline` samples without
guidance in 1-4 steps. Taught in the text-to-image notebook. Reference: scripts/demo/sampling.py,
scripts/demo/streamlit_helpers.py, scripts/demo/discretization.py, scripts/demo/turbo.py.
"""

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from .. import diffusion
from ..diffusion import EulerAncestralSampler, EulerEDMSampler
from ..io import to_uint8
from ..presets import SAME_LAYOUT
from .common import (
    Pipeline,
    check_count,
    check_number,
    check_size,
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
    sampler: type = EulerEDMSampler  # the demo's default
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


def check_strength(strength) -> None:
    """A strength is the fraction of the schedule that runs: a number in [0, 1]."""
    check_number("strength", strength)
    if strength > 1:
        raise ValueError(f"strength is a fraction of the schedule in [0, 1], got {strength}.")


def strength_index(strength: float, num_sigmas: int) -> int:
    """Index of the sigma where the lowest `strength` part of a schedule of `num_sigmas` sigmas begins.

    The demo keeps the lowest max(int(strength * num_sigmas), 1) sigmas, the final 0 included.
    """
    return num_sigmas - max(int(strength * num_sigmas), 1)


class StrengthDiscretization:
    """The lowest `strength` fraction of a schedule's sigmas (and its final 0), for image-to-image and the refiner.

    strength 1 keeps the whole schedule (pure noise: the input is forgotten); strength 0.3 starts 30 %
    of the way up the noise levels, so the input's composition survives. Reference: `Img2ImgDiscretizationWrapper`
    in scripts/demo/discretization.py.
    """

    def __init__(self, discretization, strength: float):
        self.discretization = discretization
        self.strength = strength

    def __call__(self, num_steps: int, device="cpu") -> torch.Tensor:
        sigmas = self.discretization(num_steps, device=device)  # num_steps + 1, high to low, ending at 0
        return sigmas[strength_index(self.strength, len(sigmas)):]


class HandoverDiscretization:
    """The upper part of a schedule: its sigmas down to the one where a refiner of `strength` takes over.

    The base model runs these and hands its still noisy latents over; the refiner's
    `StrengthDiscretization(strength)` over the same number of steps starts on the sigma this one ends on.
    Reference: `Txt2NoisyDiscretizationWrapper` in scripts/demo/discretization.py, whose `original_steps` is
    the base's own number of steps in the demo (as here, where it is always the call's `num_steps`).
    """

    def __init__(self, discretization, strength: float):
        self.discretization = discretization
        self.strength = strength

    def __call__(self, num_steps: int, device="cpu") -> torch.Tensor:
        sigmas = self.discretization(num_steps, device=device)  # num_steps + 1, high to low, ending at 0
        return sigmas[:strength_index(self.strength, len(sigmas)) + 1]


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


@dataclass(frozen=True)
class Refinement:
    """How the SDXL refiner finishes the base model's image: the demo's "Refiner Options".

    `finish_denoising=True` (the demo's default): the base model runs its schedule only down to the sigma
    where the refiner's `strength` part begins (0.3866 for 50 steps and 0.15: the base runs 44 steps), and the
    refiner finishes that same trajectory in the remaining steps (6) without adding noise.
    `finish_denoising=False` (the demo before July 2023): the base runs down to sigma 0 and the refiner adds
    fresh noise up to its first sigma, as image-to-image does.
    """

    strength: float = 0.15  # the lowest fraction of the schedule that the refiner runs (the demo's default)
    finish_denoising: bool = True  # False: the base finishes its image and the refiner re-noises it
    num_steps: int | None = None  # the refiner's whole schedule (~strength * num_steps run); default: the base's
    cfg: float | None = None  # the refiner's VanillaCFG scale; default: its preset's (5.0)
    sampler: str | type | None = None  # a minigen sampler or its name; default: the refiner preset's (Euler)
    sampler_options: dict | None = None  # e.g. {"s_churn": 1.0}

    def __post_init__(self):
        check_strength(self.strength)
        if not isinstance(self.finish_denoising, bool):
            raise ValueError(f"finish_denoising is True or False, got {self.finish_denoising!r}.")
        check_count("Refinement num_steps", self.num_steps)
        if self.cfg is not None:
            check_number("Refinement cfg", self.cfg)


# ---------------------------------------------------------------- inputs


def prompt_list(prompt, count: int | None = None, what: str = "prompt", per: str = "image") -> list[str]:
    """A prompt or a list of prompts as a list; a single prompt is repeated to `count` when given."""
    prompts = [prompt] * (count or 1) if isinstance(prompt, str) else prompt
    if not isinstance(prompts, (list, tuple)) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"{what} must be a string or a non-empty list of strings, got {prompt!r}.")
    if count is not None and len(prompts) != count:
        raise ValueError(f"Got {len(prompts)} {what}s for {count} {per}s; give one, or one per {per}.")
    return list(prompts)


def prompt_batch(prompt, negative_prompt, num_images: int) -> tuple[list[str], list[str]]:
    """One prompt and one negative prompt per image: each prompt `num_images` times, side by side."""
    check_count("num_images", num_images, allow_none=False)
    distinct = prompt_list(prompt)
    negatives = prompt_list(negative_prompt, len(distinct), "negative_prompt", per="prompt")
    return ([p for p in distinct for _ in range(num_images)], [n for n in negatives for _ in range(num_images)])


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


def seeded_randn(shape, seed: int) -> torch.Tensor:
    """Unit noise from numpy's RandomState(seed), drawn in float64 and kept as float32: the Turbo demo's noise."""
    return torch.from_numpy(np.random.RandomState(seed % 2**32).randn(*shape)).float()  # RandomState: 32-bit seeds


# ---------------------------------------------------------------- pipelines


class TextToImagePipeline(Pipeline):
    """Prompts -> uint8 images `[N, H, W, 3]` with SD 2.1, SDXL base or the SDXL refiner (and their tiny versions).

    `offload="model"` keeps every part on the CPU except while it runs; `dtype` applies to the network and
    the text encoders, while the VAE stays float32 (SDXL's VAE overflows in float16).

    Seeds: every draw comes from one CPU `torch.Generator` seeded with `seed` (the demo's 42 by default) and
    moves to the device afterwards, so the same seed gives the same noise on every device. The start noise is
    the demo's (`torch.randn((N, 4, H/8, W/8))` on the CPU, its first draw after seeding), and so is
    image-to-image's VAE posterior sample (also a first CPU draw). The demo draws the later noise (image-to-image's
    noise, the refiner's fresh noise with `finish_denoising=False`, stochastic samplers' steps) from the
    device's generator, which a CPU generator cannot reproduce: those numbers differ from the demo's.
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
        *,
        negative_prompt="",  # a string or one per prompt; steers away from it when cfg > 1
        height: int | None = None,  # pixels, a multiple of 64; default: the model's native size
        width: int | None = None,
        num_steps: int | None = None,  # default: 50 (official models)
        cfg: float | None = None,  # VanillaCFG scale; 1 turns guidance (and the unconditional pass) off
        sampler: str | type | None = None,  # a minigen sampler or its name; default EulerEDMSampler
        sampler_options: dict | None = None,  # e.g. {"s_churn": 1.0}, {"eta": 0.5}, {"order": 3}
        seed: int | None = 42,  # the demo's; None: a random seed
        num_images: int = 1,  # images per prompt
        micro: MicroConditioning | None = None,  # SDXL's size (and aesthetic) conditions
        refiner: "TextToImagePipeline | None" = None,  # finish the image with this model (the SDXL refiner)
        refinement: Refinement | None = None,  # how the refiner finishes it; default: Refinement(), the demo's
        callback=None,  # callback(x, denoised, sigma, step) after every sampler step (the base's, then the refiner's)
        progress: bool = True,
        return_latents: bool = False,  # the scaled latents `N 4 H/8 W/8` instead of images
    ):
        """`len(prompts) * num_images` images as uint8 `[N, H, W, 3]`.

        With a refiner, `negative_prompt` steers the base only: the refiner's unconditional branch is the empty
        prompt (with the low aesthetic score), as in the demo. `callback` sees the base's steps and then the
        refiner's, each counted from 0.
        """
        prompts, negative_prompts = prompt_batch(prompt, negative_prompt, num_images)
        height, width = self.image_size(height, width)
        if refinement is not None and refiner is None:
            raise ValueError("refinement= says how a refiner finishes the image; pass refiner= (an SDXL refiner "
                             "pipeline) too.")
        refinement = refinement or Refinement()
        handover = refiner is not None and refinement.finish_denoising  # the base stops where the refiner takes over
        base = self.make_sampler(num_steps, cfg=cfg, sampler=sampler, sampler_options=sampler_options,
                                 progress=progress, discretization=HandoverDiscretization(
                                     self.discretization(), refinement.strength) if handover else None)
        finish = None if refiner is None else refiner.refinement_sampler(refinement, base)  # checked before running
        generator = generator_for(seed, "cpu")
        noise = self.start_noise(self.latent_shape(len(prompts), height, width), generator)
        latents = self.sample(noise, prompts, negative_prompts, base, micro=micro, generator=generator,
                              callback=callback)
        if refiner is not None:  # with "" as negative prompt, as the demo gives it
            latents = refiner.refine_latents(latents, prompts, [""] * len(prompts), finish,
                                             add_noise=not refinement.finish_denoising, generator=generator,
                                             callback=callback)
        return latents if return_latents else (refiner or self).decode(latents)

    @torch.inference_mode()
    def image_to_image(
        self,
        images,  # uint8 [H, W, 3] or [N, H, W, 3] (or a path), or latents `N 4 H/8 W/8` from `return_latents`
        prompt,  # a string, or one per image
        *,
        negative_prompt="",
        strength: float = 0.75,  # the demo's; fraction of the schedule run again: 1 forgets the input, 0.3 refines it
        num_steps: int | None = None,  # of the full schedule; about strength * num_steps of them run
        cfg: float | None = None,
        sampler: str | type | None = None,
        sampler_options: dict | None = None,
        seed: int | None = 42,
        micro: MicroConditioning | None = None,
        callback=None,
        progress: bool = True,
        return_latents: bool = False,
    ):
        """The images redrawn towards the prompt, uint8 `[N, H, W, 3]` (the demo's img2img)."""
        redraw = self.strength_sampler(strength, num_steps, cfg=cfg, sampler=sampler, sampler_options=sampler_options,
                                       progress=progress)
        generator = generator_for(seed, "cpu")
        latents = self.to_latents(images, generator)
        prompts = prompt_list(prompt, len(latents))
        negative_prompts = prompt_list(negative_prompt, len(latents), "negative_prompt")
        latents = self.refine_latents(latents, prompts, negative_prompts, redraw, add_noise=True, generator=generator,
                                      micro=micro, callback=callback)
        return latents if return_latents else self.decode(latents)

    # -- the steps

    def image_size(self, height: int | None, width: int | None) -> tuple[int, int]:
        """(height, width) of the images to make: the model's native size where None, checked to be multiples of 64."""
        height = self.defaults.size if height is None else height
        width = self.defaults.size if width is None else width
        check_size(height, width, SIZE_MULTIPLE, "height x width", "use")
        return height, width

    def latent_shape(self, batch_size: int, height: int, width: int) -> tuple[int, int, int, int]:
        """b c h w of the start noise for `batch_size` images of height x width pixels."""
        channels = self.engine.first_stage_model.latent_channels
        return (batch_size, channels, height // LATENT_FACTOR, width // LATENT_FACTOR)  # b c h w

    def discretization(self):
        """The demo's schedule: num_steps of the 1000 training noise levels, evenly spread."""
        return diffusion.LegacyDDPMDiscretization()

    def make_sampler(self, num_steps: int | None = None, *, cfg: float | None = None,
                     sampler: str | type | None = None, sampler_options: dict | None = None, progress: bool = True,
                     discretization=None):
        """The chosen sampler (a class or its name) over the schedule, with VanillaCFG, or no guider at cfg 1 (it
        would return the conditional prediction anyway, after a wasted unconditional pass)."""
        cfg = self.defaults.cfg if cfg is None else cfg
        check_number("cfg", cfg)
        guider = diffusion.IdentityGuider() if cfg == 1 else diffusion.VanillaCFG(cfg)
        return make_sampler(sampler or self.defaults.sampler, discretization or self.discretization(),
                            self.defaults.num_steps if num_steps is None else num_steps, guider, progress=progress,
                            **(sampler_options or {}))

    def strength_sampler(self, strength: float, num_steps: int | None = None, **options):
        """A sampler over the lowest `strength` fraction of the schedule (image-to-image, the refiner)."""
        check_strength(strength)
        return self.make_sampler(num_steps, discretization=StrengthDiscretization(self.discretization(), strength),
                                 **options)

    def refinement_sampler(self, refinement: Refinement, base):
        """This refiner's sampler for `refinement` after the base model's sampler `base`.

        To finish the base's trajectory it must start on the sigma where the base stops, which holds when both
        run the same number of steps (the default); an error says so before anything runs.
        """
        num_steps = base.num_steps if refinement.num_steps is None else refinement.num_steps
        sampler = self.strength_sampler(refinement.strength, num_steps, cfg=refinement.cfg, sampler=refinement.sampler,
                                        sampler_options=refinement.sampler_options, progress=base.progress)
        stop, start = float(base.sigmas()[-1]), float(sampler.sigmas()[0])
        if refinement.finish_denoising and not np.isclose(stop, start):
            raise ValueError(f"The base stops at sigma {stop:.4g} ({base.num_steps} steps) but the refiner's schedule "
                             f"({num_steps} steps) starts at sigma {start:.4g}: it can only finish the base's "
                             "trajectory from the same sigma. Leave Refinement(num_steps=None) (the base's steps), "
                             "or pass Refinement(finish_denoising=False) to re-noise the base's finished image.")
        return sampler

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

    def start_noise(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Unit noise `b c h w` to start from: the demo's `torch.randn(shape)` on the CPU, then moved to the device."""
        return torch.randn(shape, generator=generator).to(self.placement.device)

    def fresh_noise(self, generator: torch.Generator):
        """The sampler's `noise_sampler`: the noise stochastic samplers add on their way, drawn on the CPU."""
        return lambda like: torch.randn(like.shape, generator=generator).to(like)

    @torch.inference_mode()
    def sample(self, x: torch.Tensor, prompts, negative_prompts, sampler, *, micro: MicroConditioning | None = None,
               generator: torch.Generator, callback=None) -> torch.Tensor:
        """Latents `b 4 h w` at the schedule's last sigma, from the sampler's input `x`: unit noise, or
        `sampler.input_for(latents)` for latents that already carry the schedule's first sigma of noise."""
        height, width = (side * LATENT_FACTOR for side in x.shape[-2:])
        guided = not isinstance(sampler.guider, diffusion.IdentityGuider)
        c, uc = self.conditionings(prompts, negative_prompts, height, width, micro, guided)
        with self.placement.use(self.engine.model), self.placement.use(self.engine.denoiser):
            return sampler(self.engine.denoise, x, c, uc, callback=callback, noise_sampler=self.fresh_noise(generator))

    def refine_latents(self, latents: torch.Tensor, prompts, negative_prompts, sampler, *, add_noise: bool,
                       generator: torch.Generator, micro: MicroConditioning | None = None,
                       callback=None) -> torch.Tensor:
        """Latents sampled down `sampler`'s (strength-cut) schedule from `latents`: clean latents noised up to its
        first sigma (`add_noise`: image-to-image), or latents already there (the refiner finishing the base's run)."""
        if add_noise:
            sigma = sampler.sigmas(device=latents.device)[0]
            # a CPU draw like the others; the demo draws this one on the device (torch.randn_like): not its numbers
            latents = latents + sigma * torch.randn(latents.shape, generator=generator).to(latents)
        return self.sample(sampler.input_for(latents), prompts, negative_prompts, sampler, micro=micro,
                           generator=generator, callback=callback)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents `b 4 h w` -> uint8 images `[b, H, W, 3]`, truncated as the demo saves them (minigen.io.to_uint8)."""
        with self.placement.use(self.engine.first_stage_model):
            images = self.engine.first_stage_model.decode(latents.float())  # b 3 H W, about [-1, 1]
        return to_uint8(rearrange(images, "b c h w -> b h w c"), mode="truncate")

    @torch.inference_mode()
    def to_latents(self, images, generator: torch.Generator) -> torch.Tensor:
        """Images -> scaled latents (a sample of the VAE's posterior, as the reference encodes); latents pass.

        The posterior's noise is drawn on the CPU, as the reference draws it (the demo's first draw after seeding).
        """
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
            posterior = first_stage.posterior(pixels)
        noise = torch.randn(posterior.mean.shape, generator=generator).to(posterior.mean)
        return first_stage.scale_factor * (posterior.mean + posterior.std * noise)


class TurboPipeline(TextToImagePipeline):
    """SDXL-Turbo / SD-Turbo: 1-4 steps of Euler ancestral sampling without guidance (no negative prompt, no cfg).

    SD-Turbo is the sd_2_1 architecture (its file reads as sd_2_1); SDXL-Turbo is sd_xl_base's.
    Noise is the Turbo demo's: numpy's RandomState(seed) for the start and RandomState(seed + k) for the k-th
    ancestral step, so a seed gives the demo's numbers (for the first image) on every device.
    Reference: scripts/demo/turbo.py.
    """

    DEFAULTS = {
        "sd_xl_turbo": TextToImageDefaults(size=512, num_steps=1, cfg=1.0, sampler=EulerAncestralSampler),
        "sd_2_1": TextToImageDefaults(size=512, num_steps=1, cfg=1.0, sampler=EulerAncestralSampler),
        "tiny_sdxl": TextToImageDefaults(size=64, num_steps=1, cfg=1.0, sampler=EulerAncestralSampler),
        "tiny_sd": TextToImageDefaults(size=64, num_steps=1, cfg=1.0, sampler=EulerAncestralSampler),
    }
    @classmethod
    def from_checkpoint(cls, path, preset: str | None = None, device="cpu", dtype: torch.dtype = torch.float32,
                        offload: str | None = None) -> "TurboPipeline":
        if preset is None:  # SDXL-Turbo's file has SDXL base's tensor table (presets.SAME_LAYOUT): it reads as that
            read_as = {SAME_LAYOUT.get(name, name): name for name in cls.DEFAULTS}
            found = identify_preset(path, list(read_as))
            preset = read_as.get(found, found)
        return cls.from_preset(preset, weights=Path(path), device=device, dtype=dtype, offload=offload)

    def __call__(self, prompt, *, height: int | None = None, width: int | None = None, num_steps: int | None = None,
                 seed: int | None = 0, num_images: int = 1, micro: MicroConditioning | None = None,
                 callback=None, progress: bool = True, return_latents: bool = False):
        """`len(prompts) * num_images` images as uint8 `[N, H, W, 3]`, in `num_steps` (1-4, default 1) network calls.

        `seed` defaults to the Turbo demo's 0; None: a random seed."""
        return super().__call__(prompt, height=height, width=width, num_steps=num_steps, seed=seed,
                                num_images=num_images, micro=micro, callback=callback, progress=progress,
                                return_latents=return_latents)

    def discretization(self):
        return TurboDiscretization()

    def start_noise(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """The Turbo demo's start noise: numpy's RandomState(seed), whatever the generator has drawn."""
        return seeded_randn(shape, generator.initial_seed()).to(self.placement.device)

    def fresh_noise(self, generator: torch.Generator):
        """The Turbo demo's `SeededNoise`: the k-th draw (one per ancestral step) comes from RandomState(seed + k)."""
        seeds = itertools.count(generator.initial_seed() + 1)
        return lambda like: seeded_randn(like.shape, next(seeds)).to(like)
