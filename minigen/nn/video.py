"""Time mixing: how Stable Video Diffusion turns an image UNet into a video UNet.

Each spatial layer (ResBlock, SpatialTransformer) is followed by a temporal twin that mixes the
`num_video_frames` frames of each video, and an AlphaBlender merges the two outputs:
`alpha * spatial + (1 - alpha) * temporal`. Video tensors are `(b t) c h w`. Taught in notebook 04;
corresponds to `sgm/modules/video_attention.py`, `VideoResBlock` in
`sgm/modules/diffusionmodules/video_model.py` and `AlphaBlender` in `.../diffusionmodules/util.py`.
"""

import torch
from einops import rearrange, repeat
from torch import nn

from ..embeddings import timestep_embedding
from .attention import check_attention_type
from .resnet import ResBlock, maybe_checkpoint
from .transformer import CrossAttention, FeedForward, SpatialTransformer


class AlphaBlender(nn.Module):
    """Blend a spatial and a temporal result: `alpha * x_spatial + (1 - alpha) * x_temporal`.

    merge_strategy:
      - "fixed": alpha is the constant `alpha` (a buffer, used as is),
      - "learned": alpha = sigmoid(mix_factor), mix_factor a parameter initialised to `alpha`,
      - "learned_with_images": as "learned", but alpha = 1 (spatial only) for the frames that
        `image_only_indicator` (b t) marks as still images.
    `rearrange_pattern` shapes the per-frame alpha `b t` like the tensors being blended.
    """

    strategies = ("learned", "fixed", "learned_with_images")

    def __init__(self, alpha: float, merge_strategy: str = "learned_with_images",
                 rearrange_pattern: str = "b t -> (b t) 1 1"):
        super().__init__()
        if merge_strategy not in self.strategies:
            raise ValueError(f"Unknown merge_strategy {merge_strategy!r}; expected one of {self.strategies}.")
        self.merge_strategy = merge_strategy
        self.rearrange_pattern = rearrange_pattern
        if merge_strategy == "fixed":
            self.register_buffer("mix_factor", torch.tensor([float(alpha)]))
        else:
            self.mix_factor = nn.Parameter(torch.tensor([float(alpha)]))

    def get_alpha(self, image_only_indicator: torch.Tensor | None) -> torch.Tensor:
        if self.merge_strategy == "fixed":
            return self.mix_factor  # quirk: no sigmoid here, the fixed value is the weight itself
        alpha = torch.sigmoid(self.mix_factor)
        if self.merge_strategy == "learned":
            return alpha
        if image_only_indicator is None:
            raise ValueError("AlphaBlender with merge_strategy='learned_with_images' needs "
                             "image_only_indicator (b t): pass zeros for videos, ones for still images.")
        alpha = torch.where(image_only_indicator.bool(), torch.ones_like(alpha), alpha)  # b t
        return rearrange(alpha, self.rearrange_pattern)

    def forward(self, x_spatial: torch.Tensor, x_temporal: torch.Tensor,
                image_only_indicator: torch.Tensor | None = None) -> torch.Tensor:
        alpha = self.get_alpha(image_only_indicator).to(x_spatial.dtype)
        return alpha * x_spatial + (1.0 - alpha) * x_temporal


def check_frames(batch: int, num_video_frames: int | None, layer: str) -> None:
    """Video layers see `(b t)` frames: the batch must hold whole videos of `num_video_frames` frames."""
    if not num_video_frames or batch % num_video_frames:
        raise ValueError(f"{layer}: the batch of {batch} frames is not a whole number of videos of "
                         f"num_video_frames={num_video_frames}; pass frames as (b t) with b * t = {batch}.")


class VideoResBlock(ResBlock):
    """A ResBlock applied to every frame, then a temporal ResBlock (`time_stack`) across frames.

    The temporal block is a 3D ResBlock on `b c t h w` whose kernel (`video_kernel_size`, e.g. (3, 1, 1))
    mixes neighbouring frames; `time_mixer` blends it with the per-frame result.
    """

    conditioning_inputs = {"emb": "emb", "num_video_frames": "num_video_frames",
                           "image_only_indicator": "image_only_indicator"}

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        video_kernel_size: int | list[int] = 3,
        merge_strategy: str = "fixed",
        merge_factor: float = 0.5,
        out_channels: int | None = None,
        use_conv: bool = False,
        use_scale_shift_norm: bool = False,
        dims: int = 2,
        use_checkpoint: bool = False,
        up: bool = False,
        down: bool = False,
    ):
        super().__init__(channels, emb_channels, dropout, out_channels=out_channels, use_conv=use_conv,
                         use_scale_shift_norm=use_scale_shift_norm, dims=dims,
                         use_checkpoint=use_checkpoint, up=up, down=down)
        self.time_stack = ResBlock(self.out_channels, emb_channels, dropout=dropout, dims=3,
                                   kernel_size=video_kernel_size, use_checkpoint=use_checkpoint,
                                   exchange_temb_dims=True)
        self.time_mixer = AlphaBlender(alpha=merge_factor, merge_strategy=merge_strategy,
                                       rearrange_pattern="b t -> b 1 t 1 1")

    def forward(self, x: torch.Tensor, emb: torch.Tensor, num_video_frames: int,
                image_only_indicator: torch.Tensor | None = None) -> torch.Tensor:
        check_frames(x.shape[0], num_video_frames, "VideoResBlock")
        x = super().forward(x, emb)  # (b t) c h w
        x_spatial = rearrange(x, "(b t) c h w -> b c t h w", t=num_video_frames)
        emb = rearrange(emb, "(b t) c -> b t c", t=num_video_frames)
        x_temporal = self.time_stack(x_spatial, emb)
        x = self.time_mixer(x_spatial=x_spatial, x_temporal=x_temporal,
                            image_only_indicator=image_only_indicator)
        return rearrange(x, "b c t h w -> (b t) c h w")


class VideoTransformerBlock(nn.Module):
    """Transformer block whose tokens attend across time: each pixel's `t` frames form one sequence.

    Input and output are `(b t) s c` (s = h w tokens per frame); inside, the block works on
    `(b s) t c`. Optional first feed-forward (`ff_in`), self-attention over time (or cross-attention to
    `context` with `disable_self_attn`), cross-attention to `context`, feed-forward; all pre-norm.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        d_head: int,
        dropout: float = 0.0,
        context_dim: int | None = None,
        gated_ff: bool = True,
        checkpoint: bool = True,
        timesteps: int | None = None,  # frames per video, if fixed at construction
        ff_in: bool = False,
        inner_dim: int | None = None,  # width inside the block; ff_in projects dim -> inner_dim
        attn_mode: str = "softmax",
        disable_self_attn: bool = False,
        disable_temporal_crossattention: bool = False,
        switch_temporal_ca_to_sa: bool = False,  # the second attention is a self-attention too
    ):
        super().__init__()
        check_attention_type(attn_mode)
        if disable_temporal_crossattention and switch_temporal_ca_to_sa:
            raise ValueError("switch_temporal_ca_to_sa needs the second attention: "
                             "do not combine it with disable_temporal_crossattention.")
        # quirk: passing inner_dim switches ff_in on; SpatialVideoTransformer always passes it, so its time
        # blocks always have the input feed-forward (the official weights contain it)
        self.ff_in = ff_in or inner_dim is not None
        inner_dim = inner_dim or dim
        if n_heads * d_head != inner_dim:
            raise ValueError(f"n_heads * d_head ({n_heads} * {d_head}) must equal inner_dim ({inner_dim}).")
        self.is_res = inner_dim == dim
        self.timesteps = timesteps
        self.checkpoint = checkpoint
        self.disable_self_attn = disable_self_attn
        self.switch_temporal_ca_to_sa = switch_temporal_ca_to_sa
        if self.ff_in:
            self.norm_in = nn.LayerNorm(dim)
            self.ff_in = FeedForward(dim, dim_out=inner_dim, dropout=dropout, glu=gated_ff)
        self.attn1 = CrossAttention(inner_dim, context_dim if disable_self_attn else None, n_heads, d_head,
                                    dropout)
        self.ff = FeedForward(inner_dim, dim_out=dim, dropout=dropout, glu=gated_ff)
        self.attn2 = None
        if not disable_temporal_crossattention:
            self.norm2 = nn.LayerNorm(inner_dim)
            second_context_dim = None if switch_temporal_ca_to_sa else context_dim
            self.attn2 = CrossAttention(inner_dim, second_context_dim, n_heads, d_head, dropout)
        self.norm1 = nn.LayerNorm(inner_dim)
        self.norm3 = nn.LayerNorm(inner_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                timesteps: int | None = None) -> torch.Tensor:
        if self.timesteps and timesteps and self.timesteps != timesteps:
            raise ValueError(f"VideoTransformerBlock was built for timesteps={self.timesteps} frames, "
                             f"called with {timesteps}.")
        timesteps = self.timesteps or timesteps
        check_frames(x.shape[0], timesteps, "VideoTransformerBlock")
        return maybe_checkpoint(self._forward, x, context, timesteps, enabled=self.checkpoint)

    def _forward(self, x: torch.Tensor, context: torch.Tensor | None, timesteps: int) -> torch.Tensor:
        tokens = x.shape[1]
        x = rearrange(x, "(b t) s c -> (b s) t c", t=timesteps)
        if self.ff_in:
            h = self.ff_in(self.norm_in(x))
            x = h + x if self.is_res else h
        x = self.attn1(self.norm1(x), context=context if self.disable_self_attn else None) + x
        if self.attn2 is not None:
            x = self.attn2(self.norm2(x), context=None if self.switch_temporal_ca_to_sa else context) + x
        h = self.ff(self.norm3(x))
        x = h + x if self.is_res else h
        return rearrange(x, "(b s) t c -> (b t) s c", s=tokens)


class SpatialVideoTransformer(SpatialTransformer):
    """A SpatialTransformer whose every block is followed by a VideoTransformerBlock across frames.

    Before the temporal block, each frame's tokens get a learned embedding of the frame index
    (`time_pos_embed` of the sinusoidal embedding of 0..t-1); `time_mixer` blends spatial and temporal
    results. With `use_spatial_context` the temporal blocks cross-attend to the first frame's `context`.
    Input and output: `(b t) c h w`, with `timesteps` = frames per video.
    """

    conditioning_inputs = {"context": "context", "time_context": "time_context",
                           "timesteps": "num_video_frames", "image_only_indicator": "image_only_indicator"}

    def __init__(
        self,
        in_channels: int,
        n_heads: int,
        d_head: int,
        depth: int = 1,
        dropout: float = 0.0,
        use_linear: bool = False,
        context_dim: int | None = None,
        use_spatial_context: bool = False,  # temporal blocks attend to `context` (else to `time_context`)
        timesteps: int | None = None,
        merge_strategy: str = "fixed",
        merge_factor: float = 0.5,
        time_context_dim: int | None = None,
        ff_in: bool = False,
        checkpoint: bool = False,
        time_depth: int = 1,  # accepted like the reference, which ignores it too
        attn_mode: str = "softmax",
        disable_self_attn: bool = False,
        disable_temporal_crossattention: bool = False,
        max_time_embed_period: int = 10000,
    ):
        super().__init__(in_channels, n_heads, d_head, depth=depth, dropout=dropout, attn_type=attn_mode,
                         use_checkpoint=checkpoint, context_dim=context_dim, use_linear=use_linear,
                         disable_self_attn=disable_self_attn)
        inner_dim = n_heads * d_head
        self.use_spatial_context = use_spatial_context
        self.max_time_embed_period = max_time_embed_period
        self.time_stack = nn.ModuleList(
            VideoTransformerBlock(
                inner_dim, n_heads, d_head, dropout=dropout,
                context_dim=context_dim if use_spatial_context else time_context_dim,
                timesteps=timesteps, checkpoint=checkpoint, ff_in=ff_in, inner_dim=inner_dim,
                attn_mode=attn_mode, disable_self_attn=disable_self_attn,
                disable_temporal_crossattention=disable_temporal_crossattention,
            )
            for _ in range(depth)
        )
        time_embed_dim = in_channels * 4
        self.time_pos_embed = nn.Sequential(
            nn.Linear(in_channels, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, in_channels),
        )
        self.time_mixer = AlphaBlender(alpha=merge_factor, merge_strategy=merge_strategy)

    def temporal_context(self, context, time_context, timesteps: int, tokens: int):
        """What the temporal blocks attend to, one copy per pixel: `(b s) m d`."""
        if self.use_spatial_context:
            if context is None or context.ndim != 3:
                raise ValueError("SpatialVideoTransformer with use_spatial_context needs context (b t) m d.")
            time_context = context[::timesteps]  # the first frame's context of each video: b m d
        elif time_context is None:
            return None
        time_context = repeat(time_context, "b ... -> (b s) ...", s=tokens)
        return rearrange(time_context, "bs d -> bs 1 d") if time_context.ndim == 2 else time_context

    def frame_embedding(self, frames: int, timesteps: int, device) -> torch.Tensor:
        """Learned embedding of each frame's index within its video: `(b t) 1 c`."""
        frame_index = repeat(torch.arange(timesteps, device=device), "t -> (b t)", b=frames // timesteps)
        sinusoids = timestep_embedding(frame_index, self.in_channels, max_period=self.max_time_embed_period)
        return self.time_pos_embed(sinusoids.to(self.time_pos_embed[0].weight.dtype))[:, None, :]

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                time_context: torch.Tensor | None = None, timesteps: int | None = None,
                image_only_indicator: torch.Tensor | None = None) -> torch.Tensor:
        check_frames(x.shape[0], timesteps, "SpatialVideoTransformer")
        h, w = x.shape[2:]
        time_context = self.temporal_context(context, time_context, timesteps, tokens=h * w)
        frame_emb = self.frame_embedding(x.shape[0], timesteps, x.device)
        tokens = self.tokens_in(x)  # (b t) (h w) c
        for block, time_block in zip(self.transformer_blocks, self.time_stack, strict=True):
            tokens = block(tokens, context=context)
            tokens_temporal = time_block(tokens + frame_emb, context=time_context, timesteps=timesteps)
            tokens = self.time_mixer(x_spatial=tokens, x_temporal=tokens_temporal,
                                     image_only_indicator=image_only_indicator)
        return self.tokens_out(tokens, h, w) + x
