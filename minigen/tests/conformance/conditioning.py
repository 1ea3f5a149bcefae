"""Handlers for the conditioner cases (cond_*): build the embedder or conditioner from case.json, load, run.

The reference configs in the cases go through `minigen.presets.conditioners`' readers, so the cases
also check that an official-style YAML maps onto minigen. Tiny open_clip architectures named in
the kwargs are registered from the JSON config the notes give for them.
"""

import json

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


def register_tiny_archs(case: Case) -> None:
    """Register each architecture open_clip does not know with the first JSON config after its name in the notes."""
    notes = case.spec.get("notes", "")
    for name in sorted(arch_names(case.kwargs) - set(open_clip.list_models())):
        start = notes.find(name)
        brace = notes.find("{", start) if start >= 0 else -1
        if brace < 0:
            raise ValueError(f"case {case.id}: open_clip architecture {name!r} is neither known nor described in notes")
        config, _ = json.JSONDecoder().raw_decode(notes, brace)
        register_open_clip_arch(name, config)


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


@handles("GeneralConditioner")
def run_conditioner(case: Case) -> dict:
    register_tiny_archs(case)
    conditioner = loaded(ConditionerConfig.from_reference(case.kwargs).build(), case)
    method = getattr(conditioner, case.call.get("method", "forward"))
    return flatten(method(*case.call_args(), **case.call_kwargs()), prefixes=("c", "uc"))
