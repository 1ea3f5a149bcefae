"""Stable Video 3D: one object image to a 21-view orbit round it (sv3d_u, sv3d_p, tiny_sv3d).

    pipe = SV3DPipeline.from_checkpoint("checkpoints/sv3d_p.safetensors", device="cuda", dtype=torch.float16)
    views = pipe(read_image("chair.png", keep_alpha=True), preprocess=True, elevations_deg=10.0)  # [21, 576, 576, 3]

SV3D_u orbits at the input's elevation; SV3D_p takes one camera per frame (elevation and azimuth in degrees,
converted with minigen.camera: polar = 90 - elevation, azimuths relative to the last frame, the input view).
The orbit ends on the input view, so its last frame is replaced by the input image.
Used by the second half of the course (the video notebooks).
Reference: scripts/sampling/simple_video_sample.py (the sv3d branches) and scripts/sampling/configs/sv3d_*.yaml.
"""

import warnings

import numpy as np
import torch

from ..camera import Trajectory, orbit_azimuths_deg, validate_cameras
from ..preprocess import prepare_object_image
from .common import check_count, check_number, input_keys
from .video_common import ImageToVideoPipeline, VideoDefaults

DEFAULT_ELEVATION_DEG = 10.0  # the script's elevations_deg


def sv3d_defaults(num_frames: int = 21, num_steps: int = 50, image_size=(576, 576)) -> VideoDefaults:
    """The script's SV3D settings: 21 frames, 50 steps, cond_aug 1e-5; the config's triangle guider, max 2.5."""
    return VideoDefaults(num_frames=num_frames, num_steps=num_steps, guider="TrianglePredictionGuider",
                         cfg=2.5, min_cfg=1.0, cond_aug=1e-5, image_size=image_size)


class SV3DPipeline(ImageToVideoPipeline):
    """Object image -> orbit frames; camera-conditioned when the model reads `polars_rad` / `azimuths_rad`.

    The call returns uint8 frames. Code that needs the frames as tensors (SV4D's reference views) uses
    `generate(image_tensor, pipe.conditions(num_frames, elevations_deg, azimuths_deg), num_frames,
    pipe.make_sampler(num_steps, num_frames=num_frames), generator=...)`, whose `decoded` is `t 3 H W` in [-1, 1].
    """

    DEFAULTS = {
        "sv3d_u": sv3d_defaults(),
        "sv3d_p": sv3d_defaults(),
        "tiny_sv3d": sv3d_defaults(num_frames=8, num_steps=16, image_size=(64, 64)),  # recipe tiny_sv3d: 8 views
    }
    replaces_last_frame = True

    @property
    def takes_cameras(self) -> bool:
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

    def object_image(self, image, preprocess: bool, image_frame_ratio: float | None, background: str,
                     rembg_model_path) -> torch.Tensor:
        """With `preprocess`, cut the object out, centre it and put it on white at the trained size first."""
        if preprocess:
            size = self.defaults.image_size or np.asarray(image).shape[:2]
            image = prepare_object_image(image, size=size, image_frame_ratio=image_frame_ratio,
                                         background=background, model_path=rembg_model_path)
        return self.image_tensor(image)

    def __call__(
        self,
        image,  # uint8 [H, W, 3] (or [H, W, 4] with preprocess) or a path; 576 x 576 as trained
        *,
        num_frames: int | None = None,  # default 21: 20 novel views, then the input view
        num_steps: int | None = None,  # default 50
        elevations_deg=None,  # SV3D_p: one number or one per frame, degrees above the horizon (default 10)
        azimuths_deg=None,  # SV3D_p: one per frame, degrees, increasing round the orbit (default: a full turn)
        cond_aug: float | None = None,  # default 1e-5
        preprocess: bool = False,  # cut out, centre and whiten the object first (minigen.preprocess)
        image_frame_ratio: float | None = None,  # with preprocess: fraction of the frame the object fills
        background: str = "auto",  # with preprocess: "auto", "alpha", "uniform" or "rembg"
        rembg_model_path=None,  # with background "rembg": the segmentation model file
        seed: int | None = 23,  # the script's; None draws a random seed
        cfg: float | None = None,  # the triangle guider's scale half-way round the orbit (default 2.5)
        min_cfg: float | None = None,  # its scale at the input view (default 1.0)
        sampler: str | None = None,  # a minigen sampler name (default: the script's EulerEDMSampler)
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
        image = self.object_image(image, preprocess, image_frame_ratio, background, rembg_model_path)
        return self.sample_frames(image, values, num_frames, num_steps=num_steps, decoding_t=decoding_t,
                                  encoding_t=encoding_t, seed=seed, cfg=cfg, min_cfg=min_cfg, sampler=sampler,
                                  sampler_options=sampler_options, callback=callback, progress=progress)
