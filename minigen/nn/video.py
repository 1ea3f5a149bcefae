"""Time mixing: how Stable Video Diffusion turns an image UNet into a video UNet.

Each spatial layer (ResBlock, SpatialTransformer) is followed by a temporal twin that mixes the
`num_video_frames` frames of each video, and an AlphaBlender merges the two outputs:
`alpha * spatial + (1 - alpha) * temporal`. `blend_weight` is the one rule for alpha, used here, by SV4D's
layers (`multiview.py`) and by the VAE's temporal decoder. Video tensors are `(b t) c h w`. Taught in notebook 04;
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

MERGE_STRATEGIES = ("fixed", "learned", "learned_with_images")
LEGACY_MERGE_STRATEGIES = (*MERGE_STRATEGIES, "fixed_with_images")  # SV4D's time_mix_legacy layers


def add_mix_factor(module: nn.Module, merge_strategy: str, merge_factor: float,
                   strategies: tuple[str, ...] = MERGE_STRATEGIES) -> None:
    """Give `module` what `blend_weight` reads: `merge_strategy` and the blend's logit `mix_factor`.

    `mix_factor` (key `<module>.mix_factor`) starts at `merge_factor`: a buffer for "fixed", a trainable
    parameter for the learned strategies, and None for "fixed_with_images", whose weight comes from
    image_only_indicator alone. `strategies` are the ones the caller's blend can apply.
    """
    if merge_strategy not in strategies:
        raise ValueError(f"Unknown merge_strategy {merge_strategy!r}; expected one of {strategies}.")
    module.merge_strategy = merge_strategy
    value = torch.tensor([float(merge_factor)])
    if merge_strategy == "fixed":
        module.register_buffer("mix_factor", value)
    elif merge_strategy == "fixed_with_images":
        module.mix_factor = None
    else:
        module.mix_factor = nn.Parameter(value)


def blend_weight(mix_factor: torch.Tensor | None, merge_strategy: str,
                 image_only_indicator: torch.Tensor | None = None, legacy: bool = False) -> torch.Tensor:
    """alpha, the weight of the spatial result in `alpha * x_spatial + (1 - alpha) * x_temporal`.

    - "fixed": alpha is `mix_factor` itself;
    - "learned": alpha = sigmoid(mix_factor);
    - "learned_with_images": as "learned", but alpha = 1 (spatial only) for the frames that
      `image_only_indicator` (b t) marks as still images; alpha is then `b t`, one weight per frame.
    `legacy=True` is the older rule of SV4D's time_mix_legacy layers: one weight for every frame, always
    through a sigmoid, and a fourth strategy "fixed_with_images" (the logit is image_only_indicator).
    """
    if image_only_indicator is None and merge_strategy.endswith("_with_images"):
        raise ValueError(f"merge_strategy={merge_strategy!r} needs image_only_indicator (b t): pass zeros for "
                         "videos, ones for still images.")
    if legacy:
        if merge_strategy == "fixed_with_images":
            logit = image_only_indicator.float()
        elif merge_strategy == "learned_with_images":
            logit = torch.where(image_only_indicator.bool(), 1.0, mix_factor)  # b t
        else:
            logit = mix_factor
        if not (logit == logit.flatten()[0]).all():
            raise ValueError("time_mix_legacy blends all frames with one weight, so image_only_indicator must be "
                             "the same for every frame (the reference cannot apply per-frame weights either).")
        # quirk: the sigmoid comes after choosing between 1 and mix_factor, so image frames get sigmoid(1) ~ 0.73
        # and "fixed" values are squashed too; the legacy checkpoints were trained with this
        return torch.sigmoid(logit.flatten()[0])
    if merge_strategy == "fixed":
        return mix_factor  # quirk: no sigmoid here, the fixed value is the weight itself
    alpha = torch.sigmoid(mix_factor)
    if merge_strategy == "learned":
        return alpha
    return torch.where(image_only_indicator.bool(), torch.ones_like(alpha), alpha)  # b t


class AlphaBlender(nn.Module):
    """Blend a spatial and a temporal result: `alpha * x_spatial + (1 - alpha) * x_temporal`.

    alpha comes from `blend_weight` (see there for the three merge strategies); the module holds its
    logit `mix_factor` (key `<blender>.mix_factor`). `rearrange_pattern` shapes a per-frame alpha `b t`
    like the tensors being blended.
    """

    def __init__(self, alpha: float, merge_strategy: str = "learned_with_images",
                 rearrange_pattern: str = "b t -> (b t) 1 1"):
        super().__init__()
        add_mix_factor(self, merge_strategy, alpha)
        self.rearrange_pattern = rearrange_pattern

    def get_alpha(self, image_only_indicator: torch.Tensor | None) -> torch.Tensor:
        """alpha, shaped to multiply the blended tensors."""
        alpha = blend_weight(self.mix_factor, self.merge_strategy, image_only_indicator)
        return rearrange(alpha, self.rearrange_pattern) if self.merge_strategy == "learned_with_images" else alpha

    def forward(self, x_spatial: torch.Tensor, x_temporal: torch.Tensor,
                image_only_indicator: torch.Tensor | None = None) -> torch.Tensor:
        """`alpha * x_spatial + (1 - alpha) * x_temporal`, alpha in the tensors' dtype; `image_only_indicator`
        `b t` (1: a still image) matters only to the "learned_with_images" strategy."""
        alpha = self.get_alpha(image_only_indicator).to(x_spatial.dtype)
        return alpha * x_spatial + (1.0 - alpha) * x_temporal


def check_frames(batch: int, num_video_frames: int | None, layer: str) -> None:
    """Video layers see `(b t)` frames: the batch must hold whole videos of `num_video_frames` frames."""
    if not num_video_frames or batch % num_video_frames:
        raise ValueError(f"{layer}: the batch of {batch} frames is not a whole number of videos of "
                         f"num_video_frames={num_video_frames}; pass frames as (b t) with b * t = {batch}.")


def temporal_resblock(channels: int, emb_channels: int, dropout: float, kernel_size: int | list[int],
                      use_checkpoint: bool) -> ResBlock:
    """The temporal half of a TemporalResBlock: a 3D ResBlock on `b c t h w` reading each frame's `emb`.

    A kernel such as (3, 1, 1) mixes each pixel with the same pixel of the neighbouring frames.
    """
    return ResBlock(channels, emb_channels, dropout, dims=3, kernel_size=kernel_size,
                    use_checkpoint=use_checkpoint, exchange_temb_dims=True)


class TemporalResBlock(ResBlock):
    """A ResBlock on every frame, then a temporal ResBlock across the frames, the two results blended.

    The forward that SVD's VideoResBlock and SV4D's ResBlockWithTime share. They differ only in what the
    checkpoints call the temporal block (`temporal` returns it) and in how they weigh the two results
    (`blend`), so each subclass keeps its official key layout and defines those two methods.
    """

    def forward(self, x: torch.Tensor, emb: torch.Tensor, num_video_frames: int,
                image_only_indicator: torch.Tensor | None = None) -> torch.Tensor:
        """`(b t) c h w` frames with their embeddings `(b t) c` -> `(b t) c' h w`: the per-frame ResBlock, then
        the subclass's temporal block across each video's `num_video_frames` frames, the two blended."""
        check_frames(x.shape[0], num_video_frames, type(self).__name__)
        x = super().forward(x, emb)  # (b t) c h w
        x_spatial = rearrange(x, "(b t) c h w -> b c t h w", t=num_video_frames)
        emb = rearrange(emb, "(b t) c -> b t c", t=num_video_frames)
        x = self.blend(x_spatial, self.temporal(x_spatial, emb), image_only_indicator)
        return rearrange(x, "b c t h w -> (b t) c h w")

    def temporal(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The temporal ResBlock (under the subclass's checkpoint name) on `b c t h w` with emb `b t c`."""
        raise NotImplementedError

    def blend(self, x_spatial: torch.Tensor, x_temporal: torch.Tensor,
              image_only_indicator: torch.Tensor | None) -> torch.Tensor:
        """The spatial and temporal results `b c t h w`, blended."""
        raise NotImplementedError


class VideoResBlock(TemporalResBlock):
    """SVD's temporal ResBlock: the temporal block is `time_stack` and `time_mixer` (an AlphaBlender) blends.

    `resblock_options` are ResBlock's (out_channels, use_conv, use_scale_shift_norm, dims, use_checkpoint,
    up, down) and apply to the per-frame ResBlock.
    """

    conditioning_inputs = ("emb", "num_video_frames", "image_only_indicator")

    def __init__(self, channels: int, emb_channels: int, dropout: float,
                 video_kernel_size: int | list[int] = 3, merge_strategy: str = "fixed", merge_factor: float = 0.5,
                 **resblock_options):
        super().__init__(channels, emb_channels, dropout, **resblock_options)
        self.time_stack = temporal_resblock(self.out_channels, emb_channels, dropout, video_kernel_size,
                                            self.use_checkpoint)
        self.time_mixer = AlphaBlender(alpha=merge_factor, merge_strategy=merge_strategy,
                                       rearrange_pattern="b t -> b 1 t 1 1")

    def temporal(self, x, emb):
        return self.time_stack(x, emb)

    def blend(self, x_spatial, x_temporal, image_only_indicator):
        return self.time_mixer(x_spatial=x_spatial, x_temporal=x_temporal, image_only_indicator=image_only_indicator)


class VideoTransformerBlock(nn.Module):
    """Transformer block whose tokens attend across time: each pixel's `t` frames form one sequence.

    Input and output are `(b t) s c` (s = h w tokens per frame); inside, the block works on `(b s) t c`.
    Pre-norm, in order: an optional input feed-forward `ff_in` (dim -> inner_dim), `attn1`, `attn2`, `ff`.
    What the two attentions attend to:

    | flags                              | attn1 attends to | attn2 attends to |
    |------------------------------------|------------------|------------------|
    | (default)                          | the tokens       | `context`        |
    | disable_self_attn                  | `context`        | `context`        |
    | switch_temporal_ca_to_sa           | the tokens       | the tokens       |
    | disable_temporal_crossattention    | as above         | (no attn2)       |

    Without a `context`, a cross-attention attends to the tokens themselves.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        d_head: int,
        dropout: float = 0.0,
        context_dim: int | None = None,
        gated_ff: bool = True,
        checkpoint: bool = True,  # gradient checkpointing (only while gradients are being recorded)
        timesteps: int | None = None,  # frames per video, if fixed at construction (the reference's name)
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
        # quirk: passing inner_dim switches ff_in on; SpatialVideoTransformer and MultiviewTransformer always
        # pass it, so their time blocks always have the input feed-forward (the official weights contain it)
        has_ff_in = ff_in or inner_dim is not None
        inner_dim = inner_dim or dim
        if n_heads * d_head != inner_dim:
            raise ValueError(f"n_heads * d_head ({n_heads} * {d_head}) must equal inner_dim ({inner_dim}).")
        self.is_res = inner_dim == dim
        self.num_video_frames = timesteps
        self.use_checkpoint = checkpoint
        self.disable_self_attn = disable_self_attn
        self.switch_temporal_ca_to_sa = switch_temporal_ca_to_sa
        self.norm_in = nn.LayerNorm(dim) if has_ff_in else None
        self.ff_in = FeedForward(dim, dim_out=inner_dim, dropout=dropout, glu=gated_ff) if has_ff_in else None
        self.attn1 = CrossAttention(inner_dim, context_dim if disable_self_attn else None, n_heads, d_head,
                                    dropout)
        self.ff = FeedForward(inner_dim, dim_out=dim, dropout=dropout, glu=gated_ff)
        self.norm2 = self.attn2 = None
        if not disable_temporal_crossattention:
            self.norm2 = nn.LayerNorm(inner_dim)
            second_context_dim = None if switch_temporal_ca_to_sa else context_dim
            self.attn2 = CrossAttention(inner_dim, second_context_dim, n_heads, d_head, dropout)
        self.norm1 = nn.LayerNorm(inner_dim)
        self.norm3 = nn.LayerNorm(inner_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                num_video_frames: int | None = None) -> torch.Tensor:
        if self.num_video_frames and num_video_frames and self.num_video_frames != num_video_frames:
            raise ValueError(f"VideoTransformerBlock was built for timesteps={self.num_video_frames} frames, "
                             f"called with num_video_frames={num_video_frames}.")
        num_video_frames = self.num_video_frames or num_video_frames
        check_frames(x.shape[0], num_video_frames, "VideoTransformerBlock")
        return maybe_checkpoint(self._forward, x, context, num_video_frames, enabled=self.use_checkpoint)

    def _forward(self, x: torch.Tensor, context: torch.Tensor | None, num_video_frames: int) -> torch.Tensor:
        tokens = x.shape[1]
        x = rearrange(x, "(b t) s c -> (b s) t c", t=num_video_frames)
        if self.ff_in is not None:
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
    Input and output: `(b t) c h w`, with `num_video_frames` = t, the frames per video.
    """

    conditioning_inputs = ("context", "time_context", "num_video_frames", "image_only_indicator")

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
        timesteps: int | None = None,  # frames per video, if fixed at construction (the reference's name)
        merge_strategy: str = "fixed",
        merge_factor: float = 0.5,
        time_context_dim: int | None = None,
        ff_in: bool = False,  # no effect: the time blocks always have ff_in (see VideoTransformerBlock's quirk)
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

    def temporal_context(self, context, time_context, num_video_frames: int, tokens: int):
        """What the temporal blocks attend to, one copy per pixel: `(b s) m d`."""
        if self.use_spatial_context:
            if context is None or context.ndim != 3:
                raise ValueError("SpatialVideoTransformer with use_spatial_context needs context (b t) m d.")
            time_context = context[::num_video_frames]  # the first frame's context of each video: b m d
        elif time_context is None:
            return None
        time_context = repeat(time_context, "b ... -> (b s) ...", s=tokens)
        return rearrange(time_context, "bs d -> bs 1 d") if time_context.ndim == 2 else time_context

    def frame_embedding(self, frames: int, num_video_frames: int, device) -> torch.Tensor:
        """Learned embedding of each frame's index within its video: `(b t) 1 c`."""
        frame_index = repeat(torch.arange(num_video_frames, device=device), "t -> (b t)",
                             b=frames // num_video_frames)
        sinusoids = timestep_embedding(frame_index, self.in_channels, max_period=self.max_time_embed_period)
        return self.time_pos_embed(sinusoids.to(self.time_pos_embed[0].weight.dtype))[:, None, :]

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                time_context: torch.Tensor | None = None, num_video_frames: int | None = None,
                image_only_indicator: torch.Tensor | None = None) -> torch.Tensor:
        """`(b t) c h w` -> `(b t) c h w`: in each block, attention within every frame (reading `context`), then
        attention across each pixel's frames (reading `time_context`, see temporal_context), the two blended by
        time_mixer; plus `x`."""
        check_frames(x.shape[0], num_video_frames, "SpatialVideoTransformer")
        h, w = x.shape[2:]
        time_context = self.temporal_context(context, time_context, num_video_frames, tokens=h * w)
        frame_emb = self.frame_embedding(x.shape[0], num_video_frames, x.device)
        tokens = self.tokens_in(x)  # (b t) (h w) c
        for block, time_block in zip(self.transformer_blocks, self.time_stack, strict=True):
            tokens = block(tokens, context=context)
            tokens_temporal = time_block(tokens + frame_emb, context=time_context,
                                         num_video_frames=num_video_frames)
            tokens = self.time_mixer(x_spatial=tokens, x_temporal=tokens_temporal,
                                     image_only_indicator=image_only_indicator)
        return self.tokens_out(tokens, h, w) + x
