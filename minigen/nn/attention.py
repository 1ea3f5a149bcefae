"""Scaled dot-product attention: the one attention function of minigen's UNets and VAEs.

`attention(q, k, v)` computes softmax(q k^T / sqrt(d)) v with PyTorch's fused
`scaled_dot_product_attention`; `query_chunk_size=` splits the queries to bound memory (useful on CPU,
where a 4096 x 4096 score matrix per head is large). `naive_attention` writes the same maths out in
full, for teaching and benchmarks, and `use_attention(naive_attention)` runs a whole network with it.
Every attention layer (the UNets' transformers, the video, view and motion attention, the VAE's
`AttnBlock`) goes through `attention`. The conditioners' encoders do not: CLIP ViT-L's causal text encoder
(`minigen.conditioning.text`) asks SDPA for its causal mask directly, and the OpenCLIP towers are open_clip's own
modules, with open_clip's attention. Taught in notebook 04;
replaces the reference's attention backends in `sgm/modules/attention.py` and
`sgm/modules/diffusionmodules/model.py`.
"""

from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

# The reference selects an attention implementation by name; all compute the same maths, so every
# name maps to `attention` here ("-xformers" picked the xformers kernel, "vanilla" the autoencoder's).
ATTENTION_TYPES = ("softmax", "softmax-xformers", "vanilla", "vanilla-xformers")
MAX_CUDA_SEQUENCES = 32768  # batch x heads per fused-attention call on CUDA

Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
_kernel: Kernel = F.scaled_dot_product_attention  # what `attention` computes with; see use_attention


def check_attention_type(attn_type: str) -> None:
    """Accept the reference's attention-type names (all run `attention`), so its configs map one to one."""
    if attn_type not in ATTENTION_TYPES:
        raise ValueError(f"Unknown attention type {attn_type!r}; expected one of {ATTENTION_TYPES} "
                         "(they all run minigen's attention()).")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              query_chunk_size: int | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v for `... n d` queries and `... m d` keys / values.

    With `query_chunk_size`, queries are processed that many at a time: each chunk attends to all keys,
    so the result is the same while the score matrix held at once shrinks to `chunk x m`.
    """
    if q.is_cuda and q.shape[:-2].numel() > MAX_CUDA_SEQUENCES and q.shape[0] > 1:
        return _attention_in_batch_chunks(q, k, v, query_chunk_size)
    if query_chunk_size is None or q.shape[-2] <= query_chunk_size:
        return _kernel(q, k, v)
    if query_chunk_size < 1:
        raise ValueError(f"query_chunk_size must be a positive number of queries, got {query_chunk_size}.")
    chunks = [_kernel(q_chunk, k, v) for q_chunk in q.split(query_chunk_size, dim=-2)]
    return torch.cat(chunks, dim=-2)


def _attention_in_batch_chunks(q, k, v, query_chunk_size):
    """CUDA's fused kernels fail ("invalid argument") past about 65k sequences in one call; temporal and
    view attention over every pixel of a video reach that (SV4D 2.0: 2 x 12 x 5184 pixel sequences x heads).
    Split the leading batch dimension, as the reference does for xformers (its `max_bs`)."""
    per_item = max(q.shape[1:-2].numel(), 1)
    step = max(MAX_CUDA_SEQUENCES // per_item, 1)
    return torch.cat([attention(q[i:i + step], k[i:i + step], v[i:i + step], query_chunk_size)
                      for i in range(0, q.shape[0], step)])


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The same maths as `attention`, written out: the full `... n m` weight matrix is materialised."""
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # ... n m
    weights = scores.softmax(dim=-1)  # each query's weights over the keys sum to 1
    return weights @ v  # ... n d


@contextmanager
def use_attention(kernel: Kernel):
    """Inside the `with` block every attention layer computes with `kernel(q, k, v)` instead of fused SDPA.

    `with use_attention(naive_attention): unet(...)` runs a real network on the written-out formula, so a
    student can see it give the same output (notebook 04); chunking and the CUDA batch split still apply.
    """
    global _kernel
    if not callable(kernel):
        raise TypeError(f"use_attention needs a function kernel(q, k, v) -> output, got {kernel!r}.")
    previous, _kernel = _kernel, kernel
    try:
        yield
    finally:
        _kernel = previous


class AttentionLayer(nn.Module):
    """Base of every layer that calls `attention`: each holds its own `query_chunk_size`.

    `set_query_chunk_size(model, n)` reaches all of them, in the UNet and in the VAE alike.
    """

    def __init__(self):
        super().__init__()
        self.query_chunk_size: int | None = None  # None: all queries at once

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """`attention(q, k, v)` with this layer's query_chunk_size."""
        return attention(q, k, v, query_chunk_size=self.query_chunk_size)


def set_query_chunk_size(model: nn.Module, query_chunk_size: int | None) -> None:
    """Make every attention layer of `model` process at most `query_chunk_size` queries at a time."""
    for module in model.modules():
        if isinstance(module, AttentionLayer):
            module.query_chunk_size = query_chunk_size
