"""Sinusoidal embeddings of scalars (noise levels, fps, camera angles...).

Taught in notebook 04; corresponds to `timestep_embedding` in the reference's
`sgm/modules/diffusionmodules/util.py`.
"""

import math

import torch
from einops import repeat


def timestep_embedding(
    timesteps: torch.Tensor, dim: int, max_period: float = 10000, repeat_only: bool = False
) -> torch.Tensor:
    """Embed a batch of scalars `timesteps` (shape `b`) as `b dim` features.

    Half of the features are cosines and half sines of `timesteps * frequency`, with frequencies
    spaced geometrically from 1 down to 1/max_period ("Attention is all you need", section 3.5).
    An odd `dim` gets one trailing zero. With `repeat_only` the scalar is simply copied `dim` times.
    """
    if dim < 1:
        raise ValueError(f"timestep_embedding needs dim >= 1, got {dim}.")
    if repeat_only:
        return repeat(timesteps, "b -> b d", d=dim)
    half = dim // 2
    # -ln(max_period) * i first, then / half: the reference's order, so float32 rounds the same way (bit-equal on
    # the CPU); dividing i by half first differs by up to 1.5e-5 once the angles reach ~1000
    indices = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    frequencies = torch.exp(-math.log(max_period) * indices / half)  # half
    angles = timesteps[:, None].float() * frequencies[None]  # b half
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding
