"""Networks: attention variants agree, checkpointing saves memory, and bad input fails with clear errors."""

import inspect

import pytest
import torch
from einops import rearrange

from minigen.nn.attention import attention, naive_attention, set_query_chunk_size, use_attention
from minigen.nn.autoencoder import AttnBlock, ResnetBlock, VideoResnetBlock
from minigen.nn.multiview import MultiviewTransformer, ResBlockWithTime
from minigen.nn.resnet import Downsample, ResBlock, TimestepEmbedSequential
from minigen.nn.transformer import BasicTransformerBlock, CrossAttention, SpatialTransformer
from minigen.nn.unet import set_gradient_checkpointing
from minigen.nn.video import AlphaBlender, SpatialVideoTransformer, VideoResBlock, VideoTransformerBlock
from minigen.presets import get_preset


def tiny(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return get_preset(name).network.build().eval()


def sd_inputs(batch: int = 2, size: int = 16) -> dict:
    generator = torch.Generator().manual_seed(1)
    return {"x": torch.randn(batch, 4, size, size, generator=generator),
            "timesteps": torch.rand(batch, generator=generator),
            "context": torch.randn(batch, 3, 32, generator=generator)}


def svd_inputs(videos: int = 1, frames: int = 3) -> dict:
    generator = torch.Generator().manual_seed(2)
    batch = videos * frames
    return {"x": torch.randn(batch, 8, 8, 8, generator=generator),
            "timesteps": torch.rand(batch, generator=generator),
            "context": torch.randn(batch, 1, 32, generator=generator),
            "y": torch.randn(batch, 24, generator=generator),
            "num_video_frames": frames, "image_only_indicator": torch.zeros(videos, frames)}


# ---- attention ----

def test_fused_chunked_and_naive_attention_agree():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 50, 8, generator=generator) for _ in range(3))
    full = attention(q, k, v)
    torch.testing.assert_close(naive_attention(q, k, v), full)
    torch.testing.assert_close(attention(q, k, v, query_chunk_size=7), full)


def test_query_chunking_a_whole_model_leaves_its_output_unchanged():
    model, inputs = tiny("tiny_sd"), sd_inputs()
    with torch.no_grad():
        full = model(**inputs)
        set_query_chunk_size(model, 5)
        assert all(m.query_chunk_size == 5 for m in model.modules() if isinstance(m, CrossAttention))
        torch.testing.assert_close(model(**inputs), full)


def test_every_reference_attention_type_is_accepted_and_others_are_not():
    for attn_mode in ("softmax", "softmax-xformers", "vanilla", "vanilla-xformers"):
        BasicTransformerBlock(16, 2, 8, attn_mode=attn_mode)
    with pytest.raises(ValueError, match="softmax-xformers"):
        BasicTransformerBlock(16, 2, 8, attn_mode="flash-cosine")


# ---- blocks ----

def test_temporal_resblock_as_the_autoencoder_uses_it():
    block = ResBlock(32, 0, 0.0, out_channels=32, dims=3, kernel_size=(3, 1, 1), skip_t_emb=True)
    assert "emb_layers.1.weight" not in block.state_dict()
    assert block(torch.randn(1, 32, 5, 4, 4)).shape == (1, 32, 5, 4, 4)


def test_alpha_blender_strategies():
    spatial, temporal = torch.ones(6, 1, 1), torch.zeros(6, 1, 1)
    assert torch.allclose(AlphaBlender(0.3, "fixed")(spatial, temporal), torch.tensor(0.3))
    learned = torch.sigmoid(torch.tensor(0.3)).item()
    assert torch.allclose(AlphaBlender(0.3, "learned")(spatial, temporal), torch.tensor(learned))
    indicator = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # b t: still images are spatial only
    blended = AlphaBlender(0.3, "learned_with_images")(spatial, temporal, indicator)
    assert blended.flatten().tolist() == pytest.approx([1, learned, learned, learned, learned, 1])
    with pytest.raises(ValueError, match="image_only_indicator"):
        AlphaBlender(0.3, "learned_with_images")(spatial, temporal)
    with pytest.raises(ValueError, match="merge_strategy"):
        AlphaBlender(0.3, "average")


# ---- gradient checkpointing ----

def bytes_saved_for_backward(model, inputs) -> int:
    """Bytes of activation storage autograd keeps for backward (parameters excluded), counted exactly."""
    parameters = {p.data_ptr() for p in model.parameters()}
    storages = {}

    def pack(tensor):
        if tensor.data_ptr() not in parameters:
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = model(**inputs)
    output.square().mean().backward()
    return sum(storages.values())


def test_gradient_checkpointing_keeps_less_for_backward_and_gives_the_same_gradients():
    model, inputs = tiny("tiny_sd").train(), sd_inputs()
    saved, gradients = {}, {}
    for enabled in (False, True):
        set_gradient_checkpointing(model, enabled)
        model.zero_grad()
        saved[enabled] = bytes_saved_for_backward(model, inputs)
        gradients[enabled] = [p.grad.clone() for p in model.parameters()]
    assert saved[True] < saved[False] / 3
    for with_checkpointing, without in zip(gradients[True], gradients[False], strict=True):
        torch.testing.assert_close(with_checkpointing, without)


def test_use_checkpoint_reaches_every_block():
    config = get_preset("tiny_svd").network
    config.use_checkpoint = True
    model = config.build()
    blocks = [m for m in model.modules() if isinstance(m, (ResBlock, BasicTransformerBlock, VideoTransformerBlock))]
    assert {type(m) for m in blocks} >= {VideoResBlock, BasicTransformerBlock, VideoTransformerBlock}
    assert all(m.use_checkpoint for m in blocks)


# ---- bad input ----

def test_wrong_channel_count():
    inputs = sd_inputs()
    inputs["x"] = inputs["x"][:, :3]
    with pytest.raises(ValueError, match=r"expects x of shape \(batch, 4, height, width\)"):
        tiny("tiny_sd")(**inputs)
    with pytest.raises(ValueError, match="expects 8 channels"):
        Downsample(8, True)(torch.randn(1, 4, 8, 8))


def test_spatial_size_not_divisible_by_the_downsampling_factor():
    with pytest.raises(ValueError, match="must be divisible by 2"):
        tiny("tiny_sd")(**sd_inputs(size=15))


def test_batch_not_divisible_by_num_video_frames():
    inputs = svd_inputs(frames=3)
    inputs["num_video_frames"] = 2
    with pytest.raises(ValueError, match="num_video_frames=2"):
        tiny("tiny_svd")(**inputs)
    with pytest.raises(ValueError, match="num_video_frames=None"):
        VideoResBlock(32, 8, 0.0)(torch.randn(3, 32, 4, 4), torch.randn(3, 8), None)


@pytest.mark.parametrize("preset, inputs, changes, message", [
    ("tiny_sd", sd_inputs, {"context": None}, "pass context"),
    ("tiny_sdxl", sd_inputs, {}, "needs the vector conditioning y"),
    ("tiny_sd", sd_inputs, {"y": torch.randn(2, 32)}, "takes no y"),
    ("tiny_svd", svd_inputs, {"y": None}, "pass y of shape"),
    ("tiny_svd", svd_inputs, {"image_only_indicator": None}, "needs image_only_indicator"),
])
def test_a_missing_or_unexpected_input_is_named(preset, inputs, changes, message):
    with pytest.raises(ValueError, match=message):
        tiny(preset)(**(inputs() | changes))


def test_context_of_the_wrong_size():
    inputs = sd_inputs()
    inputs["context"] = torch.randn(2, 3, 16)
    with pytest.raises(ValueError, match="context tokens of size 32"):
        tiny("tiny_sd")(**inputs)


def test_unknown_preset_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Valid presets: .*tiny_sd"):
        get_preset("tiny_sdd")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_networks_run_with_weights_cast_to_half_precision(dtype):
    """fp16 / bf16 weights (not autocast): GroupNorm32 must not mix dtypes. CPU has bf16 and fp16 kernels."""
    torch.manual_seed(0)
    network = get_preset("tiny_svd").network.build().eval()
    x = torch.randn(2, network.in_channels, 16, 16)
    inputs = dict(timesteps=torch.rand(2), context=torch.randn(2, 1, 32), y=torch.randn(2, 24),
                  num_video_frames=2, image_only_indicator=torch.zeros(1, 2))
    with torch.no_grad():
        reference = network(x, **inputs)
        half = network.to(dtype)(x.to(dtype), **{k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point()
                                                 else v for k, v in inputs.items()})
    assert half.dtype == dtype
    torch.testing.assert_close(half.float(), reference, atol=0.1, rtol=0.1)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_groupnorm32_on_half_inputs_is_the_float32_norm_rounded(dtype):
    """The CPU's mixed-dtype kernel (no float32 copy) gives the reference's float32 norm cast back, to the last
    bit for all but a few elements (a different summation order), and the input dtype."""
    from minigen.nn.resnet import GroupNorm32

    torch.manual_seed(0)
    norm = GroupNorm32(32, 64)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = (3 * torch.randn(4, 64, 16, 16) + 1).to(dtype)
    expected = torch.nn.functional.group_norm(x.float(), 32, norm.weight, norm.bias, norm.eps).to(dtype)
    with torch.no_grad():
        result = norm(x)
    assert result.dtype == dtype
    one_step = torch.finfo(dtype).eps * expected.float().abs().clamp(min=1)
    assert ((result.float() - expected.float()).abs() <= one_step).all()
    assert (result != expected).float().mean() < 1e-3


def test_attention_split_over_the_batch_gives_the_same_result(monkeypatch):
    """The CUDA path splits huge batches (SV4D 2.0's per-pixel view attention); check the split itself on CPU."""
    import minigen.nn.attention as attention_module

    monkeypatch.setattr(attention_module, "MAX_CUDA_SEQUENCES", 4)
    q, k, v = torch.randn(7, 2, 5, 8), torch.randn(7, 2, 6, 8), torch.randn(7, 2, 6, 8)
    split = attention_module._attention_in_batch_chunks(q, k, v, query_chunk_size=2)
    torch.testing.assert_close(split, naive_attention(q, k, v))


# ---- one attention function ----

def test_use_attention_runs_a_whole_unet_on_another_kernel_with_the_same_output():
    model, inputs = tiny("tiny_sd"), sd_inputs()
    calls = []

    def counted_naive_attention(q, k, v):
        calls.append(q.shape)
        return naive_attention(q, k, v)

    with torch.no_grad():
        fused = model(**inputs)
        with use_attention(counted_naive_attention):
            naive = model(**inputs)
        assert len(calls) == 2 * sum(isinstance(m, BasicTransformerBlock) for m in model.modules())
        torch.testing.assert_close(naive, fused)
        model(**inputs)
    assert len(calls) == 2 * sum(isinstance(m, BasicTransformerBlock) for m in model.modules())  # switched back
    with pytest.raises(TypeError, match="kernel"), use_attention("naive"):
        pass


def test_the_vae_attention_goes_through_attention_and_its_chunking():
    first_stage = get_preset("tiny_sd").first_stage_model.build().eval()
    blocks = [m for m in first_stage.modules() if isinstance(m, AttnBlock)]
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    calls = []

    def counted_attention(q, k, v):
        calls.append(q.shape[-2])
        return naive_attention(q, k, v)

    with torch.no_grad():
        full = first_stage.decode(first_stage.encode(images))
        set_query_chunk_size(first_stage, 1)
        assert blocks and all(block.query_chunk_size == 1 for block in blocks)
        with use_attention(counted_attention):
            chunked = first_stage.decode(first_stage.encode(images))
    assert calls and set(calls) == {1}  # every VAE attention call, one query at a time
    torch.testing.assert_close(chunked, full)


# ---- routing and blends ----

def test_the_routing_table_in_timestep_embed_sequential_lists_what_each_layer_reads():
    table = {}
    for line in TimestepEmbedSequential.__doc__.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.strip().startswith("|") and len(cells) == 2 and not set(cells[0]) <= {"-"} and cells[0] != "layer":
            table[cells[0]] = tuple(name.strip() for name in cells[1].split(","))
    layers = (ResBlock, VideoResBlock, ResBlockWithTime, SpatialTransformer, SpatialVideoTransformer,
              MultiviewTransformer)
    assert table == {layer.__name__: layer.conditioning_inputs for layer in layers}
    forward_names = inspect.signature(TimestepEmbedSequential.forward).parameters
    for layer in layers:  # every name is one of the UNets' inputs and one of the layer's forward arguments
        assert set(layer.conditioning_inputs) <= set(forward_names) | {"cond_view"}
        assert set(layer.conditioning_inputs) <= set(inspect.signature(layer.forward).parameters)


def test_svd_and_sv4d_temporal_resblocks_are_one_block_under_two_key_layouts():
    torch.manual_seed(0)
    options = dict(merge_strategy="learned", merge_factor=0.3, out_channels=64)
    svd_block = VideoResBlock(32, 12, 0.0, video_kernel_size=(3, 1, 1), **options).eval()
    sv4d_block = ResBlockWithTime(32, 12, 0.0, time_kernel_size=(3, 1, 1), time_mix_legacy=False, **options).eval()
    with torch.no_grad():
        for parameter in svd_block.parameters():  # the zero-initialised output convolutions must matter
            parameter.add_(0.1 * torch.randn_like(parameter))
    weights = {key.replace("time_stack.", "time_mix_blocks."): value for key, value in svd_block.state_dict().items()}
    sv4d_block.load_state_dict(weights, strict=True)
    x, emb = torch.randn(6, 32, 4, 4), torch.randn(6, 12)
    with torch.no_grad():
        torch.testing.assert_close(sv4d_block(x, emb, num_video_frames=3),
                                   svd_block(x, emb, num_video_frames=3, image_only_indicator=torch.zeros(2, 3)))


def test_the_temporal_decoder_block_gives_alpha_to_the_temporal_result():
    block = VideoResnetBlock(32, 32, 0.0, video_kernel_size=(3, 1, 1), alpha=1.0, merge_strategy="fixed").eval()
    with torch.no_grad():
        for parameter in block.time_stack.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
        x = torch.randn(4, 32, 4, 4)
        spatial = rearrange(ResnetBlock.forward(block, x), "(b t) c h w -> b c t h w", t=4)
        expected = rearrange(block.time_stack(spatial), "b c t h w -> (b t) c h w")
        torch.testing.assert_close(block(x, num_video_frames=4), expected)  # alpha = 1: temporal result only
    assert "mix_factor" in block.state_dict()
    with pytest.raises(ValueError, match="merge_strategy"):
        VideoResnetBlock(32, 32, 0.0, video_kernel_size=3, alpha=0.0, merge_strategy="learned_with_images")


def test_optional_layers_are_none_and_leave_the_keys_alone():
    plain = VideoTransformerBlock(16, 2, 8, ff_in=False)
    assert plain.ff_in is None and plain.norm_in is None
    assert not any(key.startswith(("ff_in.", "norm_in.")) for key in plain.state_dict())
    widened = VideoTransformerBlock(16, 2, 16, inner_dim=32)  # inner_dim switches ff_in on (quirk)
    assert isinstance(widened.ff_in, torch.nn.Module) and "ff_in.net.2.weight" in widened.state_dict()
    no_second = VideoTransformerBlock(16, 2, 8, disable_temporal_crossattention=True)
    assert no_second.attn2 is None and no_second.norm2 is None
    assert not any(key.startswith(("attn2.", "norm2.")) for key in no_second.state_dict())
