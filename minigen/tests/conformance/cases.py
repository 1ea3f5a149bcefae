"""Finding, loading and checking golden cases; the registry that maps reference components to handlers.

A handler is a function `handler(case) -> {output name: tensor}` registered for one or more
reference component names (the last part of case.json's "component"). Everything a handler needs
comes from the case folder, so new cases of a known component run without code changes.
"""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "golden"
REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_DIR = REPO_ROOT.parent / "shared" / "reference" / "golden"
ENV_VAR = "MINIGEN_GOLDEN_DIR"

HANDLERS: dict[str, Callable] = {}

# The reference's forwards of these components name the frames per video `timesteps`; minigen's call it
# `num_video_frames` (its `timesteps` is always the noise level), so the cases' call kwarg is renamed.
FRAMES_CALLED_TIMESTEPS = ("SpatialVideoTransformer", "VideoTransformerBlock", "VideoDecoder")


def handles(*component_names: str):
    """Register the decorated function as the handler of these reference components."""

    def register(handler):
        for name in component_names:
            HANDLERS[name] = handler
        return handler

    return register


@dataclass
class Case:
    folder: Path
    spec: dict
    inputs: dict = field(default_factory=dict)  # flat: "cond.crossattn" -> tensor
    expected: dict = field(default_factory=dict)
    weights: dict | None = None

    @property
    def id(self) -> str:
        return self.spec["id"]

    @property
    def component(self) -> str:
        """The reference class or function name, e.g. "EulerEDMSampler"."""
        return self.spec["component"].rsplit(".", 1)[-1]

    @property
    def kwargs(self) -> dict:
        return self.spec.get("kwargs", {})

    @property
    def call(self) -> dict:
        return self.spec.get("call", {})

    def input_group(self, name: str) -> dict:
        """Inputs flattened as "<name>.<key>" gathered back into a dict {key: tensor}."""
        prefix = name + "."
        return {key[len(prefix):]: value for key, value in self.inputs.items() if key.startswith(prefix)}

    def text_group(self, name: str) -> dict:
        """String inputs (call.text_inputs) flattened as "<name>.<key>", gathered into a dict {key: [str, ...]}."""
        prefix = name + "."
        return {key[len(prefix):]: list(value) for key, value in self.call.get("text_inputs", {}).items()
                if key.startswith(prefix)}

    def arg(self, name: str):
        """A call argument by name: a tensor, or a dict of tensors (and prompts) stored as "<name>.<key>"."""
        if name in self.inputs:
            return self.inputs[name]
        group = {**self.input_group(name), **self.text_group(name)}
        if not group:
            raise KeyError(f"case {self.id}: no input named {name!r}")
        return group

    def call_args(self) -> list:
        return [self.arg(name) for name in self.call.get("args", [])]

    def call_kwargs(self) -> dict:
        kwargs = dict(self.call.get("kwargs", {}))
        if self.component in FRAMES_CALLED_TIMESTEPS and "timesteps" in kwargs:
            kwargs["num_video_frames"] = kwargs.pop("timesteps")
        kwargs.update({key: self.inputs[name] for key, name in self.call.get("tensor_kwargs", {}).items()})
        return kwargs


def load_case(folder: Path) -> Case:
    folder = Path(folder)
    case = Case(folder=folder, spec=json.loads((folder / "case.json").read_text()))
    for attribute, filename in (("inputs", "inputs.safetensors"), ("expected", "outputs.safetensors")):
        if (folder / filename).exists():
            setattr(case, attribute, load_file(folder / filename))
    if (folder / "weights.safetensors").exists():
        case.weights = load_file(folder / "weights.safetensors")
    return case


def case_folders(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).iterdir() if (p / "case.json").is_file())


def discover() -> tuple[list[Path], str | None]:
    """The case folders to run, and a reason when some cases could not be found.

    With MINIGEN_GOLDEN_DIR set, that folder's cases alone. Otherwise the small cases bundled in
    minigen/tests/golden/ plus the weight-carrying ones read from ../shared/reference/golden/.
    """
    override = os.environ.get(ENV_VAR)
    if override:
        if not Path(override).is_dir():
            raise FileNotFoundError(f"{ENV_VAR}={override!r} is not a folder of golden cases.")
        return case_folders(Path(override)), None
    folders = case_folders(BUNDLED_DIR)
    if not SHARED_DIR.is_dir():
        return folders, f"{SHARED_DIR} not found: the weight-carrying golden cases were not run"
    bundled = {p.name for p in folders}
    return folders + [p for p in case_folders(SHARED_DIR) if p.name not in bundled], None


def run_case(case: Case) -> dict:
    """Run a case through its handler; the caller compares the result with `case.expected`."""
    return HANDLERS[case.component](case)


def assert_outputs_match(case: Case, actual: dict) -> None:
    names = case.spec["outputs"]
    missing = [name for name in names if name not in actual]
    assert not missing, f"handler for {case.component} produced no {missing}"
    for name in names:
        expected = case.expected[name]
        got = torch.as_tensor(actual[name]).detach().cpu()
        assert got.shape == expected.shape, (
            f"{case.id}: {name} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        )
        torch.testing.assert_close(
            got.to(expected.dtype) if expected.dtype.is_floating_point else got,
            expected,
            rtol=case.spec["rtol"],
            atol=case.spec["atol"],
            check_dtype=False,
            msg=lambda detail, name=name: f"{case.id}: output {name!r} differs from the reference. {detail}",
        )
