"""Multi-view video: the view ("camera") attention and motion attention of SV4D and SV4D 2.0.

A batch holds b samples x t time frames x v camera views, ordered `(b t v)`. After the usual spatial
attention inside each image, every transformer block lets each pixel attend across the v views (view
attention) and then across the t time frames (motion attention), each result blended with its own
weight. Taught in notebook 04; corresponds to `PostHocSpatialTransformerWithTimeMixingAndMotion` in
the reference's `sgm/modules/spacetime_attention.py` and `PostHocResBlockWithTime` in
`sgm/modules/diffusionmodules/video_model.py`.
"""

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from ..embeddings import timestep_embedding
from .transformer import SpatialTransformer
from .video import (
    LEGACY_MERGE_STRATEGIES,
    AlphaBlender,
    TemporalResBlock,
    VideoTransformerBlock,
    add_mix_factor,
    blend_weight,
    temporal_resblock,
)

# Token layouts of the two attentions. Rows are sequences the blocks see; a VideoTransformerBlock called with
# num_video_frames=n then attends across n consecutive rows at each token position.
CANONICAL = "(b t v) s c"  # one row per image, s = h w tokens
VIEW_LAYOUT = "(b v) (t s) c"  # SV4D: rows grouped by view -> attention across the v views
VIEW_LAYOUT_3D = "(b v s) t c"  # SV4D 2.0's 3D attention, see view_attention
MOTION_LAYOUT = "(b t) (v s) c"  # rows grouped by time frame -> attention across the t frames


class TimeMixing:
    """What ResBlockWithTime and MultiviewTransformer share: their spatial / temporal blend weights.

    Without time_mix_legacy each blend is an AlphaBlender (`time_mixer`, key `<block>.time_mixer.mix_factor`);
    with it, older checkpoints' layout (key `<block>.mix_factor`, `time_mixer` is None) and blend_weight's
    legacy rule.
    """

    def add_time_mixer(self, merge_strategy: str, merge_factor: float, time_mix_legacy: bool,
                       rearrange_pattern: str = "b t -> (b t) 1 1") -> None:
        """Register the blend weight: on the block itself (time_mix_legacy) or in an AlphaBlender `time_mixer`."""
        self.time_mix_legacy = time_mix_legacy
        self.time_mixer = None
        if time_mix_legacy:
            add_mix_factor(self, merge_strategy, merge_factor, strategies=LEGACY_MERGE_STRATEGIES)
        else:
            self.time_mixer = AlphaBlender(merge_factor, merge_strategy, rearrange_pattern)

    def mix_weight(self, image_only_indicator: torch.Tensor, mixer: AlphaBlender | None) -> torch.Tensor:
        """alpha, the weight of the spatial result, from `mixer` (unused with time_mix_legacy)."""
        if self.time_mix_legacy:
            return blend_weight(self.mix_factor, self.merge_strategy, image_only_indicator, legacy=True)
        # quirk: the reference hands the blenders an all-zero image_only_indicator, so frames marked as
        # still images are mixed like the others; the SV4D weights were trained this way
        all_video = torch.zeros(1, 1, device=image_only_indicator.device)
        return mixer.get_alpha(all_video)


class ResBlockWithTime(TemporalResBlock, TimeMixing):
    """SV4D's temporal ResBlock: the temporal block is `time_mix_blocks`, blended as TimeMixing says.

    Input `(b n) c h w` with n = num_video_frames; SV4D passes all t x v images as n, so the temporal
    kernel (e.g. (3, 1, 1)) runs along the `(t v)` axis and mixes neighbouring views of a time frame.
    `resblock_options` are ResBlock's and apply to the per-image ResBlock.
    """

    conditioning_inputs = ("emb", "num_video_frames")

    def __init__(self, channels: int, emb_channels: int, dropout: float,
                 time_kernel_size: int | list[int] = 3, merge_strategy: str = "fixed", merge_factor: float = 0.5,
                 time_mix_legacy: bool = True, **resblock_options):
        super().__init__(channels, emb_channels, dropout, **resblock_options)
        self.time_mix_blocks = temporal_resblock(self.out_channels, emb_channels, dropout, time_kernel_size,
                                                 self.use_checkpoint)
        self.add_time_mixer(merge_strategy, merge_factor, time_mix_legacy, rearrange_pattern="b t -> b 1 t 1 1")

    def temporal(self, x, emb):
        return self.time_mix_blocks(x, emb)

    def blend(self, x_spatial, x_temporal, image_only_indicator):
        # the reference multiplies image_only_indicator by 0 here, for the legacy rule too
        alpha = self.mix_weight(torch.zeros(1, 1, device=x_spatial.device), self.time_mixer).to(x_spatial.dtype)
        if self.time_mix_legacy:
            # quirk: the legacy blend gives alpha to the temporal result (AlphaBlender gives it to the
            # spatial one); checkpoints trained with time_mix_legacy expect this order
            return alpha * x_temporal + (1.0 - alpha) * x_spatial
        return alpha * x_spatial + (1.0 - alpha) * x_temporal


class MultiviewTransformer(SpatialTransformer, TimeMixing):
    """SpatialTransformer whose every block is followed by view attention and motion attention.

    Per block: spatial attention over the h w tokens of each image (cross-attending to its time frame's
    `context` token), then view attention (`time_mix_blocks`) across the v views, then motion attention
    (`motion_blocks`) across the t frames, each result blended with the tokens it started from (the
    motion blend has its own weight with `separate_motion_merge_factor`). The view attention
    cross-attends to the time frame's context; the motion attention to the pixel's latent in the
    reference views `cond_view`, resized to this resolution. Before attending, tokens get a learned
    embedding of their view (`time_mix_time_embed`: of the view index, or with `use_camera_emb` of the
    UNet's embedding vector, which carries the camera angles) and of their frame (`time_mix_motion_embed`).

    forward(x `(b t v) c h w`, context `b t d`, cond_view `(b v) c' h' w'`, emb `(b t v) e`): `emb` is the
    UNet's embedding vector (noise level plus y, which holds the camera angles), read with use_camera_emb.
    """

    conditioning_inputs = ("context", "cond_view", "emb", "image_only_indicator")

    def __init__(
        self,
        in_channels: int,
        n_heads: int,
        d_head: int,
        depth: int = 1,
        dropout: float = 0.0,
        use_linear: bool = False,
        context_dim: int | None = None,
        use_spatial_context: bool = False,  # the view attention cross-attends with context_dim
        use_camera_emb: bool = False,  # view embedding from the UNet's embedding vector (SV4D 2.0)
        use_3d_attention: bool = False,  # SV4D 2.0's layout for the view attention
        separate_motion_merge_factor: bool = False,  # motion attention gets its own blend weight
        adm_in_channels: int | None = None,  # size of emb (4 x the UNet's model_channels)
        timesteps: int | None = None,  # frames per video, if fixed at construction (the reference's name)
        merge_strategy: str = "fixed",
        merge_factor: float = 0.5,
        merge_factor_motion: float = 0.5,
        time_context_dim: int | None = None,  # view attention's context size without use_spatial_context
        motion_context_dim: int | None = None,  # channels of cond_view (4: latents)
        ff_in: bool = False,  # no effect: the blocks always have ff_in (see VideoTransformerBlock's quirk)
        checkpoint: bool = False,
        attn_mode: str = "softmax",
        disable_self_attn: bool = False,
        disable_temporal_crossattention: bool = False,
        time_mix_legacy: bool = True,
        max_time_embed_period: int = 10000,
    ):
        super().__init__(in_channels, n_heads, d_head, depth=depth, dropout=dropout, attn_type=attn_mode,
                         use_checkpoint=checkpoint, context_dim=context_dim, use_linear=use_linear,
                         disable_self_attn=disable_self_attn)
        if use_camera_emb and adm_in_channels is None:
            raise ValueError("use_camera_emb needs adm_in_channels, the size of the UNet's embedding vector.")
        self.use_camera_emb = use_camera_emb
        self.use_3d_attention = use_3d_attention
        self.separate_motion_merge_factor = separate_motion_merge_factor
        self.max_time_embed_period = max_time_embed_period
        inner_dim = n_heads * d_head

        def attention_blocks(block_context_dim):
            return nn.ModuleList(
                VideoTransformerBlock(inner_dim, n_heads, d_head, dropout=dropout,
                                      context_dim=block_context_dim, timesteps=timesteps,
                                      checkpoint=checkpoint, ff_in=ff_in,
                                      inner_dim=inner_dim, attn_mode=attn_mode,
                                      disable_self_attn=disable_self_attn,
                                      disable_temporal_crossattention=disable_temporal_crossattention)
                for _ in range(depth)
            )

        self.time_mix_blocks = attention_blocks(context_dim if use_spatial_context else time_context_dim)
        self.motion_blocks = attention_blocks(motion_context_dim)
        self.time_mix_time_embed = self.embedding_mlp(adm_in_channels if use_camera_emb else in_channels)
        self.time_mix_motion_embed = self.embedding_mlp(in_channels)
        self.add_time_mixer(merge_strategy, merge_factor, time_mix_legacy)
        self.time_mixer_motion = None  # with time_mix_legacy the motion blend uses the block's own weight
        if separate_motion_merge_factor and not time_mix_legacy:
            self.time_mixer_motion = AlphaBlender(merge_factor_motion, merge_strategy)

    def embedding_mlp(self, features: int) -> nn.Sequential:
        """Linear, SiLU, Linear: `features` -> in_channels, the view and frame embeddings' MLP."""
        hidden = 4 * self.in_channels
        return nn.Sequential(nn.Linear(features, hidden), nn.SiLU(), nn.Linear(hidden, self.in_channels))

    def index_embedding(self, mlp: nn.Sequential, batch: int, count: int, device) -> torch.Tensor:
        """Learned embedding of the indices 0..count-1 of each sample: `(b count) 1 c`."""
        index = repeat(torch.arange(count, device=device), "n -> (b n)", b=batch)
        sinusoids = timestep_embedding(index, self.in_channels, max_period=self.max_time_embed_period)
        return mlp(sinusoids.to(mlp[0].weight.dtype))[:, None]  # the MLP may hold fp16 / bf16 weights

    def view_embedding(self, batch: int, views: int, emb: torch.Tensor | None, device) -> torch.Tensor:
        """`(b v) 1 c`: from the view index, or from the first time frame's embedding vector of each view."""
        if not self.use_camera_emb:
            return self.index_embedding(self.time_mix_time_embed, batch, views, device)
        if emb is None:
            raise ValueError("MultiviewTransformer with use_camera_emb needs emb: (b t v) x "
                             "adm_in_channels, the UNet's embedding vector.")
        first_frame = rearrange(emb, "(b t v) e -> b t v e", b=batch, v=views)[:, 0]
        return self.time_mix_time_embed(rearrange(first_frame, "b v e -> (b v) e"))[:, None]

    def forward(self, x: torch.Tensor, context: torch.Tensor, cond_view: torch.Tensor,
                emb: torch.Tensor | None = None,
                image_only_indicator: torch.Tensor | None = None) -> torch.Tensor:
        """`(b t v) c h w` -> the same shape: in each block, attention within every image, then across the v
        views of each time (view_attention), then across the t times of each view (motion_attention); plus `x`.

        `context` `b t d` holds one CLIP token per time; `cond_view` `(b v) c h w` the reference views' latents,
        which motion attention reads pixel by pixel; `emb` is the UNet's embedding vector, which makes the view
        embedding when use_camera_emb (SV4D 2.0); `image_only_indicator` `b (t v)` feeds the blends.
        """
        (b, t, _), (h, w) = context.shape, x.shape[2:]
        v = cond_view.shape[0] // b
        if x.shape[0] != b * t * v:
            raise ValueError(f"MultiviewTransformer: {x.shape[0]} images are not b x t x v = {b} x {t} x {v} "
                             "(b, t from context `b t d`, v from cond_view `(b v) c h w`).")
        if image_only_indicator is None:
            image_only_indicator = torch.zeros(b, t * v, device=x.device)
        sizes = dict(b=b, t=t, v=v, s=h * w)
        contexts = {
            "spatial": repeat(context, "b t d -> (b t v) 1 d", v=v),  # each image: its time frame's token
            "view": repeat(context, "b t d -> (b t s) 1 d", s=h * w),  # each pixel: its frame's token
            "motion": rearrange(F.interpolate(cond_view, size=(h, w), mode="bilinear"),
                                "bv c h w -> (bv h w) 1 c"),  # each pixel: its latent in the reference view
        }
        view_emb = self.view_embedding(b, v, emb, x.device)  # (b v) 1 c
        if self.use_3d_attention:
            view_emb = repeat(view_emb, "bv 1 c -> (bv s) 1 c", s=h * w)
        frame_emb = self.index_embedding(self.time_mix_motion_embed, b, t, x.device)  # (b t) 1 c
        tokens = self.tokens_in(x)  # (b t v) s c
        blocks = zip(self.transformer_blocks, self.time_mix_blocks, self.motion_blocks, strict=True)
        for spatial_block, view_block, motion_block in blocks:
            tokens = spatial_block(tokens, context=contexts["spatial"])
            tokens = self.view_attention(view_block, tokens, view_emb, contexts["view"], sizes,
                                         image_only_indicator)
            tokens = self.motion_attention(motion_block, tokens, frame_emb, contexts["motion"], sizes,
                                           image_only_indicator)
        return self.tokens_out(tokens, h, w) + x

    def view_attention(self, block, tokens, view_emb, context, sizes, image_only_indicator):
        """Each pixel attends across the v views of its time frame (but see the 3D quirk below)."""
        layout = VIEW_LAYOUT_3D if self.use_3d_attention else VIEW_LAYOUT
        tokens = rearrange(tokens, f"{CANONICAL} -> {layout}", **sizes)
        # quirk: with use_3d_attention the block reads each run of v consecutive rows of the (b v s) layout
        # as one sequence, so v neighbouring pixels of one view attend to each other at every time frame,
        # and it pairs the (b t s) context rows with its sequences by position; SV4D 2.0 was trained
        # with exactly this arrangement (its golden case tells it apart from attention across views)
        mixed = block(tokens + view_emb, context=context, num_video_frames=sizes["v"])
        tokens = self.blend(tokens, mixed, image_only_indicator, self.time_mixer)
        return rearrange(tokens, f"{layout} -> {CANONICAL}", **sizes)

    def motion_attention(self, block, tokens, frame_emb, context, sizes, image_only_indicator):
        """Each pixel of each view attends across the t time frames."""
        tokens = rearrange(tokens, f"{CANONICAL} -> {MOTION_LAYOUT}", **sizes)
        mixed = block(tokens + frame_emb, context=context, num_video_frames=sizes["t"])
        mixer = self.time_mixer_motion if self.separate_motion_merge_factor else self.time_mixer
        tokens = self.blend(tokens, mixed, image_only_indicator, mixer)
        return rearrange(tokens, f"{MOTION_LAYOUT} -> {CANONICAL}", **sizes)

    def blend(self, tokens, mixed, image_only_indicator, mixer: AlphaBlender | None) -> torch.Tensor:
        """alpha * the tokens before the attention + (1 - alpha) * its result `mixed`."""
        alpha = self.mix_weight(image_only_indicator, mixer).to(tokens.dtype)
        return alpha * tokens + (1.0 - alpha) * mixed
