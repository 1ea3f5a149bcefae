"""Stable Video 3D: one object image to a 21-view orbit round it (sv3d_u, sv3d_p, tiny_sv3d).

    pipe = SV3DPipeline.from_checkpoint("checkpoints/sv3d_p.safetensors", device="cuda", dtype=torch.float16)
    views = pipe("chair.png", elevations_deg=10.0)  # [21, 576, 576, 3]; the chair cut out and framed first

SV3D_u orbits at the input's elevation; SV3D_p takes one camera per frame (elevation and azimuth in degrees,
converted with minigen.camera: polar = 90 - elevation, azimuths relative to the last frame, the input view).
The orbit ends on the input view, so its last frame is replaced by the input image.
Used by the second half of the course (the video notebooks).
Reference: scripts/sampling/simple_video_sample.py (the sv3d branches) and scripts/sampling/configs/sv3d_*.yaml.
"""

import warnings
from pathlib import Path

import numpy as np
import torch

from ..camera import Trajectory, orbit_azimuths_deg, validate_cameras
from ..diffusion import TrianglePredictionGuider
from ..io import read_image
from ..preprocess import prepare_object_image
from .common import check_count, check_number, input_keys
from .video_common import ImageToVideoPipeline, VideoDefaults

DEFAULT_ELEVATION_DEG = 10.0  # the script's elevations_deg


def sv3d_defaults(num_frames: int = 21, num_steps: int = 50, image_size=(576, 576),
                  preprocess: bool = True) -> VideoDefaults:
    """The script's SV3D settings: 21 frames, 50 steps, cond_aug 1e-5, the object cut out and framed first; the
    config's triangle guider, max 2.5."""
    return VideoDefaults(num_frames=num_frames, num_steps=num_steps, guider=TrianglePredictionGuider,
                         cfg=2.5, min_cfg=1.0, cond_aug=1e-5, image_size=image_size, preprocess=preprocess)


class SV3DPipeline(ImageToVideoPipeline):
    """Object image -> orbit frames; camera-conditioned when the model reads `polars_rad` / `azimuths_rad`.

    The call returns uint8 frames. Code that needs the frames as tensors (SV4D's reference views) uses
    `generate(image_tensor, pipe.conditions(num_frames, elevations_deg, azimuths_deg), num_frames,
    pipe.make_sampler(num_steps, num_frames=num_frames), generator=...)`, whose `decoded` is `t 3 H W` in [-1, 1].
    """

    DEFAULTS = {
        "sv3d_u": sv3d_defaults(),
        "sv3d_p": sv3d_defaults(),
        # recipe tiny_sv3d: 8 views; trained on the renders as they come, so no framing by default
        "tiny_sv3d": sv3d_defaults(num_frames=8, num_steps=16, image_size=(64, 64), preprocess=False),
    }
    replaces_last_frame = True

    @property
    def takes_cameras(self) -> bool:
        """Whether the model is SV3D_p (its conditioner reads one camera per frame) rather than SV3D_u."""
        return "polars_rad" in input_keys(self.engine.conditioner)

    def cameras(self, num_frames: int, elevations_deg=None, azimuths_deg=None) -> dict:
        """SV3D_p's per-frame `polars_rad` and `azimuths_rad` (relative to the last frame), as the script converts
        them; default: a full turn at 10 degrees. Every problem is reported at once; nothing is clamped."""
        if not self.takes_cameras:
            if elevations_deg is not None or azimuths_deg is not None:
                raise ValueError("This model (SV3D_u) takes no cameras: it orbits at the input view's elevation. "
                                 "Use sv3d_p for elevations_deg / azimuths_deg.")
            return {}
        elevations_deg = DEFAULT_ELEVATION_DEG if elevations_deg is None else elevations_deg
        azimuths_deg = orbit_azimuths_deg(num_frames) if azimuths_deg is None else azimuths_deg
        validate_cameras(elevations_deg, azimuths_deg, num_frames, require_sorted=True)
        trajectory = Trajectory(elevations_deg, azimuths_deg)
        return {"polars_rad": trajectory.polars_rad.float(), "azimuths_rad": trajectory.relative_azimuths_rad.float()}

    def conditions(self, num_frames: int, elevations_deg=None, azimuths_deg=None,
                   cond_aug: float | None = None) -> dict:
        """cond_aug (default 1e-5) and, for SV3D_p, the cameras."""
        check_count("num_frames", num_frames, allow_none=False)
        cond_aug = self.defaults.cond_aug if cond_aug is None else cond_aug
        check_number("cond_aug", cond_aug)
        return {"cond_aug": cond_aug, **self.cameras(num_frames, elevations_deg, azimuths_deg)}

    def object_image(self, image, preprocess: bool | None, framing: dict) -> torch.Tensor:
        """The image the model sees, `1 3 H W`: with `preprocess` (default: the model's) the object is cut out,
        centred and put on white at the trained size first (minigen.preprocess.prepare_object_image, the
        script's steps; `framing` holds its options)."""
        if self.defaults.preprocess if preprocess is None else preprocess:
            if isinstance(image, (str, Path)):
                image = read_image(image, keep_alpha=True)  # an RGBA file's alpha is the cut-out
            size = self.defaults.image_size or np.asarray(image).shape[:2]
            image = prepare_object_image(image, size=size, **framing)
        return self.image_tensor(image)

    def __call__(
        self,
        image,  # uint8 [H, W, 3] or [H, W, 4] (its alpha is the cut-out) or a path; 576 x 576 as trained
        *,
        num_frames: int | None = None,  # default 21: 20 novel views, then the input view
        num_steps: int | None = None,  # default 50
        elevations_deg=None,  # SV3D_p: one number or one per frame, degrees above the horizon (default 10)
        azimuths_deg=None,  # SV3D_p: one per frame, degrees, increasing round the orbit (default: a full turn)
        cond_aug: float | None = None,  # default 1e-5
        preprocess: bool | None = None,  # cut out, centre, whiten the object first (default: the script's, on)
        image_frame_ratio: float | None = None,  # with preprocess: fraction of the frame the object fills
        background: str = "auto",  # with preprocess: "auto" (the script's: alpha, else rembg), "alpha",
        # "rembg", or "uniform" (minigen's model-free cut-out for renders on a plain background)
        alpha_matting: bool = True,  # with rembg: soften the cut-out's edges, as the script does
        rembg_model_path=None,  # with rembg: the segmentation model file (no download)
        seed: int | None = 23,  # the script's; None draws a random seed
        cfg: float | None = None,  # the triangle guider's scale half-way round the orbit (default 2.5)
        min_cfg: float | None = None,  # its scale at the input view (default 1.0)
        sampler: str | type | None = None,  # a minigen sampler or its name (default: the script's Euler)
        sampler_options: dict | None = None,  # e.g. {"s_churn": 1.0}
        encoding_t: int | None = None,  # frames per call of the conditioner's VAE encoder
        decoding_t: int | None = None,  # frames per decoder call (default: the preset's, 14)
        callback=None,  # callback(x, denoised, sigma, step) after every sampler step
        progress: bool = True,
    ) -> np.ndarray:
        """The orbit as uint8 frames `[num_frames, H, W, 3]`; the last one is the input view."""
        num_frames = self.defaults.num_frames if num_frames is None else num_frames
        values = self.conditions(num_frames, elevations_deg, azimuths_deg, cond_aug)
        if num_frames != self.defaults.num_frames:
            warnings.warn(f"num_frames={num_frames}: the model was trained on {self.defaults.num_frames}-frame "
                          "orbits, so results may be worse.", stacklevel=2)
        image = self.object_image(image, preprocess, {"image_frame_ratio": image_frame_ratio, "background": background,
                                                      "alpha_matting": alpha_matting, "model_path": rembg_model_path})
        return self.sample_frames(image, values, num_frames, num_steps=num_steps, decoding_t=decoding_t,
                                  encoding_t=encoding_t, seed=seed, cfg=cfg, min_cfg=min_cfg, sampler=sampler,
                                  sampler_options=sampler_options, callback=callback, progress=progress)
