"""Conditioner presets: the GeneralConditioner of every official model and of the tiny course models, as data.

A `ConditionerConfig` lists `EmbedderConfig`s in the configs' `emb_models` order (that order gives
the checkpoint keys `conditioner.embedders.N.`); each names a minigen embedder class and its
keyword arguments (`Part`), plus the routing (`input_key`, `is_trainable`, `ucg_rate`, ...).
`ConditionerConfig.from_reference` reads a reference `conditioner_config` dict. Taught in notebook 06.
Reference: `conditioner_config` in configs/inference/*.yaml and scripts/sampling/configs/*.yaml.
"""

import inspect
from dataclasses import dataclass, field, replace
from typing import Any

from minigen import diffusion
from minigen.conditioning import (
    ConcatTimestepEmbedderND,
    EmbedderEntry,
    FrozenCLIPEmbedder,
    FrozenOpenCLIPEmbedder,
    FrozenOpenCLIPEmbedder2,
    FrozenOpenCLIPImageEmbedder,
    FrozenOpenCLIPImagePredictionEmbedder,
    GeneralConditioner,
    VideoPredictionEmbedderWithEncoder,
    register_open_clip_arch,
)
from minigen.diffusion.training import ZeroSampler

from .first_stage import TINY_DDCONFIG, DDConfig, FirstStageConfig


@dataclass
class Part:
    """A minigen module class and its constructor's keyword arguments; values with a `build()` are built first."""

    target: type
    params: dict = field(default_factory=dict)

    def build(self):
        return self.target(**{key: value.build() if hasattr(value, "build") else value
                              for key, value in self.params.items()})


@dataclass
class EmbedderConfig:
    """One row of `emb_models`: the embedder and how the conditioner feeds and uses it."""

    embedder: Part
    input_key: str | None = None
    input_keys: tuple = ()
    is_trainable: bool = False
    ucg_rate: float = 0.0
    legacy_ucg_value: Any = None

    def build(self) -> EmbedderEntry:
        return EmbedderEntry(self.embedder.build(), self.input_key, tuple(self.input_keys), self.is_trainable,
                             self.ucg_rate, self.legacy_ucg_value)


@dataclass
class ConditionerConfig:
    """The configs' `conditioner_config`: its embedders in `emb_models` order, which numbers their keys."""

    emb_models: list[EmbedderConfig]

    def build(self) -> GeneralConditioner:
        """The `conditioner.` part: every embedder built, in emb_models order (`embedders.0.`, `embedders.1.`...)."""
        return GeneralConditioner([embedder.build() for embedder in self.emb_models])

    @classmethod
    def from_reference(cls, conditioner_config: dict) -> "ConditionerConfig":
        """Read a reference `conditioner_config` ({"target": ...GeneralConditioner, "params": {"emb_models": [...]}})
        or its `emb_models` list."""
        rows = conditioner_config
        if isinstance(conditioner_config, dict):
            rows = conditioner_config.get("params", conditioner_config)["emb_models"]
        return cls([embedder_from_reference(row) for row in rows])


# ---------------------------------------------------------------- reading the reference configs

EMBEDDERS = {cls.__name__: cls for cls in (
    ConcatTimestepEmbedderND, FrozenCLIPEmbedder, FrozenOpenCLIPEmbedder, FrozenOpenCLIPEmbedder2,
    FrozenOpenCLIPImageEmbedder, FrozenOpenCLIPImagePredictionEmbedder, VideoPredictionEmbedderWithEncoder,
)}
# reference arguments with no counterpart: weights come from the checkpoint (version), placement from the
# caller (device), freezing from the conditioner's is_trainable (freeze); max_length is always the 77 tokens
IGNORED_PARAMS = ("version", "device", "freeze", "max_length")


def embedder_from_reference(row: dict) -> EmbedderConfig:
    """One reference `emb_models` row: its embedder (see part_from_reference) and its routing keys."""
    routing = {key: row[key] for key in ("input_key", "is_trainable", "ucg_rate", "legacy_ucg_value") if key in row}
    if "input_keys" in row:
        routing["input_keys"] = tuple(row["input_keys"])
    return EmbedderConfig(part_from_reference(row), **routing)


def part_from_reference(config: dict) -> Part:
    """A reference {"target": "sgm....ClassName", "params": {...}} as a minigen Part (nested configs included)."""
    name = config["target"].rsplit(".", 1)[-1]
    if name not in EMBEDDERS:
        raise ValueError(f"Unsupported embedder {config['target']!r}; minigen has {sorted(EMBEDDERS)}.")
    params = {key: value for key, value in config.get("params", {}).items() if key not in IGNORED_PARAMS}
    if "open_clip_embedding_config" in params:
        params["open_clip_embedding"] = part_from_reference(params.pop("open_clip_embedding_config"))
    if "encoder_config" in params:
        if not params.pop("is_ae", False):
            raise ValueError(f"{name}: only VAE encoders (is_ae: True, as in every official config) are supported.")
        params["encoder"] = encoder_from_reference(params.pop("encoder_config"))
    if "sigma_sampler_config" in params:
        sampler = params.pop("sigma_sampler_config")
        params["sigma_sampler"] = diffusion.by_name("sigma_sampler", sampler["target"])(**sampler.get("params", {}))
    if "sigma_cond_config" in params:
        params["sigma_cond"] = part_from_reference(params.pop("sigma_cond_config"))
    accepted = inspect.signature(EMBEDDERS[name]).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"{name}: arguments {unknown} are not supported; minigen's {name} takes {sorted(accepted)}.")
    return Part(EMBEDDERS[name], params)


def encoder_from_reference(encoder_config: dict) -> FirstStageConfig:
    """The configs' AutoencoderKLModeOnly: an AutoencoderKL (quant convs) whose latents are not scaled."""
    if not encoder_config["target"].endswith("AutoencoderKLModeOnly"):
        raise ValueError(f"Unsupported conditioning encoder {encoder_config['target']!r}; "
                         "expected AutoencoderKLModeOnly.")
    return FirstStageConfig.from_reference({"target": "AutoencoderKL", "params": encoder_config["params"]},
                                           scale_factor=1.0)


# ---------------------------------------------------------------- building blocks of the official conditioners


def scalar(input_key: str, outdim: int) -> EmbedderConfig:
    """A number (or a few) per sample, embedded with `outdim` sinusoidal features each -> vector."""
    return EmbedderConfig(Part(ConcatTimestepEmbedderND, {"outdim": outdim}), input_key=input_key)


def clip_image(n_cond_frames: int = 1, arch: str = "ViT-H-14") -> EmbedderConfig:
    """cond_frames_without_noise -> CLIP image embeddings -> crossattn."""
    image = Part(FrozenOpenCLIPImageEmbedder, {"arch": arch})
    params = {"open_clip_embedding": image, "n_cond_frames": n_cond_frames, "n_copies": 1}
    return EmbedderConfig(Part(FrozenOpenCLIPImagePredictionEmbedder, params), input_key="cond_frames_without_noise")


def vae_frames(input_key: str, n_cond_frames: int, ddconfig: DDConfig | None = None,
               sigma_cond_outdim: int | None = None, zero_sigma: bool = False,
               disable_encoder_autocast: bool = False) -> EmbedderConfig:
    """Frames -> latents of the embedder's own VAE encoder -> concat (or SV4D's cond_view / cond_motion).

    zero_sigma: SV4D's ZeroSampler noise augmentation (sigma 1e-5); sigma_cond_outdim also embeds that sigma.
    """
    encoder = FirstStageConfig(ddconfig=ddconfig or DDConfig(), embed_dim=4, scale_factor=1.0)
    params = {"n_cond_frames": n_cond_frames, "n_copies": 1, "encoder": encoder}
    if disable_encoder_autocast:
        params["disable_encoder_autocast"] = True
    if zero_sigma:
        params["sigma_sampler"] = ZeroSampler()
    if sigma_cond_outdim is not None:
        params["sigma_cond"] = Part(ConcatTimestepEmbedderND, {"outdim": sigma_cond_outdim})
    return EmbedderConfig(Part(VideoPredictionEmbedderWithEncoder, params), input_key=input_key)


def open_clip_text(arch: str = "ViT-bigG-14") -> EmbedderConfig:
    """SDXL's second text encoder: penultimate layer -> crossattn, pooled projection -> vector."""
    params = {"arch": arch, "layer": "penultimate", "always_return_pooled": True, "legacy": False}
    return EmbedderConfig(Part(FrozenOpenCLIPEmbedder2, params), input_key="txt")


def clip_l_text(**sizes) -> EmbedderConfig:
    """SDXL's first text encoder: CLIP ViT-L/14, hidden layer 11 of 12 -> crossattn."""
    layer_idx = sizes.get("num_hidden_layers", 12) - 1
    return EmbedderConfig(Part(FrozenCLIPEmbedder, {"layer": "hidden", "layer_idx": layer_idx, **sizes}),
                          input_key="txt")


# ---------------------------------------------------------------- official conditioners


def sd_2_1(arch: str = "ViT-H-14") -> ConditionerConfig:
    """txt -> OpenCLIP ViT-H-14 penultimate layer -> crossattn 77 x 1024."""
    text = Part(FrozenOpenCLIPEmbedder, {"arch": arch, "layer": "penultimate"})
    return ConditionerConfig([EmbedderConfig(text, input_key="txt")])


SDXL_SIZE_KEYS = ("original_size_as_tuple", "crop_coords_top_left", "target_size_as_tuple")


def sd_xl_base() -> ConditionerConfig:
    """crossattn 768 + 1280 = 2048; vector 1280 (pooled) + 3 x 512 (sizes) = 2816."""
    return ConditionerConfig([clip_l_text(), open_clip_text(), *(scalar(key, 256) for key in SDXL_SIZE_KEYS)])


def sd_xl_refiner() -> ConditionerConfig:
    """crossattn 1280; vector 1280 + 2 x 512 + 256 (aesthetic score) = 2560."""
    sizes = [scalar(key, 256) for key in ("original_size_as_tuple", "crop_coords_top_left", "aesthetic_score")]
    return ConditionerConfig([open_clip_text(), *sizes])


def svd(clip_arch: str = "ViT-H-14", ddconfig: DDConfig | None = None, outdim: int = 256) -> ConditionerConfig:
    """crossattn 1 x 1024; vector fps_id + motion_bucket_id + cond_aug = 768; concat 4 latent channels."""
    return ConditionerConfig([
        clip_image(1, clip_arch), scalar("fps_id", outdim), scalar("motion_bucket_id", outdim),
        vae_frames("cond_frames", 1, ddconfig, disable_encoder_autocast=True), scalar("cond_aug", outdim),
    ])


def sv3d(cameras: bool, clip_arch: str = "ViT-H-14", ddconfig: DDConfig | None = None,
         outdim: int = 256) -> ConditionerConfig:
    """SV3D_u (cameras=False): vector = cond_aug (256). SV3D_p: + polars_rad, azimuths_rad (512 each) = 1280."""
    rows = [clip_image(1, clip_arch), vae_frames("cond_frames", 1, ddconfig, disable_encoder_autocast=True),
            scalar("cond_aug", outdim)]
    if cameras:
        rows += [scalar("polars_rad", 2 * outdim), scalar("azimuths_rad", 2 * outdim)]
    return ConditionerConfig(rows)


def sv4d(n_time: int, n_view: int, clip_arch: str = "ViT-H-14", ddconfig: DDConfig | None = None,
         outdim: int = 256, camera_outdim: int | None = None) -> ConditionerConfig:
    """crossattn: n_time CLIP embeddings; vector: sigma (256) + polar_rad + azimuth_rad (512 each) = 1280;
    concat: the input frames; cond_view: reference views of frame 0; cond_motion: the input frames.
    `camera_outdim` (default 2 x outdim) lets a tiny vector match 4 x model_channels (tiny_sv4d2's camera embedding)."""
    n_frames = n_time * n_view
    camera_outdim = 2 * outdim if camera_outdim is None else camera_outdim
    return ConditionerConfig([
        clip_image(n_time, clip_arch),
        vae_frames("cond_frames", n_frames, ddconfig, sigma_cond_outdim=outdim, zero_sigma=True),
        scalar("polar_rad", camera_outdim), scalar("azimuth_rad", camera_outdim),
        vae_frames("cond_view", n_view, ddconfig, zero_sigma=True),
        vae_frames("cond_motion", n_time, ddconfig, zero_sigma=True),
    ])


# ---------------------------------------------------------------- tiny course conditioners
# Small enough to run on a laptop CPU: the sizes match the tiny networks' context_dim (32) and
# adm_in_channels (tiny_sdxl 32, tiny_svd 24, tiny_sv3d and tiny_sv4d* 40).

TINY_VISION_CFG = {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32}
TINY_OPEN_CLIP_ARCHS = {
    # the golden cases' image tower: 7 x 7 patches of 32 pixels, 32-d embeddings
    "minigen-tiny-vit": {"embed_dim": 32, "vision_cfg": TINY_VISION_CFG,
                         "text_cfg": {"context_length": 77, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}},
    # text towers read CLIP's real tokenizer, so they keep its 49408-token vocabulary
    "minigen-tiny-text-h": {"embed_dim": 32, "vision_cfg": TINY_VISION_CFG,
                            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                                         "layers": 2}},
    "minigen-tiny-text-bigg": {"embed_dim": 8, "vision_cfg": TINY_VISION_CFG,
                               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2,
                                            "layers": 2}},
}
TINY_CLIP_L = {"hidden_size": 16, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


def tiny(official: ConditionerConfig) -> ConditionerConfig:
    """Register the tiny open_clip architectures (the configs name them) and return the config."""
    for name, config in TINY_OPEN_CLIP_ARCHS.items():
        register_open_clip_arch(name, config)
    return official


def tiny_sd() -> ConditionerConfig:
    """SD 2.1's conditioner with a 2-layer text tower: crossattn 77 x 32."""
    return tiny(sd_2_1("minigen-tiny-text-h"))


def tiny_sdxl() -> ConditionerConfig:
    """crossattn 16 + 16 = 32; vector 8 (pooled) + 3 x 2 x 4 (sizes) = 32."""
    return tiny(ConditionerConfig([clip_l_text(**TINY_CLIP_L), open_clip_text("minigen-tiny-text-bigg"),
                                   *(scalar(key, 4) for key in SDXL_SIZE_KEYS)]))


def tiny_svd() -> ConditionerConfig:
    """SVD's conditioner with the tiny image tower and VAE: vector 3 x 8 = 24."""
    return tiny(svd("minigen-tiny-vit", replace(TINY_DDCONFIG), outdim=8))


def tiny_sv3d() -> ConditionerConfig:
    """SV3D_p's conditioner with the tiny image tower and VAE: vector 8 + 2 x 16 = 40."""
    return tiny(sv3d(True, "minigen-tiny-vit", replace(TINY_DDCONFIG), outdim=8))


def tiny_sv4d() -> ConditionerConfig:
    """SV4D's 8 views (the script subsamples 8 of SV3D's 21) with 3 time frames instead of 5: vector 40."""
    return tiny(sv4d(3, 8, "minigen-tiny-vit", replace(TINY_DDCONFIG), outdim=8))


def tiny_sv4d2() -> ConditionerConfig:
    """SV4D 2.0's 4 views with 3 time frames instead of 12; vector 8 + 2 x 60 = 128 = 4 x model_channels, as
    tiny_sv4d2's use_camera_emb network needs."""
    return tiny(sv4d(3, 4, "minigen-tiny-vit", replace(TINY_DDCONFIG), outdim=8, camera_outdim=60))
