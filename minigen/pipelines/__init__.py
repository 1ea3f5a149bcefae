"""End-to-end pipelines: user inputs (a prompt, an image, a video, cameras) to frames.

Each family has one module with the same shape of API: `Pipeline.from_checkpoint(path, ...)`,
`Pipeline.from_preset(name, weights=None)` and a call that returns uint8 frames.
"""

from .engine import DiffusionEngine, NetworkWrapper

__all__ = ["DiffusionEngine", "NetworkWrapper"]
