"""Presets: the architectures of every official model and of small course versions, as plain data.

A model preset gathers up to four parts, each a dataclass whose fields are the official
constructor's keyword arguments and whose `build()` returns the minigen module:
`network` (model.diffusion_model), `first_stage` (first_stage_model), `conditioner` and `denoiser`.
The parts live in one file per area (`networks.py`, `first_stage.py`, ...), which register them
with `register_part`; `get_preset(name)` assembles them. Official presets also name the manifest
(`../shared/reference/manifests/<name>.json.gz`) whose keys and shapes they must reproduce.
"""

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# official checkpoint key prefix of each part
PART_PREFIXES = {
    "network": "model.diffusion_model.",
    "first_stage": "first_stage_model.",
    "conditioner": "conditioner.",
    "denoiser": "denoiser.",
}

# course presets whose trained weights are committed in data/ (made by `python -m minigen.train RECIPE`, see
# data/README.md): their engines load these by default
TRAINED_WEIGHTS = (
    "tiny_svd",  # recipe tiny_i2v
    "tiny_sv3d",  # recipe tiny_sv3d
    "tiny_sv4d2",  # recipe tiny_sv4d2
)
DATA_DIR = Path(__file__).resolve().parents[2] / "data"  # the repository's data/ folder: assets and course weights

_PARTS: dict[str, dict[str, Callable[[], object]]] = {part: {} for part in PART_PREFIXES}
_OFFICIAL: set[str] = set()


def register_part(part: str, name: str, config_factory: Callable[[], object], official: bool = False) -> None:
    """Register the config of one part (`network`, `first_stage`, `conditioner`) of preset `name`.

    `config_factory()` returns a dataclass with a `build()` method; it is a factory so that
    importing the presets costs nothing and every caller gets a fresh, editable config.
    """
    if part not in _PARTS:
        raise ValueError(f"Unknown preset part {part!r}; expected one of {sorted(_PARTS)}.")
    _PARTS[part][name] = config_factory
    if official:
        _OFFICIAL.add(name)


@dataclass
class ModelPreset:
    """The parts of one model; a part a later issue has not implemented yet is None."""

    name: str
    network: object | None = None
    first_stage: object | None = None
    conditioner: object | None = None
    denoiser: object | None = None

    @property
    def official(self) -> bool:
        return self.name in _OFFICIAL

    def parts(self) -> dict[str, object]:
        return {part: getattr(self, part) for part in PART_PREFIXES if getattr(self, part) is not None}


def _load_part_modules() -> None:
    """Import every file of this package: each registers its parts on import."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def preset_names() -> list[str]:
    _load_part_modules()
    return sorted({name for table in _PARTS.values() for name in table})


def official_preset_names() -> list[str]:
    _load_part_modules()
    return sorted(_OFFICIAL)


def get_preset(name: str) -> ModelPreset:
    """The preset called `name` (see `preset_names()`), with a fresh config for each part it has."""
    names = preset_names()
    if name not in names:
        raise ValueError(f"Unknown preset {name!r}. Valid presets: {', '.join(names)}.")
    return ModelPreset(name, **{part: table[name]() for part, table in _PARTS.items() if name in table})


def build_on_meta(preset: ModelPreset) -> dict[str, nn.Module]:
    """Every part of the preset built on the meta device: shapes and names, no memory."""
    with torch.device("meta"):
        return {part: config.build() for part, config in preset.parts().items()}


def state_dict_table(name: str) -> dict[str, dict]:
    """{official key: {"shape": [...], "dtype": "float32"}} of everything the preset builds."""
    tensors = {}
    for part, module in build_on_meta(get_preset(name)).items():
        for key, tensor in module.state_dict().items():
            dtype = str(tensor.dtype).removeprefix("torch.")
            tensors[PART_PREFIXES[part] + key] = {"shape": list(tensor.shape), "dtype": dtype}
    return tensors


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def trained_weights_path(name: str) -> Path:
    """Where the committed trained weights of course preset `name` live (see TRAINED_WEIGHTS)."""
    if name not in TRAINED_WEIGHTS:
        raise ValueError(f"Preset {name!r} has no committed trained weights; these do: {', '.join(TRAINED_WEIGHTS)}.")
    return DATA_DIR / f"{name}.safetensors"
