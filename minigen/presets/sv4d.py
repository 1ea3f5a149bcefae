"""SV4D presets: the multi-view video UNet (`model.diffusion_model`) of SV4D and SV4D 2.0, as data.

`SpatialUNetConfig` holds `SpatialUNetModelWithTime`'s keyword arguments (the configs'
`network_config.params`, one field each, same names and defaults as the constructor, whose comments say
what each does), plus the configs' keys that change nothing in minigen (`inert`); `build()` returns the
minigen module. tiny_sv4d and tiny_sv4d2 follow the same code paths with 32-64 channels.
Taught in notebook 04. Reference: `network_config` in scripts/sampling/configs/sv4d*.yaml.
"""

from dataclasses import dataclass, replace

from minigen.nn.sv4d_unet import SpatialUNetModelWithTime

from .networks import UNetCommonConfig, constructor_arguments, inert


@dataclass
class SpatialUNetConfig(UNetCommonConfig):
    """`SpatialUNetModelWithTime`'s keyword arguments (SV4D, SV4D 2.0), then the configs' inert keys."""

    transformer_depth: int | tuple = 1
    transformer_depth_middle: int | None = None
    context_dim: int = 1024
    time_downup: bool = False
    time_context_dim: int | None = None
    motion_context_dim: int = 4
    extra_ff_mix_layer: bool = False
    use_spatial_context: bool = True
    time_block_merge_strategy: str = "fixed"
    time_block_merge_factor: float = 0.5
    motion_block_merge_factor: float = 0.5
    spatial_transformer_attn_type: str = "softmax"
    time_kernel_size: int | tuple = 3
    use_linear_in_transformer: bool = False
    adm_in_channels: int | None = None
    use_temporal_resblock: bool = True
    disable_temporal_crossattention: bool = False
    time_mix_legacy: bool = True
    max_ddpm_temb_period: int = 10000
    use_camera_emb: bool = False
    use_3d_attention: bool = False
    separate_motion_merge_factor: bool = False

    use_new_attention_order: bool = inert(False, "read only by the attention blocks of UNets without transformers")
    view_context_dim: int | None = inert(None, "the reference never reads it")
    view_block_merge_factor: float = inert(0.5, "the reference never reads it")
    legacy: bool = inert(True, "changes head sizes only in UNets without transformers")
    # quirk: the official configs set replicate_time_mix_bug, but the reference switched its branch off (`if False`)
    replicate_time_mix_bug: bool = inert(False, "the reference's branch for it is switched off")
    # the reference's other variants were never released with weights: build() refuses them
    use_spatial_transformer: bool = inert(True, "True in every SV4D config, the one variant minigen implements")
    use_motion_attention: bool = inert(True, "True in every SV4D config, the one variant minigen implements")

    def build(self) -> SpatialUNetModelWithTime:
        if not (self.use_spatial_transformer and self.use_motion_attention):
            raise ValueError("SpatialUNetModelWithTime is implemented for use_spatial_transformer=True and "
                             "use_motion_attention=True, the settings of every SV4D / SV4D 2.0 config; the "
                             "reference's other variants were never released with weights.")
        return SpatialUNetModelWithTime(**constructor_arguments(self))


# ---- official networks (values from scripts/sampling/configs/sv4d*.yaml) ----

def sv4d() -> SpatialUNetConfig:
    """5 time frames x 8 views; y = cond_frames' noise level (256) + polar (512) + azimuth (512) = 1280."""
    return SpatialUNetConfig(
        adm_in_channels=1280, attention_resolutions=(4, 2, 1), channel_mult=(1, 2, 4, 4), context_dim=1024,
        motion_context_dim=4, extra_ff_mix_layer=True, in_channels=8, legacy=False, model_channels=320,
        num_classes="sequential", num_head_channels=64, num_res_blocks=2, out_channels=4,
        replicate_time_mix_bug=True, spatial_transformer_attn_type="softmax-xformers",
        time_block_merge_factor=0.0, time_block_merge_strategy="learned_with_images",
        time_kernel_size=(3, 1, 1), time_mix_legacy=False, transformer_depth=1, use_checkpoint=False,
        use_linear_in_transformer=True, use_spatial_context=True, use_spatial_transformer=True,
        use_motion_attention=True,
    )


def sv4d2(use_3d_attention: bool = True) -> SpatialUNetConfig:
    """12 frames x 4 views with 3D attention; the 8-view model (5 x 8) turns it off."""
    return replace(sv4d(), separate_motion_merge_factor=True, use_3d_attention=use_3d_attention,
                   use_camera_emb=True)


def sv4d2_8views() -> SpatialUNetConfig:
    """SV4D 2.0's 8-view model: 5 frames x 8 views, without the 3D attention layout."""
    return sv4d2(use_3d_attention=False)


# ---- tiny course networks: same code paths, 32-64 channels, one ResBlock per level ----

def tiny_sv4d() -> SpatialUNetConfig:
    """y: noise level (8) + polar (16) + azimuth (16) embeddings, as tiny_sv3d."""
    return replace(sv4d(), adm_in_channels=40, model_channels=32, attention_resolutions=(2, 1),
                   num_res_blocks=1, channel_mult=(1, 2), num_head_channels=16, context_dim=32,
                   spatial_transformer_attn_type="softmax")


def tiny_sv4d2() -> SpatialUNetConfig:
    """use_camera_emb embeds the UNet's own embedding vector, so y has 4 x model_channels = 128 numbers."""
    return replace(tiny_sv4d(), adm_in_channels=128, separate_motion_merge_factor=True,
                   use_3d_attention=True, use_camera_emb=True)
