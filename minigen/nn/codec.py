"""The first stage's plumbing: scale factors, input checks, frame chunks and CPU offload.

The part of the VAE that is about memory rather than maths: how many frames go through the
codec at once (the reference engine's `en_and_decode_n_samples_a_time`, the sampling scripts'
`encoding_t` / `decoding_t`) and where its weights live between uses. Used by
`minigen.nn.autoencoder.AutoencoderKL`; taught in notebook 05_latent_space. Reference:
sgm/models/diffusion.py (`encode_first_stage`, `decode_first_stage`).
"""

from contextlib import contextmanager

import torch
from torch import nn

# Latents are multiplied by this after encoding (and divided before decoding) so that they have
# roughly unit variance, which the diffusion schedules assume. Measured once per VAE by its authors.
SCALE_FACTORS = {
    "sd": 0.18215,  # SD 1.x / 2.x VAE, reused by SVD, SV3D, SV4D and SV4D 2.0
    "sdxl": 0.13025,  # SDXL's retrained VAE (same architecture, different weights)
}


def check_chunk_size(chunk_size: int | None) -> None:
    """A chunk size is None (all frames at once) or a whole number of frames, at least 1."""
    if chunk_size is None:
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a whole number >= 1 (None: all frames), got {chunk_size!r}.")


def check_frames(x: torch.Tensor, channels: int, what: str, multiple_of: int = 1) -> None:
    """x must be `(b t) c h w` with `channels` channels and sides divisible by `multiple_of`."""
    if x.ndim != 4:
        raise ValueError(
            f"Expected {what} shaped (frames, {channels}, height, width), got shape {tuple(x.shape)}; "
            "flatten videos first, e.g. einops.rearrange(x, 'b t c h w -> (b t) c h w')."
        )
    if x.shape[1] != channels:
        raise ValueError(f"Expected {what} with {channels} channels, got {x.shape[1]} in {tuple(x.shape)}.")
    height, width = x.shape[-2:]
    if height % multiple_of or width % multiple_of:
        down = f"{height // multiple_of * multiple_of}x{width // multiple_of * multiple_of}"
        up = f"{-(-height // multiple_of) * multiple_of}x{-(-width // multiple_of) * multiple_of}"
        raise ValueError(
            f"{what.capitalize()} of size {height}x{width} cannot be encoded: height and width must be "
            f"divisible by {multiple_of} (the encoder halves them {multiple_of.bit_length() - 1} times). "
            f"Crop or resize to {down} or {up}."
        )


def frame_chunks(total: int, chunk_size: int | None, num_frames: int | None = None) -> list[slice]:
    """Slices of at most `chunk_size` consecutive frames of a `(b t)` batch, video by video.

    The batch holds `total // num_frames` videos of `num_frames` frames (default: one video).
    Each video is cut into chunks from its first frame on, the last chunk being shorter, exactly as
    the reference engine cuts its batch; a chunk never straddles two videos.
    """
    check_chunk_size(chunk_size)
    num_frames = total if num_frames is None else num_frames
    if num_frames < 1 or total % num_frames:
        raise ValueError(
            f"num_frames={num_frames} does not divide the batch of {total} frames: the batch must hold "
            f"whole videos, (b t) frames with t = num_frames."
        )
    step = num_frames if chunk_size is None else min(chunk_size, num_frames)
    return [
        slice(start, min(start + step, video + num_frames))
        for video in range(0, total, num_frames)
        for start in range(video, video + num_frames, step)
    ]


@contextmanager
def placed_on(module: nn.Module, device: torch.device, offload: bool):
    """Run the body with `module` on `device`; with `offload`, move it back to the CPU afterwards.

    This is what lets a pipeline keep only the UNet on the GPU: the codec visits the GPU for
    the few calls that need it and frees that memory again. The one place that does it: the VAE's
    `offload` and the pipelines' `Placement.use` (offload="model") both come here.
    """
    if not offload:
        yield
        return
    module.to(device)
    try:
        yield
    finally:
        module.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()
