"""Network presets: official ones reproduce the checkpoints' layouts; the CLI lists and describes presets."""

import dataclasses
import inspect
import json
import subprocess
import sys

import pytest
import torch

from minigen.pipelines import SVDPipeline
from minigen.presets import (
    PART_PREFIXES,
    build_on_meta,
    get_preset,
    networks,
    parameter_count,
    state_dict_table,
    sv4d,
)
from minigen.tests.official import manifest, manifest_shapes

NETWORK_PREFIX = PART_PREFIXES["network"]


def manifest_network(name: str) -> tuple[dict, int]:
    """{key without prefix: shape} of the manifest's network part, and its parameter count."""
    shapes = {key[len(NETWORK_PREFIX):]: shape for key, shape in manifest_shapes(name, NETWORK_PREFIX).items()}
    return shapes, manifest(name)["param_counts"]["model.diffusion_model"]


@pytest.mark.parametrize("name", sorted({**networks.OFFICIAL, **sv4d.OFFICIAL}))
def test_official_network_reproduces_the_checkpoint_layout(name):
    preset = get_preset(name)
    assert preset.official
    network = build_on_meta(preset)["network"]
    built = {key: list(tensor.shape) for key, tensor in network.state_dict().items()}
    expected, parameters = manifest_network(name)
    assert sorted(set(expected) - set(built)) == [], "keys missing from the minigen module"
    assert sorted(set(built) - set(expected)) == [], "keys the checkpoint does not have"
    assert {key: shape for key, shape in built.items() if expected[key] != shape} == {}
    assert parameter_count(network) == parameters


@pytest.mark.parametrize("config_class", [networks.UNetConfig, networks.VideoUNetConfig])
def test_config_fields_are_the_constructor_arguments(config_class):
    network_class = inspect.signature(config_class.build).return_annotation
    parameters = inspect.signature(network_class).parameters
    fields = {field.name: field.default for field in dataclasses.fields(config_class)}
    assert list(fields) == list(parameters)
    for name, default in fields.items():
        if default is not dataclasses.MISSING:
            assert default == parameters[name].default, name


@pytest.mark.parametrize("name", sorted(networks.TINY))
def test_tiny_networks_are_small_and_run(name):
    config = get_preset(name).network
    network = config.build().eval()
    assert parameter_count(network) < 3_000_000
    frames = 2
    x = torch.randn(frames, config.in_channels, 16, 16)
    kwargs = {"timesteps": torch.rand(frames), "context": torch.randn(frames, 3, 32)}
    if config.num_classes is not None:
        kwargs["y"] = torch.randn(frames, config.adm_in_channels)
    if isinstance(config, networks.VideoUNetConfig):
        kwargs.update(num_video_frames=frames, image_only_indicator=torch.zeros(1, frames))
    with torch.no_grad():
        assert network(x, **kwargs).shape == (frames, config.out_channels, 16, 16)


def test_svd_xt_image_decoder_is_svd_image_decoder_sampled_as_svd_xt():
    """The reference's svd_xt_image_decoder: svd_image_decoder's parts, svd_xt's frames, steps and guidance
    (simple_video_sample.py; configs/svd_xt_image_decoder.yaml differs from svd_image_decoder.yaml in the guider)."""
    assert get_preset("svd_xt_image_decoder").parts() == get_preset("svd_image_decoder").parts()
    assert get_preset("svd_xt_image_decoder").official
    assert manifest_shapes("svd_xt_image_decoder") == manifest_shapes("svd_image_decoder")
    defaults = SVDPipeline.DEFAULTS["svd_xt_image_decoder"]
    assert (defaults.num_frames, defaults.num_steps, defaults.guider) == (25, 30, "LinearPredictionGuider")
    assert defaults == SVDPipeline.DEFAULTS["svd_xt"] != SVDPipeline.DEFAULTS["svd_image_decoder"]


def run_cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minigen.presets", *arguments], capture_output=True,
                          text=True, check=False, timeout=120)


def test_cli_lists_every_network_preset():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    assert set(networks.OFFICIAL) | set(networks.TINY) <= set(result.stdout.split())


def test_cli_manifest_of_tiny_sd_is_the_built_state_dict():
    result = run_cli("manifest", "tiny_sd")
    assert result.returncode == 0, result.stderr
    tensors = json.loads(result.stdout)["tensors"]
    assert tensors == state_dict_table("tiny_sd")
    assert f"{NETWORK_PREFIX}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight" in tensors


def test_cli_manifest_of_an_unknown_preset_lists_the_valid_ones():
    result = run_cli("manifest", "tiny_sdd")
    assert result.returncode == 2 and "Valid presets" in result.stderr
