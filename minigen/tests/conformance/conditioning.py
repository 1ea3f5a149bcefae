"""Handlers for the conditioner cases (cond_*): build the embedder or conditioner from case.json, load, run.

The reference configs in the cases go through `minigen.presets.conditioners`' readers, so the cases
also check that an official-style YAML maps onto minigen. Tiny open_clip architectures named in
the kwargs are registered from the JSON config the notes give for them; a FrozenCLIPEmbedder whose
`version` is a tiny local model takes its sizes from the CLIPTextConfig the notes give. Text cases
check the tokenizer's ids on their own before the features.
"""

import json
import warnings
from contextlib import contextmanager

import open_clip
import torch

from minigen.conditioning import register_open_clip_arch
from minigen.presets.conditioners import ConditionerConfig, part_from_reference

from .cases import Case, handles


def arch_names(value) -> set[str]:
    """Every `arch` argument in a (nested) reference config."""
    if isinstance(value, dict):
        names = {value["arch"]} if isinstance(value.get("arch"), str) else set()
        return names.union(*(arch_names(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(arch_names(item) for item in value))
    return set()


def json_after(notes: str, name: str, case: Case) -> dict:
    """The first JSON object written after `name` in the notes."""
    start = notes.find(name)
    brace = notes.find("{", start) if start >= 0 else -1
    if brace < 0:
        raise ValueError(f"case {case.id}: {name!r} is neither known nor described in notes")
    config, _ = json.JSONDecoder().raw_decode(notes, brace)
    return config


def register_tiny_archs(case: Case) -> None:
    """Register each architecture open_clip does not know with the first JSON config after its name in the notes."""
    for name in sorted(arch_names(case.kwargs) - set(open_clip.list_models())):
        register_open_clip_arch(name, json_after(case.spec.get("notes", ""), name, case))


# Hugging Face CLIPTextConfig entries FrozenCLIPEmbedder takes, and the fixed choices it implements
CLIP_TEXT_SIZES = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                   "max_position_embeddings")
CLIP_TEXT_FIXED = {"hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "eos_token_id": 2}


def with_clip_text_sizes(config, case: Case):
    """A copy of a reference config where each FrozenCLIPEmbedder whose `version` is not the official CLIP ViT-L/14
    gets the sizes of the CLIPTextConfig the notes give for that version (the reference reads them from the folder)."""
    if isinstance(config, list):
        return [with_clip_text_sizes(item, case) for item in config]
    if not isinstance(config, dict):
        return config
    config = {key: with_clip_text_sizes(value, case) for key, value in config.items()}
    version = config.get("params", {}).get("version")
    if str(config.get("target", "")).endswith(".FrozenCLIPEmbedder") and version != "openai/clip-vit-large-patch14":
        text_config = json_after(case.spec.get("notes", ""), version, case)
        unsupported = {key: text_config.get(key) for key, value in CLIP_TEXT_FIXED.items()
                       if text_config.get(key, value) != value}
        if unsupported:
            raise ValueError(f"case {case.id}: FrozenCLIPEmbedder implements {CLIP_TEXT_FIXED}, not {unsupported}")
        config["params"] = {**config["params"], **{key: text_config[key] for key in CLIP_TEXT_SIZES}}
    return config


def loaded(module: torch.nn.Module, case: Case) -> torch.nn.Module:
    module.load_state_dict(case.weights or {}, strict=True)
    return module.eval()


def flatten(outputs, prefixes: tuple[str, ...]) -> dict:
    """(dict, dict) -> {"c.key": ..., "uc.key": ...}; a single dict keeps its keys."""
    if isinstance(outputs, dict):
        return dict(outputs)
    return {f"{prefix}.{key}": value for prefix, group in zip(prefixes, outputs, strict=True)
            for key, value in group.items()}


@handles("ConcatTimestepEmbedderND", "FrozenOpenCLIPImageEmbedder", "FrozenOpenCLIPImagePredictionEmbedder",
         "VideoPredictionEmbedderWithEncoder")
def run_embedder(case: Case) -> dict:
    register_tiny_archs(case)
    embedder = loaded(part_from_reference({"target": case.spec["component"], "params": case.kwargs}).build(), case)
    with torch.no_grad():
        output = getattr(embedder, case.call.get("method", "forward"))(*case.call_args(), **case.call_kwargs())
    outputs = output if isinstance(output, tuple) else (output,)
    return dict(zip(case.spec["outputs"], outputs, strict=True))


@contextmanager
def truncation_expected():
    """The text cases include a prompt longer than 77 tokens on purpose: its truncation warning is expected."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Prompt \d+ has \d+ tokens")
        yield


@handles("FrozenCLIPEmbedder", "FrozenOpenCLIPEmbedder", "FrozenOpenCLIPEmbedder2")
def run_text_embedder(case: Case) -> dict:
    """The stored tokenizer ids are checked on their own first, so that a tokenisation difference is named as one."""
    register_tiny_archs(case)
    config = with_clip_text_sizes({"target": case.spec["component"], "params": case.kwargs}, case)
    embedder = loaded(part_from_reference(config).build(), case)
    with truncation_expected(), torch.no_grad():
        check_token_ids(case, embedder, case.call_kwargs()["text"], case.inputs["tokens"])
        output = embedder(**case.call_kwargs())
    outputs = output if isinstance(output, tuple) else (output,)
    return dict(zip(case.spec["outputs"], outputs, strict=True))


def check_token_ids(case: Case, embedder, prompts: list[str], stored: torch.Tensor) -> None:
    ids = embedder.token_ids(prompts)
    assert torch.equal(ids, stored), (
        f"{case.id}: {type(embedder).__name__} tokenises differently from the reference, rows "
        f"{sorted(set((ids != stored).nonzero()[:, 0].tolist()))}")


# conditioner cases store the ids of each text embedder class under this input name
TOKEN_INPUTS = {"FrozenCLIPEmbedder": "tokens_clip", "FrozenOpenCLIPEmbedder2": "tokens_openclip",
                "FrozenOpenCLIPEmbedder": "tokens_openclip"}


@handles("GeneralConditioner")
def run_conditioner(case: Case) -> dict:
    register_tiny_archs(case)
    conditioner = loaded(ConditionerConfig.from_reference(with_clip_text_sizes(case.kwargs, case)).build(), case)
    args = case.call_args()
    method = getattr(conditioner, case.call.get("method", "forward"))
    with truncation_expected():
        for entry in conditioner.entries:
            name = TOKEN_INPUTS.get(type(entry.embedder).__name__)
            if name in case.inputs:
                check_token_ids(case, entry.embedder, args[0][entry.input_key], case.inputs[name])
        return flatten(method(*args, **case.call_kwargs()), prefixes=("c", "uc"))
