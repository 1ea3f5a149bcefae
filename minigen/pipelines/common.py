"""What every pipeline shares: image checks and conversion, sampler choice, seeds and model placement.

Images enter as uint8 `[H, W, 3]` arrays (or file paths) and leave as uint8 `[T, H, W, 3]` frames;
inside, pixels are float `[-1, 1]` tensors `(b t) 3 H W` as the reference's models expect.
"""

import contextlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import diffusion
from ..io import read_image

SAMPLERS = sorted(diffusion.CATALOGUE["sampler"])


def image_to_tensor(image, multiple_of: int = 64, device="cpu") -> torch.Tensor:
    """A uint8 image `[H, W, 3]` (or a path) as a `1 3 H W` float tensor in [-1, 1].

    H and W must be multiples of `multiple_of` (the VAE divides by 8, the UNet by 8 more); the error
    names the nearest sizes that would work. Nothing is resized silently.
    """
    if isinstance(image, (str, Path)):
        image = read_image(image)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"Expected a uint8 RGB image [H, W, 3], got {image.dtype} {list(image.shape)}; "
                         "read files with minigen.io.read_image.")
    check_size(*image.shape[:2], multiple_of, "Image size", "resize or crop it to")
    pixels = torch.from_numpy(image).to(device=device, dtype=torch.float32) / 127.5 - 1.0
    return pixels.permute(2, 0, 1)[None]  # 1 3 H W


def check_size(height: int, width: int, multiple_of: int = 64, what: str = "Size",
               fix: str = "use") -> None:
    """Height and width must be whole multiples of `multiple_of`; the error names the nearest sizes that are."""
    if any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 for n in (height, width)):
        raise ValueError(f"{what} must be positive whole numbers of pixels, got {height!r}x{width!r}.")
    if height % multiple_of or width % multiple_of:
        def near(n):
            return sorted({max(multiple_of, n // multiple_of * multiple_of), -(-n // multiple_of) * multiple_of})
        raise ValueError(f"{what} {height}x{width} is not a multiple of {multiple_of}; {fix} one of heights "
                         f"{near(height)} and widths {near(width)}.")


def frames_to_uint8(images: torch.Tensor) -> np.ndarray:
    """Decoded `t 3 H W` images in [-1, 1] as uint8 frames `[t, H, W, 3]`, exactly as the reference scripts save
    them: clamp((x + 1) / 2, 0, 1) * 255, truncated (not rounded) to integers."""
    unit = ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)  # t 3 H W in [0, 1]
    return (unit * 255).permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)


def make_sampler(name: str, discretization, num_steps: int, guider, progress: bool = True, **options):
    """A minigen sampler by name ("EulerEDMSampler", "DPMPP2MSampler", ...): the pipelines' `sampler=` option."""
    if name not in SAMPLERS:
        raise ValueError(f"Unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}.")
    return diffusion.by_name("sampler", name)(discretization, num_steps=num_steps, guider=guider,
                                              progress=progress, **options)


def generator_for(seed: int | None, device) -> torch.Generator:
    """A torch.Generator on `device`, seeded (random seed when None): every draw of a pipeline goes through it."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


class Placement:
    """Where the engine's modules live. `offload="model"` keeps each module on the CPU except while it runs,
    so only the one in use (usually the UNet) occupies the accelerator."""

    def __init__(self, device="cpu", offload: str | None = None):
        if offload not in (None, "model"):
            raise ValueError(f"offload must be None or 'model', got {offload!r}.")
        self.device = torch.device(device)
        self.offload = offload

    def prepare(self, engine: nn.Module) -> nn.Module:
        return engine.to("cpu" if self.offload else self.device)

    @contextlib.contextmanager
    def use(self, module: nn.Module):
        """Run `module` on the device; with offload, move it back to the CPU afterwards."""
        if self.offload:
            module.to(self.device)
        try:
            yield module
        finally:
            if self.offload:
                module.to("cpu")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
