"""Guiders: classifier-free guidance, with a scale that may vary per video frame or view.

A guider first doubles the batch (`prepare_inputs`: unconditional half, then conditional half),
the denoiser runs once on it, and the guider mixes the halves:
    guided = uncond + scale * (cond - uncond)          (Ho & Salimans, 2022)
Video guiders use one scale per frame. Taught in notebook 03; corresponds to the reference's
`sgm/modules/diffusionmodules/guiders.py`.
"""

import torch
from einops import rearrange

# conditioning keys that differ between the conditional and the unconditional pass
GUIDED_KEYS = ("vector", "crossattn", "concat")


def double_batch(x: torch.Tensor, sigma: torch.Tensor, cond: dict, uc: dict, guided_keys) -> tuple:
    """Stack [unconditional; conditional] for the keys in `guided_keys`; pass the others through."""
    merged = {}
    for key, value in cond.items():
        merged[key] = torch.cat((uc[key], value), 0) if key in guided_keys else value
    return torch.cat([x, x]), torch.cat([sigma, sigma]), merged


class IdentityGuider:
    """No guidance: the conditional prediction is used as is (SDXL-Turbo, training previews)."""

    def prepare_inputs(self, x, sigma, cond: dict, uc: dict):
        """The denoiser's inputs as they are: one conditional pass, no unconditional half."""
        return x, sigma, dict(cond)

    def __call__(self, denoised: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The conditional prediction, unchanged."""
        return denoised


class VanillaCFG:
    """Classifier-free guidance with one scale for the whole batch (SD 2.1, SDXL)."""

    def __init__(self, scale: float):
        self.scale = scale  # 1 = conditional prediction only; larger = follow the condition harder

    def prepare_inputs(self, x, sigma, cond: dict, uc: dict):
        """The denoiser's inputs doubled: [unconditional; conditional] (see `double_batch`)."""
        return double_batch(x, sigma, cond, uc, GUIDED_KEYS)

    def __call__(self, denoised: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """uncond + scale * (cond - uncond), from the denoiser's doubled output."""
        uncond, cond = denoised.chunk(2)
        return uncond + self.scale * (cond - uncond)


def triangle_wave(values: torch.Tensor, period: float = 1.0) -> torch.Tensor:
    """0 at multiples of `period`, rising linearly to 1 half-way between them."""
    return 2 * (values / period - torch.floor(values / period + 0.5)).abs()


class LinearPredictionGuider:
    """Per-frame guidance for video: the scale ramps from min_scale (first frame) to max_scale (last).

    SVD uses it because the first frame is generated strongly conditioned on the input image (its concat latents)
    and needs little guidance, while later frames drift further from it.
    Subclasses only change `self.frame_scales`.
    """

    def __init__(self, max_scale: float, num_frames: int, min_scale: float = 1.0, additional_cond_keys=None):
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}.")
        self.min_scale = min_scale
        self.max_scale = max_scale
        self.num_frames = num_frames
        if isinstance(additional_cond_keys, str):
            additional_cond_keys = [additional_cond_keys]
        # SV4D also guides with its reference views / motion frames
        self.additional_cond_keys = list(additional_cond_keys or [])
        self.frame_scales = torch.linspace(min_scale, max_scale, num_frames)  # t

    @classmethod
    def for_views(cls, num_views: int, **options):
        """This guider for frames ordered (time, view) with `num_views` views per time (SV4D's passes): the
        multi-view pipelines build theirs this way whatever its class. The frame-by-frame ramps ignore the views;
        SpatiotemporalPredictionGuider's scale depends on them."""
        return cls(**options)

    def prepare_inputs(self, x, sigma, cond: dict, uc: dict):
        """The denoiser's inputs doubled, additional_cond_keys guided too (see `double_batch`)."""
        return double_batch(x, sigma, cond, uc, GUIDED_KEYS + tuple(self.additional_cond_keys))

    def __call__(self, denoised: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """uncond + scale_t * (cond - uncond) with frame t's own scale, over `(b t)` frames."""
        uncond, cond = denoised.chunk(2)
        if uncond.shape[0] % self.num_frames:
            raise ValueError(
                f"{type(self).__name__} has num_frames={self.num_frames}, which does not divide the batch of "
                f"{uncond.shape[0]} frames; build the guider with the video's frame count."
            )
        uncond = rearrange(uncond, "(b t) ... -> b t ...", t=self.num_frames)
        cond = rearrange(cond, "(b t) ... -> b t ...", t=self.num_frames)
        scale = self.frame_scales.to(uncond.device, uncond.dtype)
        scale = scale.reshape(1, self.num_frames, *([1] * (uncond.ndim - 2)))  # 1 t 1 ...
        return rearrange(uncond + scale * (cond - uncond), "b t ... -> (b t) ...")


class TrianglePredictionGuider(LinearPredictionGuider):
    """Scale follows a triangle wave over the frames (SV3D: an orbit is low near the input view).

    With several periods, the waves are fused by "max", "mean" or "multiply".
    """

    def __init__(
        self,
        max_scale: float,
        num_frames: int,
        min_scale: float = 1.0,
        period=1.0,
        period_fusing: str = "max",
        additional_cond_keys=None,
    ):
        super().__init__(max_scale, num_frames, min_scale, additional_cond_keys)
        periods = [period] if isinstance(period, (int, float)) else list(period)
        positions = torch.linspace(0, 1, num_frames)
        waves = torch.stack([triangle_wave(positions, p) for p in periods])  # periods t
        fusers = {
            "max": lambda w: w.max(dim=0).values,
            "mean": lambda w: w.mean(dim=0),
            "multiply": lambda w: w.prod(dim=0),
        }
        if period_fusing not in fusers:
            raise ValueError(f"period_fusing must be one of {sorted(fusers)}, got {period_fusing!r}.")
        self.frame_scales = fusers[period_fusing](waves) * (max_scale - min_scale) + min_scale


class TrapezoidPredictionGuider(LinearPredictionGuider):
    """Scale rises over the first `edge_perc` of the frames and falls over the last ones.

    Quirk kept from the reference: the plateau in the middle is 1.0, not max_scale.
    """

    def __init__(
        self,
        max_scale: float,
        num_frames: int,
        min_scale: float = 1.0,
        edge_perc: float = 0.1,
        additional_cond_keys=None,
    ):
        super().__init__(max_scale, num_frames, min_scale, additional_cond_keys)
        edge = int(num_frames * edge_perc)
        rise = torch.linspace(min_scale, max_scale, edge)
        plateau = torch.ones(num_frames - 2 * edge)
        self.frame_scales = torch.cat([rise, plateau, torch.flip(rise, (0,))])


class SpatiotemporalPredictionGuider(LinearPredictionGuider):
    """SV4D 2.0: frames are ordered (time, view); the scale ramps over time plus a triangle over views.

    `num_frames` counts all time x view frames of one sample.
    """

    def __init__(
        self,
        max_scale: float,
        num_frames: int,
        num_views: int = 1,
        min_scale: float = 1.0,
        additional_cond_keys=None,
    ):
        super().__init__(max_scale, num_frames, min_scale, additional_cond_keys)
        if num_views < 1 or num_frames % num_views:
            raise ValueError(
                f"num_frames={num_frames} must be a multiple of num_views={num_views} (frames are time x views)."
            )
        num_times = num_frames // num_views
        over_time = torch.linspace(0, 1, num_times)[:, None] * 0.5  # t 1
        over_views = triangle_wave(torch.linspace(0, 1, num_views))[None, :] * 0.5  # 1 v
        unit_scale = (torch.zeros(num_times, num_views) + over_time + over_views).flatten()  # (t v)
        self.frame_scales = unit_scale * (max_scale - min_scale) + min_scale

    @classmethod
    def for_views(cls, num_views: int, **options):
        """The guider for frames ordered (time, view) with `num_views` views per time."""
        return cls(num_views=num_views, **options)
