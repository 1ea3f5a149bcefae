"""Scaled dot-product attention: the one attention kernel every minigen network uses.

`attention(q, k, v)` computes softmax(q k^T / sqrt(d)) v with PyTorch's fused
`scaled_dot_product_attention`; `query_chunk_size=` splits the queries to bound memory (useful on CPU,
where a 4096 x 4096 score matrix per head is large). `naive_attention` writes the same maths out in
full, for teaching and benchmarks. Taught in notebook 04; replaces the reference's attention backends
in `sgm/modules/attention.py` and `sgm/modules/diffusionmodules/model.py`.
"""

import torch
import torch.nn.functional as F

# The reference selects an attention implementation by name; all compute the same maths, so every
# name maps to `attention` here ("-xformers" picked the xformers kernel, "vanilla" the autoencoder's).
ATTENTION_TYPES = ("softmax", "softmax-xformers", "vanilla", "vanilla-xformers")
MAX_CUDA_SEQUENCES = 32768  # batch x heads per fused-attention call on CUDA


def check_attention_type(attn_type: str) -> None:
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
        return F.scaled_dot_product_attention(q, k, v)
    if query_chunk_size < 1:
        raise ValueError(f"query_chunk_size must be a positive number of queries, got {query_chunk_size}.")
    chunks = [F.scaled_dot_product_attention(q_chunk, k, v) for q_chunk in q.split(query_chunk_size, dim=-2)]
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
