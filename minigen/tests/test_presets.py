"""Network presets: official ones reproduce the checkpoints' layouts; the CLI lists and describes presets."""

import dataclasses
import inspect
import json
import subprocess
import sys

import pytest
import torch

from minigen.diffusion import LinearPredictionGuider
from minigen.nn.sv4d_unet import SpatialUNetModelWithTime
from minigen.nn.unet import UNetModel
from minigen.nn.video_unet import VideoUNet
from minigen.pipelines import SVDPipeline
from minigen.presets import (
    PART_PREFIXES,
    PRESETS,
    build_on_meta,
    get_preset,
    networks,
    official_preset_names,
    parameter_count,
    preset_names,
    state_dict_table,
    sv4d,
)
from minigen.tests.official import manifest, manifest_shapes

NETWORK_PREFIX = PART_PREFIXES["network"]


def manifest_network(name: str) -> tuple[dict, int]:
    """{key without prefix: shape} of the manifest's network part, and its parameter count."""
    shapes = {key[len(NETWORK_PREFIX):]: shape for key, shape in manifest_shapes(name, NETWORK_PREFIX).items()}
    return shapes, manifest(name)["param_counts"]["model.diffusion_model"]


@pytest.mark.parametrize("name", official_preset_names())
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


@pytest.mark.parametrize("config_class", [networks.UNetConfig, networks.VideoUNetConfig, sv4d.SpatialUNetConfig])
def test_config_fields_are_the_constructor_arguments_and_the_inert_reference_keys(config_class):
    network_class = inspect.signature(config_class.build).return_annotation
    parameters = inspect.signature(network_class).parameters
    fields = dataclasses.fields(config_class)
    active = {field.name: field.default for field in fields if "inert" not in field.metadata}
    assert list(active) == list(parameters)
    for name, default in active.items():
        if default is not dataclasses.MISSING:
            assert default == parameters[name].default, name
    inert = {field.name: field.metadata["inert"] for field in fields if "inert" in field.metadata}
    assert inert and all(reason for reason in inert.values())  # each says why it changes nothing


@pytest.mark.parametrize("network_class", [UNetModel, VideoUNet, SpatialUNetModelWithTime])
def test_a_network_built_from_its_required_arguments_alone_runs(network_class):
    torch.manual_seed(0)
    network = network_class(in_channels=4, model_channels=32, out_channels=4, num_res_blocks=1,
                            attention_resolutions=(2,)).eval()
    frames, views = 2, 2
    inputs = {"x": torch.randn(frames * views, 4, 8, 8), "timesteps": torch.rand(frames * views)}
    if network_class is VideoUNet:
        inputs.update(context=torch.randn(frames * views, 1, 1024), num_video_frames=frames * views,
                      image_only_indicator=torch.zeros(1, frames * views))
    if network_class is SpatialUNetModelWithTime:
        inputs.update(context=torch.randn(1, frames, 1024), cond_view=torch.randn(views, 4, 8, 8),
                      cond_motion=torch.randn(frames, 4, 8, 8))
    with torch.no_grad():
        assert network(**inputs).shape == (frames * views, 4, 8, 8)


def test_inert_reference_keys_are_accepted_and_change_nothing():
    official = sv4d.tiny_sv4d()  # the configs set legacy=False and replicate_time_mix_bug=True
    other = dataclasses.replace(official, legacy=True, replicate_time_mix_bug=False, num_heads_upsample=4,
                                view_context_dim=1024, view_block_merge_factor=0.1, use_new_attention_order=True)
    torch.manual_seed(0)
    expected = official.build().state_dict()
    torch.manual_seed(0)
    built = other.build().state_dict()
    assert built.keys() == expected.keys()
    assert all(torch.equal(built[key], expected[key]) for key in expected)


@pytest.mark.parametrize("name", ["tiny_sd", "tiny_sdxl", "tiny_svd", "tiny_sv3d"])
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
    assert (defaults.num_frames, defaults.num_steps, defaults.guider) == (25, 30, LinearPredictionGuider)
    assert defaults == SVDPipeline.DEFAULTS["svd_xt"] != SVDPipeline.DEFAULTS["svd_image_decoder"]


def run_cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minigen.presets", *arguments], capture_output=True,
                          text=True, check=False, timeout=120)


def test_cli_lists_every_preset():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == preset_names()


def test_the_table_has_every_model_once_with_official_as_a_column():
    official = {"sd_2_1", "sd_2_1_768", "sd_xl_base", "sd_xl_refiner", "sd_xl_turbo", "svd", "svd_xt", "svd_xt_1_1",
                "svd_image_decoder", "svd_xt_image_decoder", "sv3d_u", "sv3d_p", "sv4d", "sv4d2", "sv4d2_8views"}
    course = {"tiny_sd", "tiny_sdxl", "tiny_svd", "tiny_sv3d", "tiny_sv4d", "tiny_sv4d2"}
    assert set(PRESETS) == official | course and set(official_preset_names()) == official
    for name in PRESETS:
        preset = get_preset(name)
        assert preset.official == (name in official)
        assert list(preset.parts()) == list(PART_PREFIXES) == ["network", "first_stage_model", "conditioner",
                                                               "denoiser"]
        assert get_preset(name).network is not preset.network  # a fresh config each time: edits stay local
    with pytest.raises(ValueError, match="Valid presets: sd_2_1, sd_2_1_768"):
        get_preset("sd_3")


def test_cli_manifest_of_tiny_sd_is_the_built_state_dict():
    result = run_cli("manifest", "tiny_sd")
    assert result.returncode == 0, result.stderr
    tensors = json.loads(result.stdout)["tensors"]
    assert tensors == state_dict_table("tiny_sd")
    assert f"{NETWORK_PREFIX}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight" in tensors


def test_cli_manifest_of_an_unknown_preset_lists_the_valid_ones():
    result = run_cli("manifest", "tiny_sdd")
    assert result.returncode == 2 and "Valid presets" in result.stderr
