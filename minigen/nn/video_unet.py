"""The video UNet of SVD, SVD-XT and SV3D: the image UNet with time mixing after every layer.

Same module tree as `UNetModel`, but each ResBlock is a `VideoResBlock` and each transformer a
`SpatialVideoTransformer` (see `video.py`). Frames travel as a batch `(b t) c h w` with
`num_video_frames` = t. Taught in notebook 04; corresponds to `VideoUNet` in the reference's
`sgm/modules/diffusionmodules/video_model.py`.
"""

from dataclasses import dataclass

import torch
from torch import nn

from .unet import UNetBackbone, UNetLayers
from .video import SpatialVideoTransformer, VideoResBlock, check_frames


@dataclass
class VideoLayers(UNetLayers):
    """The video versions of the UNet's layers, with their time-mixing settings."""

    merge_strategy: str = "fixed"
    merge_factor: float = 0.5
    video_kernel_size: int | list[int] = 3
    extra_ff_mix_layer: bool = False
    use_spatial_context: bool = False
    time_context_dim: int | None = None
    disable_temporal_crossattention: bool = False
    max_ddpm_temb_period: int = 10000

    def resblock(self, channels: int, out_channels: int | None = None, up: bool = False,
                 down: bool = False) -> nn.Module:
        return VideoResBlock(channels, self.time_embed_dim, self.dropout,
                             video_kernel_size=self.video_kernel_size,
                             merge_strategy=self.merge_strategy, merge_factor=self.merge_factor,
                             out_channels=out_channels, use_scale_shift_norm=self.use_scale_shift_norm,
                             dims=self.dims, use_checkpoint=self.use_checkpoint, up=up, down=down)

    def transformer(self, channels: int, num_heads: int, dim_head: int, depth: int,
                    disable_self_attn: bool = False) -> nn.Module:
        return SpatialVideoTransformer(
            channels, num_heads, dim_head, depth=depth, dropout=self.dropout,
            use_linear=self.use_linear_in_transformer, context_dim=self.context_dim,
            use_spatial_context=self.use_spatial_context, merge_strategy=self.merge_strategy,
            merge_factor=self.merge_factor, time_context_dim=self.time_context_dim,
            ff_in=self.extra_ff_mix_layer, checkpoint=self.use_checkpoint,
            attn_mode=self.spatial_transformer_attn_type, disable_self_attn=disable_self_attn,
            disable_temporal_crossattention=self.disable_temporal_crossattention,
            max_time_embed_period=self.max_ddpm_temb_period,
        )


class VideoUNet(UNetBackbone):
    """UNet over video frames `(b t) c h w`, conditioned on context, the vector y and the frame count.

    forward(x, timesteps `(b t)`, context `(b t) m context_dim`, y `(b t) adm_in_channels`,
    num_video_frames=t, image_only_indicator `b t`) -> `(b t) out_channels h w`.
    """

    def __init__(
        self,
        in_channels: int,  # SVD: 8 = 4 noisy latent channels + 4 channels of the encoded conditioning image
        model_channels: int,
        out_channels: int,
        num_res_blocks: int,
        attention_resolutions,
        dropout: float = 0.0,
        channel_mult=(1, 2, 4, 8),
        conv_resample: bool = True,
        dims: int = 2,
        num_classes: int | str | None = None,
        use_checkpoint: bool = False,
        num_heads: int = -1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,  # accepted for old configs; the reference ignores it too
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        transformer_depth: int | list[int] = 1,
        transformer_depth_middle: int | None = None,
        context_dim: int | None = None,
        time_downup: bool = False,
        time_context_dim: int | None = None,
        extra_ff_mix_layer: bool = False,  # a feed-forward at the start of each temporal transformer block
        use_spatial_context: bool = False,  # temporal attention attends to the first frame's context
        merge_strategy: str = "fixed",  # how spatial and temporal results blend (see AlphaBlender)
        merge_factor: float = 0.5,
        spatial_transformer_attn_type: str = "softmax",
        video_kernel_size: int | list[int] = 3,  # kernel of the temporal ResBlocks, e.g. [3, 1, 1]
        use_linear_in_transformer: bool = False,
        adm_in_channels: int | None = None,
        disable_temporal_crossattention: bool = False,
        max_ddpm_temb_period: int = 10000,  # max_period of the frame-index embedding
    ):
        if context_dim is None:
            raise ValueError("VideoUNet needs context_dim: its transformers always cross-attend (SVD: 1024).")
        layers = VideoLayers(
            time_embed_dim=4 * model_channels, dropout=dropout, dims=dims, use_checkpoint=use_checkpoint,
            use_scale_shift_norm=use_scale_shift_norm, conv_resample=conv_resample,
            resblock_updown=resblock_updown, context_dim=context_dim,
            use_linear_in_transformer=use_linear_in_transformer,
            spatial_transformer_attn_type=spatial_transformer_attn_type, merge_strategy=merge_strategy,
            merge_factor=merge_factor, video_kernel_size=video_kernel_size,
            extra_ff_mix_layer=extra_ff_mix_layer,
            use_spatial_context=use_spatial_context, time_context_dim=time_context_dim,
            disable_temporal_crossattention=disable_temporal_crossattention,
            max_ddpm_temb_period=max_ddpm_temb_period, time_downup=time_downup,
        )
        super().__init__(
            layers, in_channels, model_channels, out_channels, num_res_blocks, attention_resolutions,
            channel_mult, num_classes, adm_in_channels, num_heads, num_head_channels, transformer_depth,
            transformer_depth_middle=transformer_depth_middle,
        )

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None,
                y: torch.Tensor | None = None, time_context: torch.Tensor | None = None,
                num_video_frames: int | None = None,
                image_only_indicator: torch.Tensor | None = None) -> torch.Tensor:
        self.check_inputs(x, timesteps, context, y)
        check_frames(x.shape[0], num_video_frames, "VideoUNet")
        return self.run_blocks(x, self.embedding(timesteps, y, x.dtype), context=context,
                               image_only_indicator=image_only_indicator, time_context=time_context,
                               num_video_frames=num_video_frames)
