"""Presets: the architecture of every official model and of the small course versions, in one table.

`PRESETS` has one row per model: whether it is an official model, then for each of its four parts the
function that returns the part's config, a dataclass whose fields are the official constructor's keyword
arguments and whose `build()` returns the minigen module. The parts are named as `DiffusionEngine`'s
arguments, after the official checkpoint's key prefixes (`PART_PREFIXES`); the functions live in one file
per part: `networks.py` and `sv4d.py` (network), `first_stage.py` (first_stage_model), `conditioners.py`
and `denoisers.py`. `get_preset(name)` calls them. An official preset builds exactly the keys and shapes
of its checkpoint (the manifests that `minigen.checkpoint` reads; `tests/test_engine.py` compares them all).
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from . import conditioners, denoisers, first_stage, networks, sv4d

# official checkpoint key prefix of each part, under the part's name in DiffusionEngine
PART_PREFIXES = {
    "network": "model.diffusion_model.",
    "first_stage_model": "first_stage_model.",
    "conditioner": "conditioner.",
    "denoiser": "denoiser.",
}


class PresetRow(NamedTuple):
    """One row of PRESETS: whether the model is official, then the function that makes each part's config."""

    official: bool
    network: Callable[[], object]
    first_stage_model: Callable[[], object]
    conditioner: Callable[[], object]
    denoiser: Callable[[], object]


PRESETS = {
    # name: PresetRow(official, network, first_stage_model, conditioner, denoiser)
    "sd_2_1": PresetRow(True, networks.sd_2_1, first_stage.sd_vae, conditioners.sd_2_1, denoisers.discrete_eps),
    # the same model trained at 768 px to predict v: only the denoiser's scaling differs
    "sd_2_1_768": PresetRow(True, networks.sd_2_1, first_stage.sd_vae, conditioners.sd_2_1, denoisers.discrete_v),
    "sd_xl_base": PresetRow(True, networks.sd_xl_base, first_stage.sdxl_vae, conditioners.sd_xl_base,
                            denoisers.discrete_eps),
    "sd_xl_refiner": PresetRow(True, networks.sd_xl_refiner, first_stage.sdxl_vae, conditioners.sd_xl_refiner,
                               denoisers.discrete_eps),
    # SDXL base distilled: the same architecture (its checkpoint has no manifest of its own)
    "sd_xl_turbo": PresetRow(True, networks.sd_xl_base, first_stage.sdxl_vae, conditioners.sd_xl_base,
                             denoisers.discrete_eps),
    "svd": PresetRow(True, networks.svd, first_stage.svd_vae, conditioners.svd, denoisers.continuous_v),
    # SVD-XT and 1.1: the same architecture, fine-tuned for 25 frames
    "svd_xt": PresetRow(True, networks.svd, first_stage.svd_vae, conditioners.svd, denoisers.continuous_v),
    "svd_xt_1_1": PresetRow(True, networks.svd, first_stage.svd_vae, conditioners.svd, denoisers.continuous_v),
    # SVD with the image decoder of SD 2.1 instead of the temporal one
    "svd_image_decoder": PresetRow(True, networks.svd, first_stage.sd_vae, conditioners.svd, denoisers.continuous_v),
    "svd_xt_image_decoder": PresetRow(True, networks.svd, first_stage.sd_vae, conditioners.svd,
                                      denoisers.continuous_v),
    # SV3D and SV4D: the checkpoints hold only the image decoder; decoding_t of the sampling scripts
    "sv3d_u": PresetRow(True, networks.sv3d_u, partial(first_stage.decoder_only_vae, 14),
                        partial(conditioners.sv3d, cameras=False), denoisers.continuous_v),
    "sv3d_p": PresetRow(True, networks.sv3d_p, partial(first_stage.decoder_only_vae, 14),
                        partial(conditioners.sv3d, cameras=True), denoisers.continuous_v),
    "sv4d": PresetRow(True, sv4d.sv4d, partial(first_stage.decoder_only_vae, 7),
                      partial(conditioners.sv4d, n_time=5, n_view=8), denoisers.continuous_v),
    "sv4d2": PresetRow(True, sv4d.sv4d2, partial(first_stage.decoder_only_vae, 8),
                       partial(conditioners.sv4d, n_time=12, n_view=4), denoisers.continuous_v),
    "sv4d2_8views": PresetRow(True, sv4d.sv4d2_8views, partial(first_stage.decoder_only_vae, 8),
                              partial(conditioners.sv4d, n_time=5, n_view=8), denoisers.continuous_v),
    # ---- course models: the same code paths, small enough to train and run on a laptop CPU ----
    "tiny_sd": PresetRow(False, networks.tiny_sd, first_stage.tiny_sd_vae, conditioners.tiny_sd,
                         denoisers.discrete_eps),
    "tiny_sdxl": PresetRow(False, networks.tiny_sdxl, first_stage.tiny_sdxl_vae, conditioners.tiny_sdxl,
                           denoisers.discrete_eps),
    "tiny_svd": PresetRow(False, networks.tiny_svd, first_stage.tiny_svd_vae, conditioners.tiny_svd,
                          denoisers.continuous_v),
    "tiny_sv3d": PresetRow(False, networks.tiny_sv3d, partial(first_stage.tiny_decoder_only_vae, None),
                           conditioners.tiny_sv3d, denoisers.continuous_v),
    "tiny_sv4d": PresetRow(False, sv4d.tiny_sv4d, partial(first_stage.tiny_decoder_only_vae, 7),
                           conditioners.tiny_sv4d, denoisers.continuous_v),
    "tiny_sv4d2": PresetRow(False, sv4d.tiny_sv4d2, partial(first_stage.tiny_decoder_only_vae, 8),
                            conditioners.tiny_sv4d2, denoisers.continuous_v),
}

# official presets whose checkpoint has another preset's tensor table (and so no manifest of its own): files are
# identified, and presets compared, through that one
SAME_LAYOUT = {"sd_xl_turbo": "sd_xl_base"}

# course presets whose trained weights are committed in data/ (made by `python -m minigen.train RECIPE`, see
# data/README.md): their engines load these by default
TRAINED_WEIGHTS = (
    "tiny_svd",  # recipe tiny_i2v
    "tiny_sv3d",  # recipe tiny_sv3d
    "tiny_sv4d2",  # recipe tiny_sv4d2
)
DATA_DIR = Path(__file__).resolve().parents[2] / "data"  # the repository's data/ folder: assets and course weights


@dataclass
class ModelPreset:
    """The configs of one model's parts, fresh from its row of PRESETS: edit them, then `build()` each."""

    name: str
    official: bool
    network: object
    first_stage_model: object
    conditioner: object
    denoiser: object

    def parts(self) -> dict[str, object]:
        """{part name: config}, named as DiffusionEngine's arguments: `DiffusionEngine(**built parts)`."""
        return {part: getattr(self, part) for part in PART_PREFIXES}


def preset_names() -> list[str]:
    """Every preset, official and course, sorted."""
    return sorted(PRESETS)


def official_preset_names() -> list[str]:
    """The presets of official models (each has an official checkpoint to load), sorted."""
    return sorted(name for name, row in PRESETS.items() if row.official)


def get_preset(name: str) -> ModelPreset:
    """The preset called `name` (see `preset_names()`), with a fresh config for each part."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}. Valid presets: {', '.join(preset_names())}.")
    row = PRESETS[name]
    return ModelPreset(name, row.official, **{part: getattr(row, part)() for part in PART_PREFIXES})


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
    """The number of numbers in `module`'s parameters (buffers not counted)."""
    return sum(p.numel() for p in module.parameters())


def trained_weights_path(name: str) -> Path:
    """Where the committed trained weights of course preset `name` live (see TRAINED_WEIGHTS)."""
    if name not in TRAINED_WEIGHTS:
        raise ValueError(f"Preset {name!r} has no committed trained weights; these do: {', '.join(TRAINED_WEIGHTS)}.")
    return DATA_DIR / f"{name}.safetensors"
