"""Conditioning: everything that turns prompts, images, frames and numbers into the UNet's conditioning inputs.

`GeneralConditioner` runs a list of embedders and routes their outputs to "vector", "crossattn" and
"concat"; the embedders are the text encoders (`text.py`), the CLIP image encoder (`image.py`), the
VAE-encoded conditioning frames (`video.py`) and the sinusoidal scalar embedder (`scalars.py`).
Taught in notebook 06. Reference: sgm/modules/encoders/modules.py.
"""

from .conditioner import EmbedderEntry, GeneralConditioner
from .image import FrozenOpenCLIPImageEmbedder, FrozenOpenCLIPImagePredictionEmbedder
from .openclip import register_open_clip_arch, tokenize
from .scalars import ConcatTimestepEmbedderND
from .text import FrozenCLIPEmbedder, FrozenOpenCLIPEmbedder, FrozenOpenCLIPEmbedder2, hf_keys_from_open_clip
from .video import VideoPredictionEmbedderWithEncoder

__all__ = [
    "ConcatTimestepEmbedderND", "EmbedderEntry", "FrozenCLIPEmbedder", "FrozenOpenCLIPEmbedder",
    "FrozenOpenCLIPEmbedder2", "FrozenOpenCLIPImageEmbedder", "FrozenOpenCLIPImagePredictionEmbedder",
    "GeneralConditioner", "VideoPredictionEmbedderWithEncoder", "hf_keys_from_open_clip", "register_open_clip_arch",
    "tokenize",
]
