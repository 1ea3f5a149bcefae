"""OpenCLIP for the conditioners: named architectures, one-tower CLIP models, and the CLIP tokenizer.

The image and text embedders hold open_clip's `CLIP` module with the tower they do not use deleted,
exactly as the reference does, so their checkpoint keys are open_clip's own
(`model.transformer.resblocks.0.attn.in_proj_weight`, `open_clip.model.visual.conv1.weight`).
Taught in notebook 06. Reference: the `open_clip.create_model_and_transforms` calls in
sgm/modules/encoders/modules.py.
"""

import json
import tempfile
import warnings
from functools import cache
from pathlib import Path

import open_clip
import torch

# token ids of CLIP's byte-pair vocabulary (49408 entries): start and end of text
START_OF_TEXT, END_OF_TEXT = 49406, 49407


def register_open_clip_arch(name: str, config: dict) -> None:
    """Make `name` an open_clip architecture (`{"embed_dim", "vision_cfg", "text_cfg"}`), e.g. a tiny one.

    Uses open_clip's public `add_model_config`, so `open_clip.create_model(name)` knows it too.
    """
    missing = {"embed_dim", "vision_cfg", "text_cfg"} - set(config)
    if missing:
        raise ValueError(f"open_clip config {name!r} lacks {sorted(missing)}; it needs embed_dim, vision_cfg and "
                         "text_cfg.")
    if name in open_clip.list_models() and open_clip.get_model_config(name) == config:
        return
    path = Path(tempfile.mkdtemp(prefix="minigen_open_clip_")) / f"{name}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)


def one_tower_clip(arch: str, keep: str) -> open_clip.CLIP:
    """open_clip's CLIP `arch` without the tower that is not kept (`keep` is "text" or "visual").

    Built directly from the architecture's config (no download, no device move), so that inside
    `torch.device("meta")` even ViT-bigG takes a fraction of a second. The text tower's
    token embedding, positional embedding, final norm and projection sit on the CLIP module itself and
    stay when only the visual tower is kept, as in the official checkpoints.
    """
    if arch not in open_clip.list_models():
        raise ValueError(f"Unknown open_clip architecture {arch!r}; register it with register_open_clip_arch "
                         f"or use one of open_clip.list_models(), e.g. ViT-H-14, ViT-bigG-14.")
    config = open_clip.get_model_config(arch)
    if config.pop("custom_text", False) or "hf_model_name" in config["text_cfg"]:
        raise ValueError(f"open_clip architecture {arch!r} has a custom text tower; the conditioners use plain CLIP.")
    model = open_clip.CLIP(**config)
    if keep == "text":
        del model.visual
    elif keep == "visual":
        del model.transformer
    else:
        raise ValueError(f"keep must be 'text' or 'visual', got {keep!r}.")
    # the causal mask is not a weight (not in checkpoints); the text embedders build it when they run,
    # so a model built on the meta device holds nothing that loading a checkpoint does not fill
    del model.attn_mask
    return model


@cache
def clip_tokenizer() -> open_clip.SimpleTokenizer:
    """CLIP's byte-pair tokenizer, bundled with open_clip (works offline); loaded once."""
    return open_clip.SimpleTokenizer()


def tokenize(texts: str | list[str], context_length: int = 77, pad_token_id: int = 0) -> torch.Tensor:
    """Prompts -> token ids `b context_length`: start token, text tokens, end token, then padding.

    A prompt with more than `context_length - 2` tokens is cut (keeping its end token) with a
    warning. open_clip pads with 0; Hugging Face's CLIPTokenizer (SDXL's first text encoder) pads with
    the end token, which changes what the padded positions hold.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    tokens = torch.full((len(texts), context_length), pad_token_id, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = clip_tokenizer().encode(text)
        if len(ids) > context_length - 2:
            warnings.warn(f"Prompt {row} has {len(ids)} tokens; the text encoder reads at most "
                          f"{context_length - 2}, so it was truncated: {text[:60]!r}...", stacklevel=3)
            ids = ids[: context_length - 2]
        ids = [START_OF_TEXT, *ids, END_OF_TEXT]
        tokens[row, : len(ids)] = torch.tensor(ids)
    return tokens
