"""The text conditioners of SD 2.1 and SDXL: prompts -> token embeddings (cross-attention) and a pooled vector.

SD 2.1 reads the penultimate layer of OpenCLIP ViT-H-14's text transformer; SDXL concatenates the
hidden layer 11 of OpenAI's CLIP ViT-L/14 (768) with the penultimate layer of OpenCLIP ViT-bigG-14
(1280) and adds bigG's pooled, projected end-of-text feature to its vector. The OpenCLIP encoders
hold open_clip's own modules; CLIP ViT-L/14 is written out here in the layout of Hugging Face's
CLIPTextModel (`transformer.encoder.layers.0.self_attn.q_proj.weight`), with `hf_keys_from_open_clip`
mapping open_clip's layout onto it. transformers 5.6 dropped the `text_model.` level that files
written by older versions (the official SDXL checkpoint among them) still have; the manifests follow
today's layout. Taught in notebook 06. Reference: `FrozenOpenCLIPEmbedder`, `FrozenOpenCLIPEmbedder2`,
`FrozenCLIPEmbedder` in sgm/modules/encoders/modules.py.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .openclip import END_OF_TEXT, one_tower_clip, tokenize


def check_prompts(text) -> list[str]:
    """A prompt or a sequence of prompts -> a list of prompts, refusing anything that is not text before a
    tokenizer turns it into nonsense ids."""
    prompts = [text] if isinstance(text, str) else list(text)
    if not all(isinstance(prompt, str) for prompt in prompts):
        raise ValueError(f"Text embedders expect a prompt or a list of prompts (str), got {type(text).__name__}.")
    return prompts


def end_of_text_features(hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """`b n d` -> `b d`: each prompt's feature at its end-of-text token (the highest id, first occurrence)."""
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), tokens.argmax(dim=-1)]


# ---------------------------------------------------------------- OpenCLIP (SD 2.1, SDXL's second encoder)


class FrozenOpenCLIPEmbedder2(nn.Module):
    """Prompts -> `b 77 width` token features of the last or penultimate layer (+ a pooled `b embed_dim`).

    legacy=True (SD 2.1) applies the final LayerNorm to the chosen layer. legacy=False (SDXL)
    returns the chosen layer as it is and, with always_return_pooled, also the pooled vector: the
    final-normed last layer at the end-of-text token, times `text_projection`.
    """

    LAYERS = ("last", "penultimate")

    def __init__(self, arch: str = "ViT-H-14", layer: str = "last", always_return_pooled: bool = False,
                 legacy: bool = True):
        super().__init__()
        if layer not in self.LAYERS:
            raise ValueError(f"layer must be one of {self.LAYERS}, got {layer!r}.")
        if always_return_pooled and legacy:
            raise ValueError("always_return_pooled needs legacy=False (as SDXL's config sets it).")
        self.model = one_tower_clip(arch, keep="text")
        self.layer = layer
        self.always_return_pooled = always_return_pooled
        self.legacy = legacy

    def token_ids(self, text) -> torch.Tensor:
        """Prompts -> `b 77` ids as open_clip.tokenize gives them (padded with 0)."""
        return tokenize(check_prompts(text), self.model.context_length)

    def forward(self, text):
        """Prompts -> the chosen layer's token features (and, for SDXL, the pooled vector), as the class docstring
        says; only the blocks up to the deepest layer needed are run."""
        tokens = self.token_ids(text).to(self.model.positional_embedding.device)
        blocks = self.model.transformer.resblocks
        needs_last = self.layer == "last" or self.always_return_pooled
        hidden = self.hidden_states(tokens, len(blocks) if needs_last else len(blocks) - 1)
        chosen = hidden[-1] if self.layer == "last" else hidden[len(blocks) - 1]  # b n width
        if self.legacy:
            return self.model.ln_final(chosen)
        if not self.always_return_pooled:
            return chosen
        pooled = end_of_text_features(self.model.ln_final(hidden[-1]), tokens) @ self.model.text_projection
        return chosen, pooled

    def hidden_states(self, tokens: torch.Tensor, num_layers: int) -> list[torch.Tensor]:
        """[embeddings, after block 1, ..., after block num_layers], each `b n width`."""
        x = self.model.token_embedding(tokens) + self.model.positional_embedding
        n = tokens.shape[1]
        causal_mask = torch.full((n, n), float("-inf"), device=x.device, dtype=x.dtype).triu(1)
        hidden = [x]
        for block in self.model.transformer.resblocks[:num_layers]:
            hidden.append(block(hidden[-1], attn_mask=causal_mask))  # open_clip's blocks run batch first
        return hidden


class FrozenOpenCLIPEmbedder(FrozenOpenCLIPEmbedder2):
    """SD 2.x's text encoder: the legacy behaviour of FrozenOpenCLIPEmbedder2 (final norm, no pooled)."""

    def __init__(self, arch: str = "ViT-H-14", layer: str = "last"):
        super().__init__(arch, layer=layer, always_return_pooled=False, legacy=True)


# ---------------------------------------------------------------- CLIP ViT-L/14 in the Hugging Face layout


class CLIPAttention(nn.Module):
    """Causal multi-head self-attention with separate q / k / v projections."""

    def __init__(self, hidden_size: int, num_attention_heads: int):
        super().__init__()
        self.heads = num_attention_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (rearrange(proj(x), "b n (h d) -> b h n d", h=self.heads) for proj in (self.q_proj, self.k_proj,
                                                                                          self.v_proj))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(rearrange(out, "b h n d -> b n (h d)"))


class CLIPMLP(nn.Module):
    """The block's feed-forward part: hidden -> intermediate -> hidden, with OpenAI CLIP's quick GELU between."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(1.702 * h))  # "quick GELU", the activation OpenAI's CLIP was trained with


class CLIPEncoderLayer(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, hidden_size: int, num_attention_heads: int, intermediate_size: int):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(hidden_size)
        self.self_attn = CLIPAttention(hidden_size, num_attention_heads)
        self.layer_norm2 = nn.LayerNorm(hidden_size)
        self.mlp = CLIPMLP(hidden_size, intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPTextTransformer(nn.Module):
    """Token embeddings + positions -> encoder layers -> final LayerNorm; the keys of Hugging Face's CLIPTextModel."""

    def __init__(self, vocab_size: int, hidden_size: int, intermediate_size: int, num_hidden_layers: int,
                 num_attention_heads: int, max_position_embeddings: int):
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.token_embedding = nn.Embedding(vocab_size, hidden_size)
        self.embeddings.position_embedding = nn.Embedding(max_position_embeddings, hidden_size)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(
            CLIPEncoderLayer(hidden_size, num_attention_heads, intermediate_size) for _ in range(num_hidden_layers)
        )
        self.final_layer_norm = nn.LayerNorm(hidden_size)

    def hidden_states(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """[embeddings, after layer 1, ..., after the last layer], each `b n hidden_size` (no final norm)."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        hidden = [self.embeddings.token_embedding(tokens) + self.embeddings.position_embedding(positions)]
        for layer in self.encoder.layers:
            hidden.append(layer(hidden[-1]))
        return hidden


class FrozenCLIPEmbedder(nn.Module):
    """Prompts -> CLIP ViT-L/14 text features `b 77 768` of the last layer, the pooled token, or a hidden layer.

    SDXL uses layer="hidden", layer_idx=11: the output of the 11th of 12 layers, without the final
    LayerNorm. Prompts are padded with the end-of-text token, as Hugging Face's CLIPTokenizer does.
    The keyword arguments after `always_return_pooled` are Hugging Face's CLIPTextConfig (ViT-L/14 defaults).
    """

    LAYERS = ("last", "pooled", "hidden")

    def __init__(self, layer: str = "last", layer_idx: int | None = None, always_return_pooled: bool = False,
                 vocab_size: int = 49408, hidden_size: int = 768, intermediate_size: int = 3072,
                 num_hidden_layers: int = 12, num_attention_heads: int = 12, max_position_embeddings: int = 77):
        super().__init__()
        if layer not in self.LAYERS:
            raise ValueError(f"layer must be one of {self.LAYERS}, got {layer!r}.")
        if layer == "hidden" and (layer_idx is None or abs(layer_idx) > num_hidden_layers):
            raise ValueError(f"layer='hidden' needs layer_idx between -{num_hidden_layers} and {num_hidden_layers} "
                             f"(0: the embeddings), got {layer_idx}.")
        self.transformer = CLIPTextTransformer(vocab_size, hidden_size, intermediate_size, num_hidden_layers,
                                               num_attention_heads, max_position_embeddings)
        self.layer, self.layer_idx = layer, layer_idx
        self.always_return_pooled = always_return_pooled
        self.max_length = max_position_embeddings

    def token_ids(self, text) -> torch.Tensor:
        """Prompts -> `b 77` ids as Hugging Face's CLIPTokenizer gives them (padded with the end-of-text id)."""
        return tokenize(check_prompts(text), self.max_length, pad_token_id=END_OF_TEXT)

    def forward(self, text):
        """Prompts -> the features of `layer` ("last": final-normed last layer; "pooled": the end-of-text feature
        as one token; "hidden": after layer `layer_idx`), plus the pooled `b hidden_size` with
        always_return_pooled."""
        text_model = self.transformer
        tokens = self.token_ids(text)
        hidden = text_model.hidden_states(tokens.to(text_model.final_layer_norm.weight.device))
        last = text_model.final_layer_norm(hidden[-1])
        pooled = end_of_text_features(last, tokens.to(last.device))  # b hidden_size
        if self.layer == "last":
            chosen = last
        elif self.layer == "pooled":
            chosen = pooled[:, None, :]  # b 1 hidden_size
        else:
            chosen = hidden[self.layer_idx]  # 0: the embeddings, i: after layer i
        return (chosen, pooled) if self.always_return_pooled else chosen


def hf_keys_from_open_clip(state_dict: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """open_clip's text tower (`token_embedding.weight`, `transformer.resblocks.N...`) -> the Hugging Face
    keys of `FrozenCLIPEmbedder.transformer` (`embeddings...`, `encoder.layers.N...`, `final_layer_norm...`).

    open_clip keeps q, k and v in one `in_proj` matrix; Hugging Face has three. Keys outside the text
    tower (visual, logit_scale, text_projection) are left out. `prefix` is stripped from the keys first.
    """
    renames = {
        "ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
        "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
    }
    converted = {}
    for key, tensor in state_dict.items():
        key = key.removeprefix(prefix)
        if key == "token_embedding.weight":
            converted["embeddings.token_embedding.weight"] = tensor
        elif key == "positional_embedding":
            converted["embeddings.position_embedding.weight"] = tensor
        elif key.startswith("ln_final."):
            converted["final_layer_norm." + key.removeprefix("ln_final.")] = tensor
        elif key.startswith("transformer.resblocks."):
            index, name = key.removeprefix("transformer.resblocks.").split(".", 1)
            layer = f"encoder.layers.{index}."
            if name.startswith("attn.in_proj_"):  # in_proj_weight / in_proj_bias: q, k, v stacked
                kind = name.removeprefix("attn.in_proj_")
                for part, chunk in zip(("q", "k", "v"), tensor.chunk(3, dim=0), strict=True):
                    converted[f"{layer}self_attn.{part}_proj.{kind}"] = chunk
            else:
                module, parameter = name.rsplit(".", 1)
                converted[f"{layer}{renames[module]}.{parameter}"] = tensor
    return converted
