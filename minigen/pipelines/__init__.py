"""End-to-end pipelines: user inputs (a prompt, an image, a video, cameras) to frames.

Each family has one module with the same shape of API: `Pipeline.from_checkpoint(path, ...)`,
`Pipeline.from_preset(name, weights="default")` and a call that returns uint8 frames.
"""

from .engine import DiffusionEngine, NetworkWrapper
from .sdxl import TextToImagePipeline, TurboPipeline
from .sv3d import SV3DPipeline
from .sv4d import SV4D2Pipeline, SV4DPipeline
from .svd import SVDPipeline

__all__ = ["DiffusionEngine", "NetworkWrapper", "TextToImagePipeline", "TurboPipeline", "SVDPipeline",
           "SV3DPipeline", "SV4DPipeline", "SV4D2Pipeline"]
