"""Stable Video Diffusion: one image to a short video (svd, svd_xt, svd_xt_1_1, svd_image_decoder,
svd_xt_image_decoder, tiny_svd).

    pipe = SVDPipeline.from_checkpoint("checkpoints/svd_xt.safetensors", device="cuda", dtype=torch.float16)
    frames = pipe(read_image("rocket.png"))  # uint8 [25, 576, 1024, 3]

Besides the image, the model is conditioned on three numbers per frame: `fps_id` (frame rate - 1 of the
training clip), `motion_bucket_id` (how much it moves, 0-255) and `cond_aug` (the noise added to the
image the VAE encodes).
Used by the second half of the course (the video notebooks).
Reference: scripts/sampling/simple_video_sample.py and
scripts/sampling/configs/svd*.yaml.
"""

import warnings

import numpy as np

from ..diffusion import LinearPredictionGuider
from .common import check_count, check_number
from .video_common import ImageToVideoPipeline, VideoDefaults

TINY_IMAGE_SIZE = (64, 64)


class SVDPipeline(ImageToVideoPipeline):
    """Image -> `num_frames` frames; defaults per model from the sampling script and configs."""

    DEFAULTS = {
        "svd": VideoDefaults(num_frames=14, num_steps=25, guider=LinearPredictionGuider, cfg=2.5, min_cfg=1.0),
        "svd_xt": VideoDefaults(num_frames=25, num_steps=30, guider=LinearPredictionGuider, cfg=3.0,
                                min_cfg=1.5),
        "svd_xt_1_1": VideoDefaults(num_frames=25, num_steps=30, guider=LinearPredictionGuider, cfg=3.0,
                                    min_cfg=1.5),
        "svd_image_decoder": VideoDefaults(num_frames=14, num_steps=25, guider=LinearPredictionGuider,
                                           cfg=2.5, min_cfg=1.0),
        "svd_xt_image_decoder": VideoDefaults(num_frames=25, num_steps=30, guider=LinearPredictionGuider,
                                              cfg=3.0, min_cfg=1.5),
        # the trained course model (recipe tiny_i2v): 8-frame clips at 64x64
        "tiny_svd": VideoDefaults(num_frames=8, num_steps=16, guider=LinearPredictionGuider, cfg=2.5,
                                  min_cfg=1.0, image_size=TINY_IMAGE_SIZE),
    }

    def conditions(self, num_frames: int, fps_id: int = 6, motion_bucket_id: int = 127,
                   cond_aug: float = 0.02) -> dict:
        """SVD's per-frame numbers; unusual values are warned about, as the script does."""
        check_count("num_frames", num_frames, allow_none=False)
        check_number("fps_id", fps_id)
        check_number("motion_bucket_id", motion_bucket_id)
        check_number("cond_aug", cond_aug)
        if motion_bucket_id > 255:
            warnings.warn(f"motion_bucket_id={motion_bucket_id} is above 255, the largest bucket seen in training: "
                          "results may be worse.", stacklevel=3)
        if fps_id < 5 or fps_id > 30:
            warnings.warn(f"fps_id={fps_id} is outside [5, 30], the frame rates seen in training: results may "
                          "be worse.", stacklevel=3)
        return {"fps_id": fps_id, "motion_bucket_id": motion_bucket_id, "cond_aug": cond_aug}

    def __call__(
        self,
        image,  # uint8 [H, W, 3] or a path; H and W multiples of 64 (576 x 1024 as trained)
        *,
        num_frames: int | None = None,  # default: 14 (svd) / 25 (svd_xt)
        num_steps: int | None = None,  # default: 25 (svd) / 30 (svd_xt)
        fps_id: int = 6,
        motion_bucket_id: int = 127,
        cond_aug: float = 0.02,
        seed: int | None = 23,  # the script's; None draws a random seed
        cfg: float | None = None,  # guidance scale of the last frame (default: the config's)
        min_cfg: float | None = None,  # guidance scale of the first frame (default: the config's)
        sampler: str | type | None = None,  # a minigen sampler or its name (default: the script's Euler)
        sampler_options: dict | None = None,  # e.g. {"s_churn": 1.0}
        encoding_t: int | None = None,  # frames per call of the conditioner's VAE encoder
        decoding_t: int | None = None,  # frames per decoder call (default: the preset's, 14); less saves memory
        callback=None,  # callback(x, denoised, sigma, step) after every sampler step
        progress: bool = True,
    ) -> np.ndarray:
        """The video as uint8 frames `[num_frames, H, W, 3]`."""
        num_frames = self.defaults.num_frames if num_frames is None else num_frames
        values = self.conditions(num_frames, fps_id, motion_bucket_id, cond_aug)
        image = self.image_tensor(image)
        return self.sample_frames(image, values, num_frames, num_steps=num_steps, decoding_t=decoding_t,
                                  encoding_t=encoding_t, seed=seed, cfg=cfg, min_cfg=min_cfg, sampler=sampler,
                                  sampler_options=sampler_options, callback=callback, progress=progress)
