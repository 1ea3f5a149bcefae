"""Network presets: the denoising UNet (`model.diffusion_model`) of every official model, as data.

`UNetConfig` and `VideoUNetConfig` hold the official constructor arguments (the configs'
`network_config.params`, one field each, same names and defaults as the constructor, whose comments say
what each does), plus the configs' keys that change nothing in minigen (`inert`); `build()` returns the
minigen module. The tiny_* presets follow the same code paths with channels small enough to train on a
laptop CPU. Taught in notebooks 04 and 05. Reference: `network_config` in configs/inference/*.yaml and
scripts/sampling/configs/*.yaml.
"""

from dataclasses import dataclass, field, fields, replace

from minigen.nn.unet import UNetModel
from minigen.nn.video_unet import VideoUNet


def inert(default, reason: str):
    """A dataclass field for a reference key that changes nothing in minigen's network.

    The config accepts it, so that a reference config's values load as they are; `build()` leaves it out,
    so the module's constructor lists only arguments that act. `reason` says why the key does nothing.
    """
    return field(default=default, metadata={"inert": reason})


def constructor_arguments(config) -> dict:
    """The config's fields as keyword arguments of its network: all of them but the inert ones."""
    return {item.name: getattr(config, item.name) for item in fields(config) if "inert" not in item.metadata}


@dataclass
class UNetCommonConfig:
    """The keyword arguments every UNet of the reference starts with, in their order."""

    in_channels: int
    model_channels: int
    out_channels: int
    num_res_blocks: int | tuple
    attention_resolutions: tuple
    dropout: float = 0.0
    channel_mult: tuple = (1, 2, 4, 8)
    conv_resample: bool = True
    dims: int = 2
    num_classes: int | str | None = None
    use_checkpoint: bool = False
    num_heads: int = -1
    num_head_channels: int = 64
    use_scale_shift_norm: bool = False
    resblock_updown: bool = False
    num_heads_upsample: int = inert(-1, "the reference ignores it too")


@dataclass
class UNetConfig(UNetCommonConfig):
    """`UNetModel`'s keyword arguments (SD 2.1, SDXL)."""

    transformer_depth: int | tuple = 1
    context_dim: int | tuple | None = None
    disable_self_attentions: tuple | None = None
    num_attention_blocks: tuple | None = None
    disable_middle_self_attn: bool = False
    disable_middle_transformer: bool = False
    use_linear_in_transformer: bool = False
    spatial_transformer_attn_type: str = "softmax"
    adm_in_channels: int | None = None

    def build(self) -> UNetModel:
        return UNetModel(**constructor_arguments(self))


@dataclass
class VideoUNetConfig(UNetCommonConfig):
    """`VideoUNet`'s keyword arguments (SVD, SVD-XT, SV3D)."""

    transformer_depth: int | tuple = 1
    transformer_depth_middle: int | None = None
    context_dim: int = 1024
    time_downup: bool = False
    time_context_dim: int | None = None
    extra_ff_mix_layer: bool = False
    use_spatial_context: bool = False
    merge_strategy: str = "fixed"
    merge_factor: float = 0.5
    spatial_transformer_attn_type: str = "softmax"
    video_kernel_size: int | tuple = 3
    use_linear_in_transformer: bool = False
    adm_in_channels: int | None = None
    disable_temporal_crossattention: bool = False
    max_ddpm_temb_period: int = 10000

    def build(self) -> VideoUNet:
        return VideoUNet(**constructor_arguments(self))


# ---- official networks (values from the configs' network_config) ----

def sd_2_1() -> UNetConfig:
    """SD 2.1 (512 and 768 px): text tokens of 1024 numbers as context, no vector y."""
    return UNetConfig(
        in_channels=4, out_channels=4, model_channels=320, attention_resolutions=(4, 2, 1), num_res_blocks=2,
        channel_mult=(1, 2, 4, 4), num_head_channels=64, use_linear_in_transformer=True, transformer_depth=1,
        context_dim=1024, use_checkpoint=True,
    )


def sd_xl_base() -> UNetConfig:
    """SDXL base (and Turbo, the same architecture): y = pooled text (1280) + 3 size embeddings (3 x 512)."""
    return UNetConfig(
        adm_in_channels=2816, num_classes="sequential", in_channels=4, out_channels=4, model_channels=320,
        attention_resolutions=(4, 2), num_res_blocks=2, channel_mult=(1, 2, 4), num_head_channels=64,
        use_linear_in_transformer=True,
        transformer_depth=(1, 2, 10),  # the first entry is unused: attention starts at ds=2
        context_dim=2048, spatial_transformer_attn_type="softmax-xformers", use_checkpoint=True,
    )


def sd_xl_refiner() -> UNetConfig:
    """SDXL refiner: y = pooled text (1280) + original size and crop (2 x 512) + aesthetic score (256)."""
    return UNetConfig(
        adm_in_channels=2560, num_classes="sequential", in_channels=4, out_channels=4, model_channels=384,
        attention_resolutions=(4, 2), num_res_blocks=2, channel_mult=(1, 2, 4, 4), num_head_channels=64,
        use_linear_in_transformer=True, transformer_depth=4, context_dim=(1280, 1280, 1280, 1280),
        spatial_transformer_attn_type="softmax-xformers", use_checkpoint=True,
    )


def svd(adm_in_channels: int = 768) -> VideoUNetConfig:
    """SVD's network (y = fps_id + motion_bucket_id + cond_aug, 3 x 256); SV3D changes only the size of y."""
    return VideoUNetConfig(
        adm_in_channels=adm_in_channels, num_classes="sequential", in_channels=8, out_channels=4,
        model_channels=320, attention_resolutions=(4, 2, 1), num_res_blocks=2, channel_mult=(1, 2, 4, 4),
        num_head_channels=64, use_linear_in_transformer=True, transformer_depth=1, context_dim=1024,
        spatial_transformer_attn_type="softmax-xformers", extra_ff_mix_layer=True, use_spatial_context=True,
        merge_strategy="learned_with_images", video_kernel_size=(3, 1, 1), use_checkpoint=True,
    )


def sv3d_u() -> VideoUNetConfig:
    """SV3D_u: y = the cond_aug embedding (256)."""
    return svd(adm_in_channels=256)


def sv3d_p() -> VideoUNetConfig:
    """SV3D_p: y = cond_aug (256) + polar (512) + azimuth (512) embeddings."""
    return svd(adm_in_channels=1280)


# ---- tiny course networks: same code paths, 32-64 channels, one ResBlock per level ----

def tiny_sd() -> UNetConfig:
    """SD 2.1's network with 32-d text tokens."""
    return replace(sd_2_1(), model_channels=32, attention_resolutions=(2, 1), num_res_blocks=1,
                   channel_mult=(1, 2), num_head_channels=16, context_dim=32, use_checkpoint=False)


def tiny_sdxl() -> UNetConfig:
    """SDXL's network with 32-d text tokens and a 32-number y."""
    return replace(sd_xl_base(), adm_in_channels=32, model_channels=32, attention_resolutions=(2,),
                   num_res_blocks=1, channel_mult=(1, 2), num_head_channels=16, transformer_depth=(1, 2),
                   context_dim=32, spatial_transformer_attn_type="softmax", use_checkpoint=False)


def tiny_svd(adm_in_channels: int = 24) -> VideoUNetConfig:
    """y: fps_id, motion_bucket_id and cond_aug embedded with 8 numbers each."""
    return replace(svd(adm_in_channels), model_channels=32, attention_resolutions=(2, 1), num_res_blocks=1,
                   channel_mult=(1, 2), num_head_channels=16, context_dim=32,
                   spatial_transformer_attn_type="softmax", use_checkpoint=False)


def tiny_sv3d() -> VideoUNetConfig:
    """y: cond_aug (8) + polar (16) + azimuth (16) embeddings."""
    return tiny_svd(adm_in_channels=40)
