"""Conditioning: official layouts, tiny presets, the GeneralConditioner's routing / dropout / unconditional
twin, input validation, and the text encoders checked against open_clip (and transformers when installed)."""


import open_clip
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from minigen.conditioning import (
    ConcatTimestepEmbedderND,
    EmbedderEntry,
    FrozenCLIPEmbedder,
    FrozenOpenCLIPEmbedder,
    FrozenOpenCLIPEmbedder2,
    FrozenOpenCLIPImageEmbedder,
    GeneralConditioner,
    VideoPredictionEmbedderWithEncoder,
    hf_keys_from_open_clip,
    register_open_clip_arch,
    tokenize,
)
from minigen.conditioning.image import resize_antialiased
from minigen.diffusion.training import EDMSampling, ZeroSampler
from minigen.embeddings import timestep_embedding
from minigen.presets import (
    PART_PREFIXES,
    conditioners,
    get_preset,
    official_preset_names,
    preset_names,
    state_dict_table,
)
from minigen.presets.first_stage import TINY_DDCONFIG, FirstStageConfig
from minigen.tests.official import manifest_shapes

PREFIX = PART_PREFIXES["conditioner"]
TINY_ARCHS = conditioners.TINY_OPEN_CLIP_ARCHS


@pytest.fixture(scope="module", autouse=True)
def tiny_archs():
    for name, config in TINY_ARCHS.items():
        register_open_clip_arch(name, config)


# ---------------------------------------------------------------- presets


@pytest.mark.parametrize("name", official_preset_names())
def test_official_conditioner_reproduces_the_checkpoint_layout(name):
    built = {key: entry["shape"] for key, entry in state_dict_table(name).items() if key.startswith(PREFIX)}
    assert built == manifest_shapes(name, PREFIX)


def frames(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


TINY_BATCHES = {
    "tiny_sd": ({"txt": ["a red cube", "a blue ball"]}, {"crossattn": (2, 77, 32)}),
    "tiny_sdxl": (
        {"txt": ["a red cube", "a blue ball"], "original_size_as_tuple": torch.tensor([[64.0, 64.0]] * 2),
         "crop_coords_top_left": torch.zeros(2, 2), "target_size_as_tuple": torch.tensor([[64.0, 64.0]] * 2)},
        {"crossattn": (2, 77, 32), "vector": (2, 32)},
    ),
    "tiny_svd": (
        {"cond_frames_without_noise": frames(1), "cond_frames": frames(1), "fps_id": torch.full((3,), 6.0),
         "motion_bucket_id": torch.full((3,), 127.0), "cond_aug": torch.full((3,), 0.02)},
        {"crossattn": (1, 1, 32), "vector": (3, 24), "concat": (1, 4, 8, 8)},
    ),
    "tiny_sv3d": (
        {"cond_frames_without_noise": frames(1), "cond_frames": frames(1), "cond_aug": torch.full((3,), 1e-5),
         "polars_rad": torch.full((3,), 1.4), "azimuths_rad": torch.linspace(0, 6, 3)},
        {"crossattn": (1, 1, 32), "vector": (3, 40), "concat": (1, 4, 8, 8)},
    ),
    "tiny_sv4d": (  # 3 time frames x 8 views, one latent and one vector per (t v) frame
        {"cond_frames_without_noise": frames(3, 32), "cond_frames": frames(24, 32), "polar_rad": torch.full((24,), 1.4),
         "azimuth_rad": torch.full((24,), 0.5), "cond_view": frames(8, 32), "cond_motion": frames(3, 32)},
        {"crossattn": (1, 3, 32), "vector": (24, 40), "concat": (24, 4, 4, 4), "cond_view": (8, 4, 4, 4),
         "cond_motion": (3, 4, 4, 4)},
    ),
}


@pytest.mark.parametrize("name", sorted(TINY_BATCHES))
def test_tiny_conditioners_produce_what_the_tiny_networks_read(name):
    batch, shapes = TINY_BATCHES[name]
    c, uc = get_preset(name).conditioner.build().get_unconditional_conditioning(batch)
    assert {key: tuple(value.shape) for key, value in c.items()} == shapes
    assert uc.keys() == c.keys()


def test_every_tiny_preset_builds():
    tiny = set(preset_names()) - set(official_preset_names())
    assert tiny == {"tiny_sd", "tiny_sdxl", "tiny_svd", "tiny_sv3d", "tiny_sv4d", "tiny_sv4d2"}
    for name in tiny:
        assert isinstance(get_preset(name).conditioner.build(), GeneralConditioner)


def test_reference_configs_with_unknown_arguments_are_refused():
    row = {"target": "sgm.modules.encoders.modules.ConcatTimestepEmbedderND", "params": {"outdim": 8, "bogus": 1},
           "input_key": "fps_id"}
    with pytest.raises(ValueError, match="bogus"):
        conditioners.ConditionerConfig.from_reference([row])
    with pytest.raises(ValueError, match="Unsupported embedder"):
        conditioners.ConditionerConfig.from_reference([{"target": "sgm.Nope", "input_key": "x"}])


# ---------------------------------------------------------------- scalars


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 4), columns=st.integers(1, 3), outdim=st.integers(2, 12),
       values=st.lists(st.floats(-1e3, 1e3), min_size=12, max_size=12))
def test_scalar_embedder_embeds_each_column_on_its_own(rows, columns, outdim, values):
    x = torch.tensor(values[: rows * columns]).reshape(rows, columns)
    emb = ConcatTimestepEmbedderND(outdim)(x)
    assert emb.shape == (rows, columns * outdim)
    for column in range(columns):
        block = emb[:, column * outdim:(column + 1) * outdim]
        torch.testing.assert_close(block, timestep_embedding(x[:, column], outdim))


def test_scalar_embedder_refuses_3d_input():
    with pytest.raises(ValueError, match=r"\(b,\) or \(b, d\)"):
        ConcatTimestepEmbedderND(8)(torch.zeros(2, 2, 2))


# ---------------------------------------------------------------- the GeneralConditioner


class Shaped(nn.Module):
    """Test embedder: each sample's number broadcast to the given shapes (one output per shape)."""

    def __init__(self, *shapes):
        super().__init__()
        self.shapes = shapes
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        outputs = tuple(self.scale * x.reshape(-1, *(1,) * len(shape)).expand(-1, *shape) for shape in self.shapes)
        return outputs if len(outputs) > 1 else outputs[0]


def conditioner(*entries) -> GeneralConditioner:
    return GeneralConditioner([EmbedderEntry(Shaped(*shapes), input_key=key, **options)
                               for key, shapes, options in entries])


def test_outputs_are_routed_by_dimensionality_and_concatenated_in_order():
    model = conditioner(("a", [(2,)], {}), ("b", [(3,)], {}), ("c", [(4, 5)], {}), ("d", [(4, 6)], {}),
                        ("e", [(1, 2, 2), (7,)], {}), ("cond_view", [(2, 2, 2)], {}))
    batch = {key: torch.tensor([float(i + 1)] * 2) for i, key in enumerate("abcde")} | {"cond_view": torch.ones(2)}
    out = model(batch)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "vector": (2, 2 + 3 + 7), "crossattn": (2, 4, 11), "concat": (2, 1, 2, 2), "cond_view": (2, 2, 2, 2)}
    assert out["vector"][0].tolist() == [1.0] * 2 + [2.0] * 3 + [5.0] * 7
    assert out["crossattn"][0, 0].tolist() == [3.0] * 5 + [4.0] * 6


def test_mismatched_outputs_cannot_be_concatenated():
    model = conditioner(("a", [(4, 5)], {}), ("b", [(3, 5)], {}))
    with pytest.raises(ValueError, match="cannot be concatenated"):
        model({"a": torch.ones(2), "b": torch.ones(2)})


def test_missing_batch_key_names_the_key_and_the_embedder():
    model = conditioner(("fps_id", [(2,)], {}), ("motion_bucket_id", [(2,)], {}))
    with pytest.raises(KeyError, match=r"motion_bucket_id.*embedder 1 \(Shaped\)"):
        model({"fps_id": torch.ones(2)})


def test_frozen_embedders_stay_frozen_and_in_eval_mode():
    model = conditioner(("a", [(2,)], {}), ("b", [(2,)], {"is_trainable": True})).train()
    frozen, trainable = model.embedders
    assert not frozen.training and trainable.training
    assert not frozen.scale.requires_grad and trainable.scale.requires_grad
    assert set(model.state_dict()) == {"embedders.0.scale", "embedders.1.scale"}


def test_dropout_follows_the_generator_and_the_rate():
    model = conditioner(("a", [(3,)], {"ucg_rate": 0.3}))
    batch = {"a": torch.ones(4000)}
    first = model(batch, generator=torch.Generator().manual_seed(1))["vector"]
    again = model(batch, generator=torch.Generator().manual_seed(1))["vector"]
    torch.testing.assert_close(first, again)
    dropped = (first == 0).all(dim=1).float()
    assert ((first == 0) | (first == 1)).all() and ((first == 0).all(1) | (first == 1).all(1)).all()
    assert abs(dropped.mean().item() - 0.3) < 0.03


@settings(max_examples=20, deadline=None)
@given(rate=st.sampled_from([0.0, 1.0]), batch_size=st.integers(1, 6))
def test_dropout_at_rate_zero_keeps_everything_and_at_one_drops_everything(rate, batch_size):
    model = conditioner(("a", [(3,)], {"ucg_rate": rate}))
    out = model({"a": torch.ones(batch_size)}, generator=torch.Generator().manual_seed(0))["vector"]
    assert (out == (1.0 - rate)).all()


def test_unconditional_conditioning_has_no_dropout_and_zeroes_forced_keys():
    model = conditioner(("a", [(2,)], {"ucg_rate": 1.0}), ("b", [(3,)], {}), ("c", [(4, 1)], {}))
    batch = {"a": torch.full((2,), 2.0), "b": torch.full((2,), 3.0), "c": torch.full((2,), 4.0)}
    c, uc = model.get_unconditional_conditioning(batch, force_uc_zero_embeddings=["b", "c"])
    assert c["vector"][0].tolist() == [2.0, 2.0, 3.0, 3.0, 3.0]
    assert uc["vector"][0].tolist() == [2.0, 2.0, 0.0, 0.0, 0.0] and (uc["crossattn"] == 0).all()
    c, uc = model.get_unconditional_conditioning(batch, {**batch, "a": torch.full((2,), 7.0)},
                                                 force_cond_zero_embeddings=["a"])
    assert c["vector"][0, :2].tolist() == [0.0, 0.0] and uc["vector"][0, :2].tolist() == [7.0, 7.0]


def test_legacy_ucg_value_replaces_the_raw_input_without_touching_the_batch():
    seen = []

    class Record(nn.Module):
        def forward(self, prompts):
            seen.append(list(prompts))
            return torch.ones(len(prompts), 2)

    model = GeneralConditioner([EmbedderEntry(Record(), input_key="txt", ucg_rate=1.0, legacy_ucg_value="")])
    batch = {"txt": ["a cat", "a dog"]}
    model(batch)
    model.get_unconditional_conditioning(batch)
    assert seen == [["", ""], ["a cat", "a dog"], ["a cat", "a dog"]] and batch["txt"] == ["a cat", "a dog"]


def test_entries_need_exactly_one_input_key():
    with pytest.raises(ValueError, match="exactly one of input_key or input_keys"):
        EmbedderEntry(Shaped((2,)))
    with pytest.raises(ValueError, match="probability"):
        EmbedderEntry(Shaped((2,)), input_key="a", ucg_rate=1.5)


# ---------------------------------------------------------------- images and frames


@pytest.fixture(scope="module")
def tiny_image_embedder():
    return FrozenOpenCLIPImageEmbedder("minigen-tiny-vit").eval()


@pytest.mark.parametrize("images, message", [
    (torch.rand(2, 3, 32, 32) * 255, r"\[-1, 1\]"),
    (torch.rand(2, 32, 32), r"\(batch, 3, height, width\)"),
    (torch.rand(2, 4, 32, 32), r"\(batch, 3, height, width\)"),
    (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "float images"),
])
def test_image_embedder_says_which_images_it_expects(tiny_image_embedder, images, message):
    with pytest.raises(ValueError, match=message):
        tiny_image_embedder(images)


def test_conditioner_errors_name_the_embedder_and_its_input():
    model = get_preset("tiny_svd").conditioner.build()
    batch, _ = TINY_BATCHES["tiny_svd"]
    with pytest.raises(ValueError, match=r"Embedder 0 .*cond_frames_without_noise.*\[-1, 1\]"):
        model({**batch, "cond_frames_without_noise": batch["cond_frames_without_noise"] * 3})


@settings(max_examples=15, deadline=None)
@given(height=st.integers(8, 300), width=st.integers(8, 300))
def test_antialiased_resize_is_a_separable_blur_then_bicubic(height, width):
    x = torch.rand(1, 2, height, width, generator=torch.Generator().manual_seed(height * 1000 + width))
    out = resize_antialiased(x, (24, 24))
    assert out.shape == (1, 2, 24, 24)
    if height <= 24 and width <= 24:  # enlarging: no blur at all
        torch.testing.assert_close(out, F.interpolate(x, (24, 24), mode="bicubic", align_corners=True))
    else:  # the same blur written as one 2-D convolution with the outer product of the two kernels
        torch.testing.assert_close(out, F.interpolate(blur_2d(x, height / 24, width / 24), (24, 24), mode="bicubic",
                                                      align_corners=True), atol=1e-5, rtol=1e-5)


def blur_2d(x, factor_h, factor_w):
    kernels = []
    for factor in (factor_h, factor_w):
        sigma = max((factor - 1) / 2, 0.001)
        size = max(int(4 * sigma), 3)
        size += 1 - size % 2
        offsets = torch.arange(size, dtype=x.dtype) - size // 2
        kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
        kernels.append(kernel / kernel.sum())
    kernel = torch.outer(*kernels)
    pad_h, pad_w = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    return F.conv2d(padded, kernel.expand(x.shape[1], 1, *kernel.shape), groups=x.shape[1])


def tiny_frame_embedder(**options) -> VideoPredictionEmbedderWithEncoder:
    encoder = FirstStageConfig(ddconfig=TINY_DDCONFIG, embed_dim=4, scale_factor=1.0).build()
    return VideoPredictionEmbedderWithEncoder(encoder=encoder, **options).eval()


@settings(max_examples=6, deadline=None)
@given(n_cond_frames=st.integers(1, 3), n_copies=st.integers(1, 3), samples=st.integers(1, 2),
       chunk=st.sampled_from([None, 1, 2]))
def test_frame_embedder_repeats_samples_keeps_frames_and_chunks_without_changing_the_result(
        n_cond_frames, n_copies, samples, chunk):
    n_copies = n_copies if n_cond_frames == 1 else 1  # several frames per sample (SV4D): no copies
    torch.manual_seed(0)
    embedder = tiny_frame_embedder(n_cond_frames=n_cond_frames, n_copies=n_copies,
                                   en_and_decode_n_samples_a_time=chunk)
    x = frames(samples * n_cond_frames, size=16)
    with torch.no_grad():
        latents = embedder(x)
        whole = embedder.encoder.encode(x)  # (b t) 4 2 2
    assert latents.shape == (samples * n_cond_frames * n_copies, 4, 2, 2)
    torch.testing.assert_close(latents, whole.repeat_interleave(n_copies, dim=0), atol=1e-5, rtol=1e-5)


def test_sv4d_frame_embedder_embeds_sigma_once_per_frame():
    embedder = tiny_frame_embedder(n_cond_frames=3, n_copies=1, sigma_sampler=ZeroSampler(),
                                   sigma_cond=ConcatTimestepEmbedderND(8))
    with torch.no_grad():
        latents, sigma = embedder(frames(6, size=16), generator=torch.Generator().manual_seed(0))
    assert latents.shape == (6, 4, 2, 2) and sigma.shape == (6, 8)
    with pytest.raises(ValueError, match="n_copies must be 1"):
        tiny_frame_embedder(n_cond_frames=3, n_copies=2)


def test_frame_embedder_noise_follows_the_generator_and_embeds_sigma():
    embedder = tiny_frame_embedder(n_cond_frames=1, n_copies=2, sigma_sampler=EDMSampling(),
                                   sigma_cond=ConcatTimestepEmbedderND(8))
    x = frames(1, size=16)
    with torch.no_grad():
        (a, sigma_a), (b, sigma_b) = (embedder(x, generator=torch.Generator().manual_seed(3)) for _ in range(2))
        other, _ = embedder(x, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(sigma_a, sigma_b)
    assert sigma_a.shape == (2, 8) and not torch.allclose(a, other)


def test_given_augmentation_noise_replaces_the_draw_in_the_embedder_and_the_conditioner():
    """Recorded runs (the golden SV4D cases) replay the 1e-5 noise instead of drawing it; each pass has its own."""
    torch.manual_seed(0)
    embedder = tiny_frame_embedder(n_cond_frames=2, n_copies=1, sigma_sampler=ZeroSampler(),
                                   sigma_cond=ConcatTimestepEmbedderND(8))
    x = frames(2, size=16)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        drawn, _ = embedder(x, generator=torch.Generator().manual_seed(5))
        given, _ = embedder(x, generator=torch.Generator().manual_seed(9), noise=noise)
        torch.testing.assert_close(given, drawn)
        with pytest.raises(ValueError, match="shaped like the frames"):
            embedder(x, noise=noise[:1])
        model = GeneralConditioner([EmbedderEntry(embedder, input_key="cond_frames"),
                                    EmbedderEntry(ConcatTimestepEmbedderND(4), input_key="polar_rad")])
        batch = {"cond_frames": x, "polar_rad": torch.ones(2)}
        c, uc = model.get_unconditional_conditioning(batch, augmentation_noise=({"cond_frames": noise}, {}),
                                                     generator=torch.Generator().manual_seed(9))
        torch.testing.assert_close(c["concat"], drawn)
        assert not torch.equal(uc["concat"], drawn)  # the uc pass drew its own
        with pytest.raises(ValueError, match="adds no noise"):
            model(batch, augmentation_noise={"polar_rad": torch.zeros(2)})


def test_known_latents_stand_in_for_encoding_clean_frames():
    """Training from cached latents: the embedder returns the latents it is given (SV4D's 1e-5 noise leaves the
    frames their clean selves), and refuses latents that cannot stand for its frames."""
    torch.manual_seed(0)
    embedder = tiny_frame_embedder(n_cond_frames=2, n_copies=1, sigma_sampler=ZeroSampler(),
                                   sigma_cond=ConcatTimestepEmbedderND(8), scale_factor=0.5)
    x = frames(2, size=16)
    with torch.no_grad():
        latents = embedder.encoder.encode(x)
        encoded, sigma_encoded = embedder(x, generator=torch.Generator().manual_seed(1))
        given, sigma_given = embedder(x, generator=torch.Generator().manual_seed(1), latents=latents)
        torch.testing.assert_close(given, 0.5 * latents)  # as given, scaled as encodings are
        torch.testing.assert_close(given, encoded, atol=1e-4, rtol=0)  # the 1e-5 noise barely moves the encoding
        torch.testing.assert_close(sigma_given, sigma_encoded)
        with pytest.raises(ValueError, match="one per frame"):
            embedder(x, latents=latents[:1])
        noisy = tiny_frame_embedder(n_cond_frames=2, n_copies=1, sigma_sampler=lambda n, generator=None:
                                    torch.full((n,), 0.5))
        with pytest.raises(ValueError, match="noised them"):
            noisy(x, latents=latents)
        model = GeneralConditioner([EmbedderEntry(embedder, input_key="cond_frames"),
                                    EmbedderEntry(ConcatTimestepEmbedderND(4), input_key="polar_rad")])
        batch = {"cond_frames": x, "polar_rad": torch.ones(2)}
        c = model.embed(batch, (), torch.Generator().manual_seed(1), dropout=False,
                        known_latents={"cond_frames": latents})
        torch.testing.assert_close(c["concat"], given)
        with pytest.raises(ValueError, match="encodes no frames"):
            model.embed(batch, (), None, dropout=False, known_latents={"polar_rad": latents})


def test_frame_embedder_refuses_a_scaled_encoder_and_wrong_frame_counts():
    with pytest.raises(ValueError, match="scale_factor"):
        VideoPredictionEmbedderWithEncoder(1, 1, FirstStageConfig(ddconfig=TINY_DDCONFIG).build())
    with pytest.raises(ValueError, match="n_cond_frames = 2"):
        tiny_frame_embedder(n_cond_frames=2, n_copies=1)(frames(3, size=16))


# ---------------------------------------------------------------- text


def test_long_prompts_are_truncated_with_a_warning():
    with pytest.warns(UserWarning, match="truncated"):
        tokens = tokenize(["word " * 100, "short"])
    assert tokens.shape == (2, 77) and tokens[0, -1] == 49407 and tokens[1, 3] == 0


def test_text_embedders_warn_on_long_prompts():
    embedder = FrozenOpenCLIPEmbedder("minigen-tiny-text-h", layer="penultimate")
    with pytest.warns(UserWarning, match="truncated"):
        assert embedder(["cat " * 80]).shape == (1, 77, 32)
    with pytest.raises(ValueError, match="list of prompts"):
        embedder([1, 2])


def open_clip_text_model(arch: str, quick_gelu: bool = False) -> open_clip.CLIP:
    torch.manual_seed(0)
    model = open_clip.CLIP(**open_clip.get_model_config(arch), quick_gelu=quick_gelu).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))  # no weight left at its initial constant
    return model


def open_clip_hidden_states(model: open_clip.CLIP, tokens: torch.Tensor) -> list[torch.Tensor]:
    x = model.token_embedding(tokens) + model.positional_embedding
    hidden = [x]
    for block in model.transformer.resblocks:
        hidden.append(block(hidden[-1], attn_mask=model.attn_mask))
    return hidden


PROMPTS = ["a photograph of an astronaut riding a horse", "a cat"]


def test_open_clip_text_embedders_match_open_clip():
    reference = open_clip_text_model("minigen-tiny-text-bigg")
    weights = {key: value for key, value in reference.state_dict().items() if not key.startswith("visual.")}
    tokens = open_clip.tokenize(PROMPTS)
    hidden = open_clip_hidden_states(reference, tokens)
    sdxl = FrozenOpenCLIPEmbedder2("minigen-tiny-text-bigg", "penultimate", always_return_pooled=True, legacy=False)
    sd = FrozenOpenCLIPEmbedder("minigen-tiny-text-bigg", layer="penultimate")
    for embedder in (sdxl, sd):
        embedder.model.load_state_dict(weights, strict=True)
    with torch.no_grad():
        penultimate, pooled = sdxl(PROMPTS)
        torch.testing.assert_close(penultimate, hidden[-2])
        torch.testing.assert_close(pooled, reference.encode_text(tokens))
        torch.testing.assert_close(sd(PROMPTS), reference.ln_final(hidden[-2]))


def tiny_clip_l_pair() -> tuple[open_clip.CLIP, FrozenCLIPEmbedder]:
    """open_clip's text tower with OpenAI's quick GELU, and minigen's HF-layout model with the mapped weights."""
    register_open_clip_arch("minigen-tiny-clip-l", {**TINY_ARCHS["minigen-tiny-text-bigg"], "embed_dim": 16})
    reference = open_clip_text_model("minigen-tiny-clip-l", quick_gelu=True)
    sizes = conditioners.TINY_CLIP_L
    embedder = FrozenCLIPEmbedder(layer="hidden", layer_idx=sizes["num_hidden_layers"] - 1, **sizes).eval()
    embedder.transformer.load_state_dict(hf_keys_from_open_clip(reference.state_dict()), strict=True)
    return reference, embedder


def test_clip_l_in_the_hugging_face_layout_matches_open_clip():
    reference, embedder = tiny_clip_l_pair()
    tokens = open_clip.tokenize(PROMPTS)
    expected = open_clip_hidden_states(reference, tokens)
    with torch.no_grad():
        hidden = embedder.transformer.hidden_states(tokens)
        for mine, theirs in zip(hidden, expected, strict=True):
            torch.testing.assert_close(mine, theirs)
        pooled = embedder.transformer.final_layer_norm(hidden[-1])[torch.arange(2), tokens.argmax(-1)]
        torch.testing.assert_close(pooled @ reference.text_projection, reference.encode_text(tokens))
        # padding with the end token (Hugging Face) instead of 0 (open_clip) leaves the real tokens alone
        penultimate = embedder(PROMPTS)
    for row, length in enumerate((tokens > 0).sum(dim=1).tolist()):
        torch.testing.assert_close(penultimate[row, :length], expected[-2][row, :length])


def test_clip_l_matches_transformers_clip_text_model():
    transformers = pytest.importorskip("transformers", reason="transformers is not installed (minigen needs none)")
    _, embedder = tiny_clip_l_pair()
    sizes = conditioners.TINY_CLIP_L
    config = transformers.CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu",
                                         eos_token_id=2, **sizes)
    reference = transformers.CLIPTextModel(config).eval()
    weights = {key.replace("text_model.", ""): value for key, value in embedder.transformer.state_dict().items()}
    expected_keys = {key.replace("text_model.", "") for key in reference.state_dict() if "position_ids" not in key}
    assert set(weights) == expected_keys
    reference.load_state_dict({key if key in reference.state_dict() else "text_model." + key: value
                               for key, value in weights.items()}, strict=False)
    tokens = tokenize(PROMPTS, pad_token_id=49407)
    with torch.no_grad():
        out = reference(input_ids=tokens, output_hidden_states=True)
        torch.testing.assert_close(embedder(PROMPTS), out.hidden_states[sizes["num_hidden_layers"] - 1])
