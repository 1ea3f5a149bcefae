"""The diffusion engine: whole official state dicts, loading checkpoints, the network adapter."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from minigen.checkpoint import CheckpointError
from minigen.pipelines import DiffusionEngine
from minigen.presets import official_preset_names
from minigen.tests.official import manifest_shapes


@pytest.mark.parametrize("name", official_preset_names())
def test_whole_engine_matches_the_official_manifest(name):
    engine = DiffusionEngine.from_preset(name, meta=True)
    table = {key: list(value.shape) for key, value in engine.state_dict().items()}
    assert table == manifest_shapes(name)


def tiny_checkpoint(tmp_path, name="tiny_svd") -> tuple[Path, DiffusionEngine]:
    torch.manual_seed(0)
    engine = DiffusionEngine.from_preset(name)
    path = tmp_path / f"{name}.safetensors"
    save_file({key: value.contiguous() for key, value in engine.state_dict().items()}, path)
    return path, engine


def test_tiny_checkpoint_in_the_official_layout_loads_strictly(tmp_path):
    path, original = tiny_checkpoint(tmp_path)
    loaded = DiffusionEngine.from_checkpoint(path, preset="tiny_svd")
    for key, value in original.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    assert not any(t.is_meta for t in loaded.state_dict().values())


def test_damaged_checkpoints_are_refused(tmp_path):
    path, original = tiny_checkpoint(tmp_path)
    state = {key: value.contiguous() for key, value in original.state_dict().items()}
    state.pop("model.diffusion_model.out.2.bias")
    save_file(state, tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match=r"model.diffusion_model.out.\* \(1\)"):
        DiffusionEngine.from_checkpoint(tmp_path / "missing.safetensors", preset="tiny_svd")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:1000])
        DiffusionEngine.from_checkpoint(tmp_path / "cut.safetensors", preset="tiny_svd")


def test_engine_denoises_through_the_network_wrapper():
    engine = DiffusionEngine.from_preset("tiny_sd")
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    context = torch.randn(2, 77, 32)  # tiny_sd: context_dim 32
    denoised = engine.denoise(x, torch.tensor([1.0, 5.0]), {"crossattn": context})
    assert denoised.shape == x.shape and torch.isfinite(denoised).all()


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="tiny_svd"):
        DiffusionEngine.from_preset("svd_tiny")

