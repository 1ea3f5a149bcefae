"""SV4D / SV4D 2.0 UNet: official layouts, tiny forward passes, legacy variants, checkpointing, errors."""

import dataclasses

import pytest
import torch
from einops import rearrange

from minigen.nn.multiview import MultiviewTransformer, ResBlockWithTime
from minigen.nn.resnet import ResBlock
from minigen.nn.sv4d_unet import SpatialUNetModelWithTime
from minigen.nn.unet import set_gradient_checkpointing
from minigen.nn.video import blend_weight
from minigen.presets import PART_PREFIXES, get_preset, parameter_count

PREFIX = PART_PREFIXES["network"]


def tiny(name: str, **changes) -> SpatialUNetModelWithTime:
    torch.manual_seed(0)
    return dataclasses.replace(get_preset(name).network, **changes).build().eval()


def multiview_inputs(config, samples: int = 1, frames: int = 2, views: int = 3, size: int = 8) -> dict:
    """Inputs for `samples` x `frames` time frames x `views` views, ordered (b t v)."""
    generator = torch.Generator().manual_seed(1)
    images = samples * frames * views
    return {"x": torch.randn(images, config.in_channels, size, size, generator=generator),
            "timesteps": torch.full((images,), 0.7),
            "context": torch.randn(samples, frames, config.context_dim, generator=generator),
            "y": torch.randn(images, config.adm_in_channels, generator=generator),
            "cond_view": torch.randn(samples * views, 4, size, size, generator=generator),
            "cond_motion": torch.randn(samples * frames, 4, size, size, generator=generator),
            "num_video_frames": frames * views,
            "image_only_indicator": torch.zeros(samples, frames * views)}


@pytest.mark.parametrize("name, samples, frames, views", [("tiny_sv4d", 1, 2, 3), ("tiny_sv4d2", 2, 3, 2)])
def test_tiny_networks_run_on_cpu(name, samples, frames, views):
    network, config = tiny(name), get_preset(name).network
    assert parameter_count(network) < 5_000_000
    inputs = multiview_inputs(config, samples, frames, views)
    with torch.no_grad():
        output = network(**inputs)
    assert output.shape == (samples * frames * views, config.out_channels, 8, 8)
    assert torch.isfinite(output).all()


def test_gradient_checkpointing_gives_the_same_gradients():
    network = tiny("tiny_sv4d2").train()
    inputs = multiview_inputs(get_preset("tiny_sv4d2").network, frames=2, views=2)

    def gradients(enabled: bool) -> dict:
        set_gradient_checkpointing(network, enabled)
        network.zero_grad()
        network(**inputs).square().mean().backward()
        return {name: p.grad.clone() for name, p in network.named_parameters() if p.grad is not None}

    plain, checkpointed = gradients(False), gradients(True)
    transformers = [m for m in network.modules() if isinstance(m, MultiviewTransformer)]
    assert transformers and all(m.motion_blocks[0].use_checkpoint for m in transformers)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


def test_replicate_time_mix_bug_changes_nothing():
    inputs = multiview_inputs(get_preset("tiny_sv4d").network)
    with torch.no_grad():
        with_flag = tiny("tiny_sv4d", replicate_time_mix_bug=True)(**inputs)
        without = tiny("tiny_sv4d", replicate_time_mix_bug=False)(**inputs)
    torch.testing.assert_close(with_flag, without, rtol=0, atol=0)


def test_time_mix_legacy_keeps_mix_factor_on_the_block_and_runs():
    network = tiny("tiny_sv4d2", time_mix_legacy=True)
    keys = network.state_dict().keys()
    assert "input_blocks.1.0.mix_factor" in keys and "input_blocks.1.1.mix_factor" in keys
    assert not any("time_mixer" in key for key in keys)
    with torch.no_grad():
        assert torch.isfinite(network(**multiview_inputs(get_preset("tiny_sv4d2").network, views=2))).all()


def test_legacy_resblock_gives_alpha_to_the_temporal_result():
    torch.manual_seed(0)
    block = ResBlockWithTime(32, 16, 0.0, time_kernel_size=(3, 1, 1), merge_strategy="learned",
                             merge_factor=30.0, time_mix_legacy=True).eval()  # alpha = sigmoid(30) = 1
    for parameter in block.parameters():  # the zero-initialised output convolutions must matter
        parameter.data.add_(0.1 * torch.randn_like(parameter))
    x, emb = torch.randn(4, 32, 4, 4), torch.randn(4, 16)
    with torch.no_grad():
        spatial = ResBlock.forward(block, x, emb)  # (b n) c h w with n = 4 frames
        temporal = block.time_mix_blocks(rearrange(spatial, "(b n) c h w -> b c n h w", n=4), emb[None])
        expected = rearrange(temporal, "b c n h w -> (b n) c h w")
        torch.testing.assert_close(block(x, emb, num_video_frames=4), expected)
        assert not torch.allclose(expected, spatial, atol=1e-3)


def test_legacy_weight_applies_the_sigmoid_after_choosing_image_frames():
    mix_factor = torch.tensor([-2.0])
    video, images = torch.zeros(1, 3), torch.ones(1, 3)
    weight = blend_weight(mix_factor, "learned_with_images", video, legacy=True)
    torch.testing.assert_close(weight, torch.sigmoid(mix_factor[0]))
    weight = blend_weight(mix_factor, "learned_with_images", images, legacy=True)
    torch.testing.assert_close(weight, torch.sigmoid(torch.tensor(1.0)))  # not 1: sigmoid after the choice
    with pytest.raises(ValueError, match="same for every frame"):
        blend_weight(mix_factor, "learned_with_images", torch.tensor([[0.0, 1.0, 0.0]]), legacy=True)


# ---- clear errors ----

@pytest.fixture(scope="module")
def network_and_inputs():
    return tiny("tiny_sv4d"), multiview_inputs(get_preset("tiny_sv4d").network, frames=2, views=3)


@pytest.mark.parametrize("missing", ["context", "cond_view", "cond_motion"])
def test_missing_multiview_conditioning_is_named(network_and_inputs, missing):
    network, inputs = network_and_inputs
    with pytest.raises(ValueError, match=f"needs {missing} of shape"):
        network(**{**inputs, missing: None})


def test_batch_that_is_not_frames_times_views_is_explained(network_and_inputs):
    network, inputs = network_and_inputs
    with pytest.raises(ValueError, match=r"must be b x t x v, ordered \(b t v\)"):
        five_images = {key: inputs[key][:5] for key in ("x", "timesteps", "y")}
        network(**{**inputs, **five_images})
    with pytest.raises(ValueError, match="cond_motion has 3 rows, expected b x t = 2"):
        network(**{**inputs, "cond_motion": torch.randn(3, 4, 8, 8)})


def test_camera_embedding_needs_adm_in_channels_of_four_model_channels():
    with pytest.raises(ValueError, match="adm_in_channels must be 128"):
        dataclasses.replace(get_preset("tiny_sv4d2").network, adm_in_channels=40).build()


def test_unsupported_reference_variants_are_refused():
    with pytest.raises(ValueError, match="use_motion_attention=True"):
        dataclasses.replace(get_preset("tiny_sv4d").network, use_motion_attention=False).build()


def test_tiny_sv4d2_runs_with_bf16_weights():
    """Weights cast to bf16 (as the pipelines' dtype option does): no float32 may leak into a bf16 layer."""
    network = tiny("tiny_sv4d2").to(torch.bfloat16)
    inputs = multiview_inputs(get_preset("tiny_sv4d2").network, 1, 3, 2)
    with torch.no_grad():
        reference = tiny("tiny_sv4d2")(**inputs)
        out = network(**{k: v.to(torch.bfloat16) if torch.is_tensor(v) and v.is_floating_point() else v
                         for k, v in inputs.items()})
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, atol=0.15, rtol=0.1)
