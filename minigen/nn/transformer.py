"""Transformers of the UNet: cross-attention, feed-forward, the transformer block and SpatialTransformer.

A SpatialTransformer turns a feature map `b c h w` into `h w` tokens, lets them attend to each other
(self-attention) and to the conditioning tokens `context` (cross-attention, e.g. the text embedding),
and turns them back into a feature map. Taught in notebook 04; corresponds to `CrossAttention`,
`FeedForward`, `BasicTransformerBlock` and `SpatialTransformer` in the reference's
`sgm/modules/attention.py`.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .attention import AttentionLayer, check_attention_type
from .resnet import maybe_checkpoint, zero_module


class CrossAttention(AttentionLayer):
    """Multi-head attention of `x` (`b n query_dim`) to `context` (`b m context_dim`), or to itself.

    `query_chunk_size` (None: all queries at once) bounds the memory of the attention scores; set it on
    a whole model with `minigen.nn.attention.set_query_chunk_size`.
    """

    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 8, dim_head: int = 64,
                 dropout: float = 0.0):
        super().__init__()
        inner_dim = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, query_dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        if context.shape[-1] != self.to_k.in_features:
            raise ValueError(f"CrossAttention expects context tokens of size {self.to_k.in_features}, got "
                             f"context of shape {tuple(context.shape)}; check the model's context_dim.")
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in (q, k, v))
        out = self.attend(q, k, v)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class GEGLU(nn.Module):
    """A gated linear unit: `x * gelu(gate)`, both halves of one projection (Shazeer 2020)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """Two-layer MLP applied per token: `dim -> mult * dim -> dim_out`, GELU or GEGLU (`glu=True`)."""

    def __init__(self, dim: int, dim_out: int | None = None, mult: int = 4, glu: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        inner_dim = int(dim * mult)
        project_in = GEGLU(dim, inner_dim) if glu else nn.Sequential(nn.Linear(dim, inner_dim), nn.GELU())
        self.net = nn.Sequential(project_in, nn.Dropout(dropout), nn.Linear(inner_dim, dim_out or dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Pre-norm transformer block on tokens `b n dim`: self-attention, cross-attention, feed-forward.

    With `disable_self_attn` the first attention also attends to `context` instead of to the tokens.
    Without a context, the cross-attention attends to the tokens themselves.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        d_head: int,
        dropout: float = 0.0,
        context_dim: int | None = None,
        gated_ff: bool = True,  # GEGLU feed-forward
        checkpoint: bool = True,  # gradient checkpointing (only while gradients are being recorded)
        disable_self_attn: bool = False,
        attn_mode: str = "softmax",  # every attention type runs minigen's attention()
    ):
        super().__init__()
        check_attention_type(attn_mode)
        self.disable_self_attn = disable_self_attn
        self.use_checkpoint = checkpoint
        self.attn1 = CrossAttention(dim, context_dim if disable_self_attn else None, n_heads, d_head, dropout)
        self.ff = FeedForward(dim, dropout=dropout, glu=gated_ff)
        self.attn2 = CrossAttention(dim, context_dim, n_heads, d_head, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return maybe_checkpoint(self._forward, x, context, enabled=self.use_checkpoint)

    def _forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        x = self.attn1(self.norm1(x), context=context if self.disable_self_attn else None) + x
        x = self.attn2(self.norm2(x), context=context) + x
        return self.ff(self.norm3(x)) + x


def per_block_context_dims(context_dim, depth: int) -> list:
    """One context size per transformer block, from an int, a list of `depth` ints, or None."""
    if context_dim is None or isinstance(context_dim, int):
        return [context_dim] * depth
    context_dim = list(context_dim)
    if len(context_dim) == depth:
        return context_dim
    if len(set(context_dim)) != 1:
        raise ValueError(f"context_dim {context_dim} has {len(context_dim)} entries for depth {depth}: "
                         "give one context size per block, or a single one for all blocks.")
    return context_dim[:1] * depth  # the reference also repeats a uniform list to the depth


class SpatialTransformer(nn.Module):
    """`depth` transformer blocks on the `h w` tokens of a feature map, wrapped in a residual.

    The map is normalised and projected to `n_heads * d_head` channels (a 1x1 convolution before
    flattening, or a linear layer after it with `use_linear`), the blocks run, and the projection back
    (zero-initialised, so a new layer starts as the identity) is added to the input.
    `context` is one tensor for all blocks, or a list with one per block.
    """

    conditioning_inputs = ("context",)

    def __init__(
        self,
        in_channels: int,
        n_heads: int,
        d_head: int,
        depth: int = 1,
        dropout: float = 0.0,
        context_dim: int | list[int] | None = None,
        disable_self_attn: bool = False,
        use_linear: bool = False,
        attn_type: str = "softmax",
        use_checkpoint: bool = True,
    ):
        super().__init__()
        inner_dim = n_heads * d_head
        self.in_channels = in_channels
        self.use_linear = use_linear
        # quirk: unlike the UNet's GroupNorm32 this is a plain GroupNorm with eps=1e-6, as trained
        self.norm = nn.GroupNorm(num_groups=32, num_channels=in_channels, eps=1e-6)
        if use_linear:
            self.proj_in = nn.Linear(in_channels, inner_dim)
        else:
            self.proj_in = nn.Conv2d(in_channels, inner_dim, kernel_size=1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner_dim, n_heads, d_head, dropout=dropout, context_dim=block_context_dim,
                                  disable_self_attn=disable_self_attn, attn_mode=attn_type,
                                  checkpoint=use_checkpoint)
            for block_context_dim in per_block_context_dims(context_dim, depth)
        )
        if use_linear:
            self.proj_out = zero_module(nn.Linear(inner_dim, in_channels))
        else:
            self.proj_out = zero_module(nn.Conv2d(inner_dim, in_channels, kernel_size=1))

    def tokens_in(self, x: torch.Tensor) -> torch.Tensor:
        """`b c h w` feature map -> `b (h w) inner_dim` tokens."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects a feature map (b, {self.in_channels}, h, w), "
                             f"got shape {tuple(x.shape)}.")
        x = self.norm(x)
        if not self.use_linear:
            x = self.proj_in(x)
        x = rearrange(x, "b c h w -> b (h w) c")
        return self.proj_in(x) if self.use_linear else x

    def tokens_out(self, tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """`b (h w) inner_dim` tokens -> `b c h w` feature map (before the residual)."""
        if self.use_linear:
            tokens = self.proj_out(tokens)
        # contiguous, as the reference makes it: the rearranged view has channels-last strides, which would make
        # every later convolution reorder its weights to match (7% of an SVD step on a CPU)
        x = rearrange(tokens, "b (h w) c -> b c h w", h=h, w=w).contiguous()
        return x if self.use_linear else self.proj_out(x)

    def forward(self, x: torch.Tensor, context: torch.Tensor | list | None = None) -> torch.Tensor:
        """`b c h w` -> `b c h w`: the feature map as tokens through every block, back to a map, plus `x`.

        `context` `b m d` is what cross-attention reads; a list of them gives each block its own (for a
        context_dim given per block), a single one serves every block.
        """
        contexts = context if isinstance(context, list) else [context]
        tokens = self.tokens_in(x)
        for index, block in enumerate(self.transformer_blocks):
            tokens = block(tokens, context=contexts[index if len(contexts) > 1 else 0])
        return self.tokens_out(tokens, *x.shape[2:]) + x
