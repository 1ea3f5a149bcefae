"""Scalar conditions as sinusoidal features: fps, motion bucket, noise level, image sizes, aesthetic score, angles.

Each number of a row is embedded on its own with the timestep embedding of `outdim` features and
the embeddings are laid side by side, so SDXL's `original_size_as_tuple` (2 numbers) becomes
2 x 256 = 512 features. Taught in notebook 06. Reference: `ConcatTimestepEmbedderND` in
sgm/modules/encoders/modules.py.
"""

import torch
from einops import rearrange
from torch import nn

from minigen.embeddings import timestep_embedding


class ConcatTimestepEmbedderND(nn.Module):
    """`b` or `b d` numbers -> `b (d outdim)` features. Holds no weights."""

    def __init__(self, outdim: int):
        super().__init__()
        self.outdim = outdim  # features per number

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x)
        if x.ndim == 1:
            x = x[:, None]  # b -> b 1
        if x.ndim != 2:
            raise ValueError(f"ConcatTimestepEmbedderND embeds a batch of numbers shaped (b,) or (b, d), "
                             f"got shape {tuple(x.shape)}.")
        b = x.shape[0]
        emb = timestep_embedding(rearrange(x, "b d -> (b d)"), self.outdim)  # (b d) outdim
        return rearrange(emb, "(b d) e -> b (d e)", b=b)
