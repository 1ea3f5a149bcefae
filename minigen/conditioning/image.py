"""The image conditioners of SVD, SV3D and SV4D: an image -> one CLIP image embedding (cross-attention context).

`FrozenOpenCLIPImageEmbedder` resizes images in [-1, 1] to the tower's 224x224 as kornia does
(Gaussian blur before downscaling, then bicubic with align_corners=True), normalises them with
CLIP's mean / std and returns the visual tower's projected output, not unit-normalised.
`FrozenOpenCLIPImagePredictionEmbedder` groups the `n_cond_frames` embeddings of each sample and
repeats them `n_copies` times. Taught in notebook 06. Reference: sgm/modules/encoders/modules.py
(`FrozenOpenCLIPImageEmbedder`, `FrozenOpenCLIPImagePredictionEmbedder`).
"""

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import nn

from .openclip import one_tower_clip


def check_images(images: torch.Tensor, who: str) -> None:
    """Images must be `b 3 h w` floats in [-1, 1]; say what was expected and how to get there."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{who} expects images shaped (batch, 3, height, width) with values in [-1, 1], got "
                         f"shape {tuple(images.shape)}; flatten videos first: 'b t c h w -> (b t) c h w'.")
    if not images.is_floating_point():
        raise ValueError(f"{who} expects float images in [-1, 1], got dtype {images.dtype}; "
                         "convert uint8 pixels with images / 127.5 - 1.")
    if images.device.type != "meta" and images.numel() and (images.min() < -1 or images.max() > 1):
        raise ValueError(f"{who} expects images with values in [-1, 1], got [{images.min().item():.3g}, "
                         f"{images.max().item():.3g}]; map [0, 1] images with 2 * x - 1, [0, 255] ones with "
                         "x / 127.5 - 1.")


def gaussian_blur_1d(x: torch.Tensor, sigma: float, dim: int) -> torch.Tensor:
    """Blur `b c h w` along height (dim=-2) or width (dim=-1) with kornia's kernel: 4 sigma wide, odd, reflect."""
    size = max(int(4 * sigma), 3)
    size += 1 - size % 2  # odd, centred on the pixel
    offsets = torch.arange(size, device=x.device, dtype=x.dtype) - size // 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    if dim == -1:
        x = F.pad(x, (size // 2, size // 2, 0, 0), mode="reflect")
        weight = repeat(kernel, "k -> c 1 1 k", c=channels)
    else:
        x = F.pad(x, (0, 0, size // 2, size // 2), mode="reflect")
        weight = repeat(kernel, "k -> c 1 k 1", c=channels)
    return F.conv2d(x, weight, groups=channels)


def resize_antialiased(x: torch.Tensor, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """`b c h w` -> `b c size`, as `kornia.geometry.resize(..., "bicubic", align_corners=True, antialias)`.

    When shrinking, each axis is first blurred with sigma = (factor - 1) / 2 (at least 0.001), the
    scikit-image rule, so that the bicubic samples do not alias.
    """
    height, width = x.shape[-2:]
    if (height, width) == tuple(size):
        return x
    factors = (height / size[0], width / size[1])
    if antialias and max(factors) > 1:
        x = gaussian_blur_1d(x, max((factors[1] - 1) / 2, 0.001), dim=-1)
        x = gaussian_blur_1d(x, max((factors[0] - 1) / 2, 0.001), dim=-2)
    return F.interpolate(x, size=size, mode="bicubic", align_corners=True)


class FrozenOpenCLIPImageEmbedder(nn.Module):
    """Images `b 3 h w` in [-1, 1] -> CLIP image embeddings `b embed_dim` (1024 for ViT-H-14).

    `model` is open_clip's CLIP without its text transformer (the checkpoints keep the text tower's
    embeddings and projection, so the module does too). The reference can also drop out embeddings
    here (`ucg_rate`); minigen leaves dropout to the GeneralConditioner, where every embedder gets it.
    """

    def __init__(self, arch: str = "ViT-H-14", antialias: bool = True):
        super().__init__()
        self.model = one_tower_clip(arch, keep="visual")
        self.antialias = antialias  # blur before downscaling, as kornia's resize does

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images of any size -> the tower's input: 224x224, normalised with CLIP's mean / std."""
        size = self.model.visual.image_size  # (224, 224)
        x = resize_antialiased(images, size, self.antialias)
        x = (x + 1.0) / 2.0  # [0, 1]
        mean = torch.tensor(OPENAI_DATASET_MEAN, device=x.device, dtype=x.dtype)
        std = torch.tensor(OPENAI_DATASET_STD, device=x.device, dtype=x.dtype)
        return (x - mean[:, None, None]) / std[:, None, None]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """`b 3 h w` images in [-1, 1] -> `b embed_dim`, in the images' dtype (the tower runs in its own)."""
        check_images(images, type(self).__name__)
        pixels = self.preprocess(images).to(self.model.visual.conv1.weight.dtype)  # b 3 224 224
        embedding = self.model.visual(pixels)  # b embed_dim
        return embedding.to(images.dtype)


class FrozenOpenCLIPImagePredictionEmbedder(nn.Module):
    """Frames `(b t) 3 h w` -> `(b n_copies) t embed_dim`: the video models' cross-attention context.

    t = n_cond_frames images are embedded per sample (1 for SVD / SV3D, N_TIME for SV4D); the
    result is repeated n_copies times along the batch.
    """

    def __init__(self, open_clip_embedding: FrozenOpenCLIPImageEmbedder, n_cond_frames: int, n_copies: int):
        super().__init__()
        self.n_cond_frames = n_cond_frames
        self.n_copies = n_copies
        self.open_clip = open_clip_embedding

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim == 4 and frames.shape[0] % self.n_cond_frames:
            raise ValueError(f"{type(self).__name__} expects (b t) frames with t = n_cond_frames = "
                             f"{self.n_cond_frames}, got {frames.shape[0]} frames.")
        embeddings = self.open_clip(frames)  # (b t) d
        embeddings = rearrange(embeddings, "(b t) d -> b t d", t=self.n_cond_frames)
        return repeat(embeddings, "b t d -> (b s) t d", s=self.n_copies)
