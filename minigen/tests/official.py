"""The official checkpoints' tensor tables (minigen/manifests/, read by minigen.checkpoint.manifest), for the
tests that compare presets with them."""

from minigen.checkpoint import manifest


def manifest_shapes(name: str, prefix: str = "") -> dict[str, list[int]]:
    """{key: shape} of the manifest's tensors whose key starts with `prefix` (keys kept whole)."""
    return {key: entry["shape"] for key, entry in manifest(name)["tensors"].items() if key.startswith(prefix)}
