"""What every pipeline shares: image checks and conversion, sampler choice, seeds, model placement,
identifying a checkpoint's preset, dtypes (VAEs stay float32) and argument checks.

Images enter as uint8 `[H, W, 3]` arrays (or file paths) and leave as uint8 `[T, H, W, 3]` frames;
inside, pixels are float `[-1, 1]` tensors `(b t) 3 H W` as the reference's models expect.
"""

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import diffusion
from ..checkpoint import inspect_checkpoint, read_header
from ..conditioning import GeneralConditioner
from ..diffusion.samplers import BaseSampler
from ..io import check_uint8, read_image
from ..nn.autoencoder import AutoencoderKL
from ..nn.codec import placed_on
from ..presets import official_preset_names, state_dict_table
from .engine import DiffusionEngine

SAMPLERS = sorted(diffusion.CATALOGUE["sampler"])


def image_to_tensor(image, multiple_of: int = 64, device="cpu") -> torch.Tensor:
    """A uint8 image `[H, W, 3]` (or a path) as a `1 3 H W` float tensor in [-1, 1].

    H and W must be multiples of `multiple_of` (the VAE divides by 8, the UNet by 8 more); the error
    names the nearest sizes that would work. Nothing is resized silently.
    """
    if isinstance(image, (str, Path)):
        image = read_image(image)
    image = check_uint8(image, 3, "An RGB image", channels=(3,), fix="read files with minigen.io.read_image")
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


def make_sampler(sampler: "str | type[BaseSampler]", discretization, num_steps: int, guider, progress: bool = True,
                 **options) -> BaseSampler:
    """The pipelines' `sampler=` option built: a minigen sampler class (diffusion.DPMPP2MSampler) or its name
    ("DPMPP2MSampler", as the command line gives it), over `discretization`, with `guider`."""
    if isinstance(sampler, str) and sampler in SAMPLERS:
        sampler = diffusion.by_name("sampler", sampler)
    if not (isinstance(sampler, type) and issubclass(sampler, BaseSampler)):
        raise ValueError(f"Unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)} (a name or the class "
                         "from minigen.diffusion).")
    return sampler(discretization, num_steps=num_steps, guider=guider, progress=progress, **options)


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
        """Put the engine where it waits: on the CPU with offload, on the device otherwise."""
        return engine.to("cpu" if self.offload else self.device)

    def use(self, module: nn.Module):
        """A context in which `module` runs on the device; with offload, it goes back to the CPU afterwards."""
        return placed_on(module, self.device, offload=self.offload is not None)


# ---------------------------------------------------------------- shared by every family


def input_keys(conditioner: GeneralConditioner) -> list[str]:
    """The batch entries the conditioner's embedders read, in config order."""
    return list(dict.fromkeys(key for entry in conditioner.entries for key in entry.keys))


def identify_preset(path, candidates) -> str:
    """Which of `candidates` (preset names) the checkpoint at `path` holds, from its tensor names and shapes.

    Official files are compared with the bundled manifests, course checkpoints with the tiny presets.
    Files of one architecture (svd / svd_xt / svd_xt_1_1; svd_image_decoder / svd_xt_image_decoder) are told apart
    by the preset name in the file name (svd_xt_1_1.safetensors); SD 2.1's official names (v2-1_512-ema-pruned,
    v2-1_768-ema-pruned) hold neither sd_2_1 nor sd_2_1_768, so those need preset=.
    """
    info = inspect_checkpoint(path)
    matches = [name for name in info.matches if name in candidates]
    if not matches:
        shapes = {key: list(shape) for key, (shape, _) in read_header(path).items()}
        course_presets = [name for name in candidates if name not in official_preset_names()]
        matches = [name for name in course_presets
                   if {key: entry["shape"] for key, entry in state_dict_table(name).items()} == shapes]
    if len(matches) > 1:
        named = [name for name in matches if name in Path(path).stem]
        matches = [max(named, key=len)] if named else matches
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"{path} fits {', '.join(matches)} (same architecture, different defaults); "
                         "pass preset= to say which (minigen sample: --preset beside --checkpoint).")
    found = f"it holds {', '.join(info.matches)}" if info.matches else f"closest official model: {info.closest}"
    raise ValueError(f"{path} is none of {', '.join(candidates)} ({found}); pass preset= or use the pipeline "
                     "of that model.")


def cast_engine(engine: DiffusionEngine, dtype: torch.dtype) -> DiffusionEngine:
    """Network and conditioner in `dtype`; every VAE (the first stage and the conditioner's encoder) stays
    float32, as the reference's disable_first_stage_autocast / disable_encoder_autocast keep them."""
    engine.model.to(dtype)
    if engine.conditioner is not None:
        engine.conditioner.to(dtype)
    for module in engine.modules():
        if isinstance(module, AutoencoderKL):
            module.float()
    return engine


# ---------------------------------------------------------------- checks


def check_count(name: str, value, allow_none: bool = True) -> None:
    """`value` must be a whole number >= 1 (or None, if allowed); the error names the option."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1{' or None' if allow_none else ''}, got {value!r}.")


def check_number(name: str, value, minimum: float = 0.0) -> None:
    """`value` must be a finite number >= `minimum`; the error names the option."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value) \
            or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum:g}, got {value!r}.")


class Pipeline:
    """What every pipeline holds: an engine, its model's defaults and where its modules live; and how to load one.

    Subclasses set DEFAULTS (preset name -> that model's sampling defaults) and give `__call__`.
    """

    DEFAULTS: dict = {}

    def __init__(self, engine: DiffusionEngine, defaults, device="cpu", offload: str | None = None):
        self.engine = engine
        self.defaults = defaults
        self.placement = Placement(device, offload)
        self.placement.prepare(engine)

    @classmethod
    def load_engine(cls, name: str, weights, device, dtype: torch.dtype, offload: str | None) -> DiffusionEngine:
        """The preset's engine (`weights`: see `DiffusionEngine.from_preset`), network and encoders in `dtype`."""
        if name not in cls.DEFAULTS:
            raise ValueError(f"{cls.__name__} runs {', '.join(cls.DEFAULTS)}; got {name!r}.")
        engine = DiffusionEngine.from_preset(name, device="cpu" if offload else device, weights=weights)
        return cast_engine(engine, dtype)

    @classmethod
    def from_preset(cls, name: str, weights="default", device="cpu", dtype: torch.dtype = torch.float32,
                    offload: str | None = None):
        """The preset's pipeline: `weights` is "default" (a course preset's committed trained weights, random for
        the others), "random" (from a fixed seed) or a safetensors file (see `DiffusionEngine.from_preset`)."""
        return cls(cls.load_engine(name, weights, device, dtype, offload), cls.DEFAULTS[name], device, offload)

    @classmethod
    def from_checkpoint(cls, path, preset: str | None = None, device="cpu", dtype: torch.dtype = torch.float32,
                        offload: str | None = None):
        """Load an official (or course) checkpoint strictly; `preset=None` identifies it from its tensors."""
        preset = preset or identify_preset(path, list(cls.DEFAULTS))
        return cls.from_preset(preset, weights=Path(path), device=device, dtype=dtype, offload=offload)

    def compile(self, **options) -> "Pipeline":
        """Compile the network in place with `torch.compile` (`options`: its keywords, e.g. `mode=`); returns self.

        Opt-in, because it pays only over many calls: on a 2-core CPU (docs/benchmarks.md, `compiled`) compiling
        tiny_svd's UNet takes about 17 s and then halves each call (39 -> 19 ms), so it pays after some 850 network
        calls, about 50 clips of 16 steps. SVD's official-width layers gain 15% in float32 (paid back after about
        100 calls) but lose in bfloat16, which alone runs them 2x faster than float32 (`dtype=torch.bfloat16`): on
        a CPU, bfloat16 without compiling is the better lever. A new frame count or image size compiles again.
        """
        self.engine.network.compile(**options)
        return self
