"""The video UNet of SVD, SVD-XT and SV3D: the image UNet with time mixing after every layer.

Same module tree as `UNetModel`, but each ResBlock is a `VideoResBlock` and each transformer a
`SpatialVideoTransformer` (see `video.py`). Frames travel as a batch `(b t) c h w` with
`num_video_frames` = t. Taught in notebook 04; corresponds to `VideoUNet` in the reference's
`sgm/modules/diffusionmodules/video_model.py`.
"""

from functools import partial

import torch

from .unet import UNetBackbone
from .video import SpatialVideoTransformer, VideoResBlock, check_frames


class VideoUNet(UNetBackbone):
    """UNet over video frames `(b t) c h w`, conditioned on context, the vector y and the frame count.

    forward(x, timesteps `(b t)`, context `(b t) m context_dim`, y `(b t) adm_in_channels`,
    num_video_frames=t, image_only_indicator `b t`) -> `(b t) out_channels h w`.
    """

    def __init__(
        self,
        in_channels: int,  # SVD: 8 = 4 noisy latent channels + 4 channels of the encoded conditioning image
        # as in UNetModel; transformer_depth_middle: the middle transformer's depth (None: the innermost level's)
        model_channels: int, out_channels: int, num_res_blocks: int, attention_resolutions,
        dropout: float = 0.0, channel_mult=(1, 2, 4, 8), conv_resample: bool = True, dims: int = 2,
        num_classes: int | str | None = None, use_checkpoint: bool = False, num_heads: int = -1,
        num_head_channels: int = 64, use_scale_shift_norm: bool = False, resblock_updown: bool = False,
        transformer_depth: int | list[int] = 1, transformer_depth_middle: int | None = None,
        context_dim: int = 1024,  # the transformers always cross-attend (SVD: one 1024-d CLIP image token)
        time_downup: bool = False,  # with dims=3, also halve / double the number of frames
        time_context_dim: int | None = None,  # what the temporal blocks attend to without use_spatial_context
        # quirk: the temporal blocks always get their feed-forward (SpatialVideoTransformer gives them inner_dim,
        # as the reference does), so the configs' extra_ff_mix_layer=True and False build the same network
        extra_ff_mix_layer: bool = False,
        use_spatial_context: bool = False,  # temporal attention attends to the first frame's context
        merge_strategy: str = "fixed",  # how spatial and temporal results blend (see AlphaBlender)
        merge_factor: float = 0.5,
        spatial_transformer_attn_type: str = "softmax",
        video_kernel_size: int | list[int] = 3,  # kernel of the temporal ResBlocks, e.g. [3, 1, 1]
        use_linear_in_transformer: bool = False,
        adm_in_channels: int | None = None,
        disable_temporal_crossattention: bool = False,  # temporal blocks without their second attention
        max_ddpm_temb_period: int = 10000,  # max_period of the frame-index embedding
    ):
        if context_dim is None:
            raise ValueError("VideoUNet needs context_dim: its transformers always cross-attend (SVD: 1024).")
        resblock = partial(VideoResBlock, emb_channels=4 * model_channels, dropout=dropout,
                           video_kernel_size=video_kernel_size, merge_strategy=merge_strategy,
                           merge_factor=merge_factor, use_scale_shift_norm=use_scale_shift_norm, dims=dims,
                           use_checkpoint=use_checkpoint)
        transformer = partial(
            SpatialVideoTransformer, dropout=dropout, use_linear=use_linear_in_transformer, context_dim=context_dim,
            use_spatial_context=use_spatial_context, merge_strategy=merge_strategy, merge_factor=merge_factor,
            time_context_dim=time_context_dim, ff_in=extra_ff_mix_layer, checkpoint=use_checkpoint,
            attn_mode=spatial_transformer_attn_type, disable_temporal_crossattention=disable_temporal_crossattention,
            max_time_embed_period=max_ddpm_temb_period,
        )
        super().__init__(
            resblock=resblock, transformer=transformer, in_channels=in_channels, model_channels=model_channels,
            out_channels=out_channels, num_res_blocks=num_res_blocks, attention_resolutions=attention_resolutions,
            channel_mult=channel_mult, num_heads=num_heads, num_head_channels=num_head_channels,
            transformer_depth=transformer_depth, transformer_depth_middle=transformer_depth_middle,
            num_classes=num_classes, adm_in_channels=adm_in_channels, context_dim=context_dim, dims=dims,
            conv_resample=conv_resample, resblock_updown=resblock_updown, time_downup=time_downup,
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
