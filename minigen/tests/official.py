"""The official checkpoints' tensor tables (the manifests bundled in minigen/tests/manifests/), for the tests
that compare presets with them."""

import functools
import gzip
import json
from pathlib import Path

MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"
SAME_LAYOUT = {"sd_xl_turbo": "sd_xl_base"}  # presets without a manifest of their own


@functools.cache
def manifest(name: str) -> dict:
    """{"tensors": {key: {"shape", "dtype", ...}}, "param_counts": {part: count}} of an official preset."""
    return json.loads(gzip.decompress((MANIFEST_DIR / f"{SAME_LAYOUT.get(name, name)}.json.gz").read_bytes()))


def manifest_shapes(name: str, prefix: str = "") -> dict[str, list[int]]:
    """{key: shape} of the manifest's tensors whose key starts with `prefix` (keys kept whole)."""
    return {key: entry["shape"] for key, entry in manifest(name)["tensors"].items() if key.startswith(prefix)}
