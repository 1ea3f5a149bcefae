"""The diffusion engine: network, denoiser, conditioner and first stage of one model, with official keys.

`DiffusionEngine` holds the four parts under the official checkpoint prefixes (`model.diffusion_model.`,
`denoiser.`, `conditioner.`, `first_stage_model.`), so an official `.safetensors` file loads into it
with `strict=True`. Every pipeline in `minigen.pipelines` drives one. Corresponds to the reference's
`sgm/models/diffusion.py` (DiffusionEngine) and `sgm/modules/diffusionmodules/wrappers.py` (OpenAIWrapper).
"""

from pathlib import Path

import torch
from torch import nn

from ..checkpoint import LoadReport, load_checkpoint
from ..presets import TRAINED_WEIGHTS, get_preset, trained_weights_path

# conditioning entries handed to the network as keyword inputs besides context / y / concat (SV4D)
MULTIVIEW_KEYS = ("cond_view", "cond_motion")
RANDOM_WEIGHTS_SEED = 0  # random weights are drawn from this seed: the same preset always gets the same ones


class NetworkWrapper(nn.Module):
    """Adapts a UNet to the denoiser's call `network(x, c_noise, cond, **extra)`.

    `cond["concat"]` is stacked onto the noisy latent's channels (SVD's 4 + 4 = 8 input channels),
    `crossattn` becomes the UNet's `context` and `vector` its `y`. Floating inputs are cast to the
    network's dtype (fp16 / bf16 weights) and the output back to the sampler's dtype (float32).
    """

    def __init__(self, diffusion_model: nn.Module):
        super().__init__()
        self.diffusion_model = diffusion_model

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict, **extra) -> torch.Tensor:
        """The UNet on x (with cond's concat stacked on), c_noise and the rest of cond, in the network's dtype."""
        network_input = x
        if "concat" in cond:
            network_input = torch.cat([x, cond["concat"].to(x.dtype)], dim=1)  # (b t) (c + c_concat) h w
        inputs = {"timesteps": c_noise, "context": cond.get("crossattn"), "y": cond.get("vector")}
        inputs.update({key: cond[key] for key in MULTIVIEW_KEYS if key in cond})
        inputs.update(extra)
        dtype = next(self.diffusion_model.parameters()).dtype  # the weights' (fp16 / bf16 at full scale)
        inputs = {key: to_floating_dtype(value, dtype) for key, value in inputs.items()}
        return self.diffusion_model(to_floating_dtype(network_input, dtype), **inputs).to(x.dtype)


def to_floating_dtype(value, dtype: torch.dtype):
    """`value` in `dtype` if it is a floating tensor; anything else (integers, None, frame counts) as it is."""
    return value.to(dtype) if isinstance(value, torch.Tensor) and value.is_floating_point() else value


class DiffusionEngine(nn.Module):
    """The parts of one model; `state_dict()` has exactly the official checkpoint's keys."""

    def __init__(self, network: nn.Module, denoiser: nn.Module, conditioner: nn.Module | None = None,
                 first_stage_model: nn.Module | None = None):
        super().__init__()
        self.model = NetworkWrapper(network)
        self.denoiser = denoiser
        self.conditioner = conditioner
        self.first_stage_model = first_stage_model

    @property
    def network(self) -> nn.Module:
        """The UNet (the checkpoint's `model.diffusion_model`)."""
        return self.model.diffusion_model

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict, **extra) -> torch.Tensor:
        """D(x, sigma) with the model's preconditioning: the function samplers call."""
        return self.denoiser(self.model, x, sigma, cond, **extra)

    @classmethod
    def from_preset(cls, name: str, device="cpu", dtype: torch.dtype | None = None, meta: bool = False,
                    weights="default") -> "DiffusionEngine":
        """The preset's engine with the weights `weights` names:

        - "default": the course model's committed trained weights where the preset has some (`TRAINED_WEIGHTS`,
          files in data/), random weights otherwise (official presets, untrained course presets);
        - "random": random weights drawn from a fixed seed, so the same preset always gets the same weights;
        - a path: a safetensors file loaded strictly (an official checkpoint).

        `meta=True` builds it on the meta device: shapes only, no memory (for inspection).
        """
        preset = get_preset(name)
        if not meta and name in TRAINED_WEIGHTS and weights in (None, "default"):
            return cls.course_model(name, device, dtype)
        weights = None if meta else resolve_weights(weights)
        target = "meta" if (meta or weights is not None) else device
        with torch.device(target), torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            engine = cls(**{part: config.build() for part, config in preset.parts().items()})
        if weights is not None:
            engine.load(weights, device=device, dtype=dtype)
        elif not meta and dtype is not None:
            engine.to(dtype=dtype)
        return engine.eval().requires_grad_(False)

    @classmethod
    def course_model(cls, name: str, device="cpu", dtype: torch.dtype | None = None,
                     path: Path | None = None) -> "DiffusionEngine":
        """A trained course model: its network and CLIP tower from data/ (TRAINED_WEIGHTS; or `path`, a file of the
        same kind), its VAE from the worlds VAE file they all share (minigen.recipes.worlds.load_trained checks
        both)."""
        from ..recipes.worlds import load_trained  # the recipes know how their models were saved

        if path is None:
            path = trained_weights_path(name)
            if not path.exists():
                raise FileNotFoundError(f"{name}'s trained weights {path} are missing: they ship with the "
                                        "repository's data/ folder (clone it, or pass weights='random' for random "
                                        "weights).")
        engine = cls.from_preset(name, weights="random")
        load_trained(engine, path)
        return engine.to(device=device, dtype=dtype).eval().requires_grad_(False)

    @classmethod
    def from_checkpoint(cls, path, preset: str, device="cpu", dtype: torch.dtype | None = None) -> "DiffusionEngine":
        """Build `preset` on the meta device and fill it from an official checkpoint file, strictly."""
        return cls.from_preset(preset, device=device, dtype=dtype, weights=Path(path))

    def load(self, path, device="cpu", dtype: torch.dtype | None = None, strict: bool = True) -> LoadReport:
        """Fill the engine from a safetensors file (strict: every key present and no other); returns the report."""
        return load_checkpoint(self, path, strict=strict, dtype=dtype, device=device)


def resolve_weights(weights) -> Path | None:
    """The file `from_preset`'s `weights` argument names, or None for random weights ("default" for a preset
    without trained weights)."""
    if weights is None or (isinstance(weights, str) and weights in ("default", "random")):
        return None
    return Path(weights)

