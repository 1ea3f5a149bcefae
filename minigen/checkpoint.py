"""Loading official checkpoints: safetensors only, memory-mapped, strict, with a report a person can read.

`load_checkpoint` fills a model (typically built on the meta device, so billions of parameters are
never randomly initialised first) one tensor at a time from a memory-mapped safetensors file, so
the weights never sit in RAM twice. `inspect_checkpoint` tells which official model a file holds by
comparing its tensor table with the bundled manifests. Corresponds to the reference's
`sgm/util.py` checkpoint loading (which uses strict=False and pickle files; minigen does neither).
"""

import functools
import gzip
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from .presets import SAME_LAYOUT

MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"  # every official checkpoint's tensor table
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

# Buffers that older library versions wrote into official files although today's modules no longer hold
# them: accepted by name when present in a file, never by falling back to strict=False.
KNOWN_LEGACY_BUFFERS = (
    re.compile(r".*transformer\.(text_model\.)?embeddings\.position_ids$"),  # CLIP text model (transformers < 4.31)
)

# Keys that official files spell differently from today's modules: (pattern in the file, replacement).
# SDXL's CLIP-L was saved by transformers < 5.6, whose CLIPTextModel nested everything under `text_model.`.
KNOWN_KEY_RENAMES = (
    (re.compile(r"^(conditioner\.embedders\.\d+\.transformer\.)text_model\."), r"\1"),
)

# the official checkpoint's parts, by key prefix
PARTS = ("model.diffusion_model", "first_stage_model", "conditioner", "denoiser")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as asked; the message says why and what to do."""


def is_pickle(path: Path) -> bool:
    """A pickle checkpoint: by its suffix (.ckpt, .pt, ...) or by the zip signature torch.save starts files with."""
    with path.open("rb") as file:
        return path.suffix in PICKLE_SUFFIXES or file.read(4) == b"PK\x03\x04"


def pickle_refusal(path: Path, alternative: str) -> CheckpointError:
    """Why minigen will not read the pickle file at `path`, and what to do instead (`alternative`)."""
    return CheckpointError(f"{path.name} is a pickle checkpoint: loading one can run arbitrary code. Convert it to "
                           f"safetensors (docs/troubleshooting.md shows how), {alternative}.")


def part_of(key: str) -> str:
    """The part of the model a checkpoint key belongs to (`model.diffusion_model`, `first_stage_model`, ...: one of
    PARTS), or the key's first name when it is in none, so that inspect_checkpoint can count parameters per part."""
    return next((part for part in PARTS if key.startswith(part + ".")), key.split(".", 1)[0])


@dataclass
class LoadReport:
    """What a load found: counts and every key that did not fit."""

    path: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, model shape, file shape
    legacy_skipped: list[str] = field(default_factory=list)  # known legacy buffers present in the file

    @property
    def ok(self) -> bool:
        """Every tensor fitted: nothing missing, nothing unexpected, no shape mismatch (legacy buffers allowed)."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [f"Checkpoint {self.path}: {self.loaded} tensors loaded."]
        if self.missing:
            lines.append(f"{len(self.missing)} keys of the model are missing from the file, by module:")
            lines += [f"  {prefix}.* ({count})" for prefix, count in _group_by_prefix(self.missing)]
        if self.unexpected:
            lines.append(f"{len(self.unexpected)} keys in the file are not in the model, by module:")
            lines += [f"  {prefix}.* ({count})" for prefix, count in _group_by_prefix(self.unexpected)]
        if self.mismatched:
            lines.append(f"{len(self.mismatched)} tensors have the wrong shape:")
            lines += [f"  {key}: model {list(model)} vs file {list(file)}" for key, model, file in self.mismatched]
        if self.legacy_skipped:
            lines.append(f"Skipped {len(self.legacy_skipped)} known legacy buffers: {', '.join(self.legacy_skipped)}")
        if not self.ok:
            lines.append("Is this the checkpoint of the model you built? `minigen.checkpoint.inspect_checkpoint(path)`"
                         " tells which official model a file holds.")
        return "\n".join(lines)


def _group_by_prefix(keys: list[str], depth: int = 3) -> list[tuple[str, int]]:
    """Count keys by their first `depth` dotted components, so 600 missing keys read as a few lines."""
    counts = Counter(".".join(key.split(".")[:depth]) for key in keys)
    return sorted(counts.items())


def canonical_key(key: str) -> str:
    """The key under which today's modules hold the tensor that a file stores as `key`."""
    for pattern, replacement in KNOWN_KEY_RENAMES:
        key = pattern.sub(replacement, key)
    return key


def _open_tensors(path: Path, allow_pickle: bool):
    """A (key -> shape) table and a getter for one tensor, for safetensors or (opt-in) pickle files."""
    if not path.is_file():
        raise CheckpointError(f"No checkpoint file at {path}.")
    if is_pickle(path):
        if not allow_pickle:
            raise pickle_refusal(path, "or pass allow_pickle=True to load it with torch.load(weights_only=True)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many kinds for damaged or unsafe pickles
            raise CheckpointError(f"Could not read {path} as a weights-only pickle checkpoint: {error}") from error
        state = state.get("state_dict", state)
        return {key: tuple(value.shape) for key, value in state.items()}, state.__getitem__
    read_header(path)  # a truncated file is named as such before safetensors reads it
    try:
        mapped = MappedFile(path)
        shapes = {key: tuple(mapped.handle.get_slice(key).get_shape()) for key in mapped.handle.keys()}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(
            f"{path} is not a readable safetensors file (truncated or corrupt? re-download it): {error}"
        ) from error
    return shapes, mapped.get_tensor


class MappedFile:
    """A safetensors file's tensors, memory-mapped, with the mapping renewed every `window` bytes read.

    A tensor taken in the file's dtype is a view of the mapping (no copy; its pages are read when first used).
    A load that converts (float16 -> bfloat16, say) copies each tensor and would otherwise keep every page it
    read mapped until the end: resident twice, once as file pages and once as the copies. Opening the file
    anew every `window` bytes lets the pages already copied go (views still hold their own mapping).
    """

    def __init__(self, path: Path, window: int = 64 * 2**20):
        self.path, self.window = path, window
        self.handle = safe_open(str(path), framework="pt", device="cpu")
        self.bytes_read = 0

    def get_tensor(self, key: str) -> torch.Tensor:
        if self.bytes_read >= self.window:
            self.handle, self.bytes_read = safe_open(str(self.path), framework="pt", device="cpu"), 0
        tensor = self.handle.get_tensor(key)
        self.bytes_read += tensor.nbytes
        return tensor


def _prepare_tensor(tensor: torch.Tensor, like: torch.Tensor, dtype, device) -> torch.Tensor:
    if tensor.is_floating_point():
        tensor = tensor.to(dtype or (like.dtype if like.device.type != "meta" else tensor.dtype))
    return tensor.to(device or (like.device if like.device.type != "meta" else "cpu"))


def load_checkpoint(model: nn.Module, path, strict: bool = True, dtype: torch.dtype | None = None,
                    device=None, allow_pickle: bool = False) -> LoadReport:
    """Load the weights in `path` into `model`, which may live on the meta device or be materialised.

    strict: any missing, unexpected or mis-shaped key raises a CheckpointError holding the report;
    with strict=False the report is printed and returned and the fitting tensors are loaded.
    dtype / device: where floating tensors end up (default: the model's, or the file's for a meta model).
    """
    path = Path(path)
    file_shapes, get_file_tensor = _open_tensors(path, allow_pickle)
    file_key = {canonical_key(key): key for key in file_shapes}  # model key -> the file's spelling
    shapes = {key: file_shapes[original] for key, original in file_key.items()}
    expected = model.state_dict(keep_vars=True)
    report = LoadReport(path=str(path))
    report.legacy_skipped = [k for k in shapes if k not in expected and any(p.match(k) for p in KNOWN_LEGACY_BUFFERS)]
    report.missing = [key for key in expected if key not in shapes]
    report.unexpected = [key for key in shapes if key not in expected and key not in report.legacy_skipped]
    report.mismatched = [(key, tuple(expected[key].shape), shapes[key])
                         for key in expected if key in shapes and tuple(expected[key].shape) != shapes[key]]
    if strict and not report.ok:
        raise CheckpointError(str(report))
    fitting = [key for key in expected if key in shapes and tuple(expected[key].shape) == shapes[key]]
    for key in fitting:  # one tensor at a time: at most one tensor more than the model in memory
        tensor = _prepare_tensor(get_file_tensor(file_key[key]), expected[key], dtype, device)
        _set_tensor(model, key, tensor)
        report.loaded += 1
    if not report.ok:
        print(report)
    return report


def _set_tensor(model: nn.Module, key: str, tensor: torch.Tensor) -> None:
    """Put `tensor` in place of the parameter or buffer called `key` (replacing meta tensors)."""
    module_path, _, name = key.rpartition(".")
    module = model.get_submodule(module_path)
    if name in module._parameters:
        old = module._parameters[name]
        module._parameters[name] = nn.Parameter(tensor, requires_grad=old.requires_grad)
    else:
        module._buffers[name] = tensor


# ---------------------------------------------------------------- identifying a file


@dataclass
class CheckpointInfo:
    """What a checkpoint file holds, and which official model(s) it matches."""

    path: str
    num_tensors: int
    dtypes: dict[str, int]
    parameters_per_part: dict[str, int]
    matches: list[str]  # official models whose tensor tables the file reproduces exactly
    closest: str | None  # otherwise the nearest one, with what differs
    missing_from_closest: int = 0
    extra_over_closest: int = 0

    def __str__(self) -> str:
        lines = [f"{self.path}: {self.num_tensors} tensors, dtypes {self.dtypes}"]
        lines += [f"  {part}: {count / 1e6:,.1f} M parameters" for part, count in self.parameters_per_part.items()]
        if self.matches:
            lines.append(f"Matches the official model(s): {', '.join(self.matches)}")
        elif self.closest:
            lines.append(f"No exact match; closest is {self.closest} ({self.missing_from_closest} of its tensors "
                         f"missing, {self.extra_over_closest} extra or mis-shaped)")
        return "\n".join(lines)


@functools.cache
def manifest(name: str, manifest_dir: Path = MANIFEST_DIR) -> dict:
    """An official checkpoint's manifest, `{"tensors": {key: {"shape", "dtype", ...}}, "param_counts": {...}}`,
    read once per process. A preset whose file has another's tensor table (presets.SAME_LAYOUT) reads that one."""
    path = Path(manifest_dir) / f"{SAME_LAYOUT.get(name, name)}.json.gz"
    return json.loads(gzip.decompress(path.read_bytes()))


def _manifests(manifest_dir: Path) -> dict[str, dict[str, tuple]]:
    """{name: {key: shape}} of every manifest in `manifest_dir`."""
    names = sorted(file.name.removesuffix(".json.gz") for file in Path(manifest_dir).glob("*.json.gz"))
    return {name: {key: tuple(entry["shape"]) for key, entry in manifest(name, Path(manifest_dir))["tensors"].items()}
            for name in names}


def read_header(path: Path) -> dict[str, tuple[tuple, str]]:
    """key -> (shape, dtype) from a safetensors header, reading no tensor data; the file must hold all the data
    the header describes (a download cut short keeps a valid header)."""
    try:
        with path.open("rb") as file:
            header_size = int.from_bytes(file.read(8), "little")
            if not 0 < header_size <= path.stat().st_size - 8:
                raise ValueError("header size does not fit the file")
            header = json.loads(file.read(header_size))
        header.pop("__metadata__", None)
        table = {key: (tuple(entry["shape"]), entry["dtype"]) for key, entry in header.items()}
        data_size = max((entry["data_offsets"][1] for entry in header.values()), default=0)
    except (ValueError, OSError, AttributeError, TypeError, KeyError, IndexError) as error:  # any malformed header
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {error}") from error
    expected, found = 8 + header_size + data_size, path.stat().st_size
    if found < expected:
        raise CheckpointError(f"{path} is truncated: its safetensors header describes {expected:,} bytes, the file "
                              f"has {found:,} (a download cut short?); re-download it.")
    return table


def inspect_checkpoint(path, manifest_dir=MANIFEST_DIR) -> CheckpointInfo:
    """Identify a safetensors checkpoint by its tensor table (names and shapes), reading no weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint file at {path}.")
    if is_pickle(path):
        raise pickle_refusal(path, "then inspect that")
    table = read_header(path)
    shapes = {canonical_key(key): shape for key, (shape, _) in table.items()}
    per_part = defaultdict(int)
    for key, shape in shapes.items():
        per_part[part_of(key)] += int(torch.Size(shape).numel())
    info = CheckpointInfo(str(path), len(table), dict(Counter(dtype for _, dtype in table.values())),
                          dict(per_part), matches=[], closest=None)
    scores = {}
    for name, manifest in _manifests(manifest_dir).items():
        legacy = {k for k in shapes if k not in manifest and any(p.match(k) for p in KNOWN_LEGACY_BUFFERS)}
        same = sum(1 for key, shape in manifest.items() if shapes.get(key) == shape)
        missing, extra = len(manifest) - same, len(shapes) - len(legacy) - same
        if missing == extra == 0:
            info.matches.append(name)
        scores[name] = (missing + extra, missing, extra)
    if not info.matches and scores:
        info.closest = min(scores, key=scores.get)
        _, info.missing_from_closest, info.extra_over_closest = scores[info.closest]
    return info
