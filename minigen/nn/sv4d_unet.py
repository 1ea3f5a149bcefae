"""The UNet of SV4D and SV4D 2.0: a video UNet whose transformers attend across views and across time.

Same module tree as the image UNet, with `ResBlockWithTime` for every ResBlock and
`MultiviewTransformer` for every transformer (see `multiview.py`). The batch holds b samples x t time
frames x v views ordered `(b t v)`; `context` has one CLIP token per time frame and `cond_view` the
latents of the v reference views. Taught in notebook 04; corresponds to `SpatialUNetModelWithTime` in
the reference's `sgm/modules/diffusionmodules/video_model.py`.
"""

from functools import partial

import torch

from .multiview import MultiviewTransformer, ResBlockWithTime
from .resnet import ResBlock
from .unet import UNetBackbone
from .video import check_frames


class SpatialUNetModelWithTime(UNetBackbone):
    """UNet over t time frames x v views of b samples, `(b t v) c h w`.

    forward(x `(b t v) in_channels h w`, timesteps `(b t v)`, context `b t context_dim`,
    y `(b t v) adm_in_channels`, cond_view `(b v) c h' w'`, cond_motion `(b t) c h' w'`,
    num_video_frames (default t v), image_only_indicator `b (t v)`) -> `(b t v) out_channels h w`.
    As in the reference, cond_motion is checked but not read (the motion attention attends to
    cond_view), and image_only_indicator only matters with time_mix_legacy. This is the reference's variant
    that every SV4D config uses (use_spatial_transformer and use_motion_attention on); the configs' keys that
    change nothing here are taken and dropped by its preset (`minigen.presets.sv4d.SpatialUNetConfig`).
    """

    def __init__(
        self,
        in_channels: int,  # 8 = 4 noisy latent channels + 4 channels of the encoded input frame
        # as in UNetModel; transformer_depth_middle: the middle transformer's depth (None: the innermost level's)
        model_channels: int, out_channels: int, num_res_blocks: int, attention_resolutions,
        dropout: float = 0.0, channel_mult=(1, 2, 4, 8), conv_resample: bool = True, dims: int = 2,
        num_classes: int | str | None = None, use_checkpoint: bool = False, num_heads: int = -1,
        num_head_channels: int = 64, use_scale_shift_norm: bool = False, resblock_updown: bool = False,
        transformer_depth: int | list[int] = 1, transformer_depth_middle: int | None = None,
        context_dim: int = 1024,  # one CLIP image token per time frame
        time_downup: bool = False,
        time_context_dim: int | None = None,  # view attention's context without use_spatial_context
        motion_context_dim: int = 4,  # channels of cond_view, which the motion attention reads (latents: 4)
        extra_ff_mix_layer: bool = False,  # no effect, as in VideoUNet: the view and motion blocks always have it
        use_spatial_context: bool = True,  # view attention sized for context (False: for time_context_dim)
        time_block_merge_strategy: str = "fixed",  # how spatial and temporal results blend (AlphaBlender)
        time_block_merge_factor: float = 0.5,
        motion_block_merge_factor: float = 0.5,  # initial weight of the motion blend (separate factor)
        spatial_transformer_attn_type: str = "softmax",
        time_kernel_size: int | list[int] = 3,  # kernel of the temporal ResBlocks, e.g. [3, 1, 1]
        use_linear_in_transformer: bool = False,
        adm_in_channels: int | None = None,
        use_temporal_resblock: bool = True,  # False: plain ResBlocks, no temporal convolution
        disable_temporal_crossattention: bool = False,
        time_mix_legacy: bool = True,  # older checkpoints' blend layout and formula (multiview.py)
        max_ddpm_temb_period: int = 10000,  # max_period of the view and frame index embeddings
        use_camera_emb: bool = False,  # SV4D 2.0: view embedding from the embedding vector (camera angles)
        use_3d_attention: bool = False,  # SV4D 2.0 (4 views): the view attention's layout, see multiview.py
        separate_motion_merge_factor: bool = False,  # SV4D 2.0: motion attention has its own AlphaBlender
    ):
        check_arguments(context_dim, use_camera_emb, adm_in_channels, model_channels)
        per_image = dict(emb_channels=4 * model_channels, dropout=dropout, use_scale_shift_norm=use_scale_shift_norm,
                         dims=dims, use_checkpoint=use_checkpoint)
        resblock = partial(ResBlock, **per_image)
        if use_temporal_resblock:
            resblock = partial(ResBlockWithTime, time_kernel_size=time_kernel_size, time_mix_legacy=time_mix_legacy,
                               merge_strategy=time_block_merge_strategy, merge_factor=time_block_merge_factor,
                               **per_image)
        transformer = partial(
            MultiviewTransformer, dropout=dropout, use_linear=use_linear_in_transformer, context_dim=context_dim,
            use_spatial_context=use_spatial_context, use_camera_emb=use_camera_emb, use_3d_attention=use_3d_attention,
            separate_motion_merge_factor=separate_motion_merge_factor, adm_in_channels=adm_in_channels,
            merge_strategy=time_block_merge_strategy, merge_factor=time_block_merge_factor,
            merge_factor_motion=motion_block_merge_factor, time_context_dim=time_context_dim,
            motion_context_dim=motion_context_dim, ff_in=extra_ff_mix_layer, checkpoint=use_checkpoint,
            attn_mode=spatial_transformer_attn_type, disable_temporal_crossattention=disable_temporal_crossattention,
            time_mix_legacy=time_mix_legacy, max_time_embed_period=max_ddpm_temb_period,
        )
        super().__init__(
            resblock=resblock, transformer=transformer, in_channels=in_channels, model_channels=model_channels,
            out_channels=out_channels, num_res_blocks=num_res_blocks, attention_resolutions=attention_resolutions,
            channel_mult=channel_mult, num_heads=num_heads, num_head_channels=num_head_channels,
            transformer_depth=transformer_depth, transformer_depth_middle=transformer_depth_middle,
            num_classes=num_classes, adm_in_channels=adm_in_channels, context_dim=context_dim, dims=dims,
            conv_resample=conv_resample, resblock_updown=resblock_updown, time_downup=time_downup,
        )
        self.use_camera_emb = use_camera_emb  # SV4D 2.0's networks have it, SV4D's not: the pipelines check

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None,
                y: torch.Tensor | None = None, cond_view: torch.Tensor | None = None,
                cond_motion: torch.Tensor | None = None, num_video_frames: int | None = None,
                image_only_indicator: torch.Tensor | None = None) -> torch.Tensor:
        """The network's output for `x` `(b t v) c h w` (t times x v views, time major), as UNetModel.forward
        with the multi-view inputs: `context` `b t d` and `cond_view` `(b v) c h w`, read by the multi-view
        transformers, and `cond_motion` `(b t) c h w`, checked but not read (see the class docstring);
        num_video_frames defaults to t x v."""
        frames, views = self.check_multiview_inputs(x, context, cond_view, cond_motion)
        num_video_frames = num_video_frames or frames * views
        self.check_inputs(x, timesteps, context, y)
        check_frames(x.shape[0], num_video_frames, type(self).__name__)
        # the embedding vector also feeds the view embedding when use_camera_emb (see MultiviewTransformer)
        return self.run_blocks(x, self.embedding(timesteps, y, x.dtype), context=context, cond_view=cond_view,
                               num_video_frames=num_video_frames, image_only_indicator=image_only_indicator)

    def check_multiview_inputs(self, x, context, cond_view, cond_motion) -> tuple[int, int]:
        """Check the multi-view conditioning against the batch; return (t, v): time frames and views."""
        name = type(self).__name__
        expected = {"context": (context, 3, f"(b, t, {self.context_dim}): one CLIP image token per frame"),
                    "cond_view": (cond_view, 4, "((b v), c, h, w): the latents of the v reference views"),
                    "cond_motion": (cond_motion, 4, "((b t), c, h, w): the latents of the t input frames")}
        for key, (tensor, ndim, shape) in expected.items():
            if tensor is None or tensor.ndim != ndim:
                got = None if tensor is None else tuple(tensor.shape)
                raise ValueError(f"{name} needs {key} of shape {shape}; got {got}.")
        samples, frames = context.shape[:2]
        views, leftover = divmod(cond_view.shape[0], samples)
        if leftover or x.shape[0] != samples * frames * views:
            raise ValueError(
                f"{name}: the batch of {x.shape[0]} images must be b x t x v, ordered (b t v), with "
                f"b={samples} and t={frames} from context (b, t, d) and v from the {cond_view.shape[0]} rows "
                f"of cond_view (b v): pass {samples} x {frames} x v images, whole frames x views per sample."
            )
        if cond_motion.shape[0] != samples * frames:
            raise ValueError(f"{name}: cond_motion has {cond_motion.shape[0]} rows, expected b x t = "
                             f"{samples * frames} (one latent per input frame).")
        return frames, views


def check_arguments(context_dim: int | None, use_camera_emb: bool, adm_in_channels: int | None,
                    model_channels: int) -> None:
    """The two settings SpatialUNetModelWithTime cannot build without, checked with a message that says why."""
    if context_dim is None:
        raise ValueError("SpatialUNetModelWithTime needs context_dim, the size of the CLIP image token "
                         "(1024).")
    if use_camera_emb and adm_in_channels != 4 * model_channels:
        raise ValueError(f"use_camera_emb embeds the UNet's embedding vector (4 x model_channels = "
                         f"{4 * model_channels} numbers), so adm_in_channels must be "
                         f"{4 * model_channels}, got {adm_in_channels}.")
