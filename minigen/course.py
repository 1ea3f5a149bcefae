"""What the course notebooks share: the switch between their tiny sections (any CPU) and full-scale ones (a GPU
and the official checkpoints).

Every notebook runs at tiny scale as committed. A full-scale section asks first:

    scale = full_scale("svd.safetensors")
    if scale:
        pipe = SVDPipeline.from_checkpoint(scale.checkpoints["svd.safetensors"], device=scale.device)

and on a laptop (or under nbval) `scale` is false and prints exactly what is missing: the switch
`MINIGEN_FULL_SCALE=1`, a CUDA device, or a checkpoint file in `$MINIGEN_CHECKPOINTS` (default
`./checkpoints`). The same code paths run at tiny scale in the tests.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

SWITCH = "MINIGEN_FULL_SCALE"  # set to 1 to run the full-scale sections
CHECKPOINTS = "MINIGEN_CHECKPOINTS"  # the folder holding the official .safetensors files
DEFAULT_CHECKPOINTS = Path("checkpoints")


@dataclass(frozen=True)
class FullScale:
    """The answer of `full_scale`: true when the section can run, with where and with which files."""

    missing: list[str] = field(default_factory=list)  # what stops the section, in words; empty when it can run
    device: str | None = None  # "cuda" when it can run
    checkpoints: dict[str, Path] = field(default_factory=dict)  # file name -> path, every one found

    def __bool__(self) -> bool:
        return not self.missing


def full_scale(*files: str, need_cuda: bool = True, quiet: bool = False) -> FullScale:
    """Can a full-scale section that reads the checkpoint `files` (e.g. "svd.safetensors") run here?

    It runs only when asked to ($MINIGEN_FULL_SCALE=1), on a CUDA device (unless `need_cuda=False`), with every
    file present in $MINIGEN_CHECKPOINTS (default ./checkpoints). Otherwise the result is false and, unless
    `quiet`, one line says everything that is missing, so the section skips cleanly.
    """
    folder = Path(os.environ.get(CHECKPOINTS, DEFAULT_CHECKPOINTS)).expanduser()
    found = {name: folder / name for name in files if (folder / name).is_file()}
    missing = []
    if os.environ.get(SWITCH) != "1":
        missing.append(f"the switch (start Jupyter with {SWITCH}=1)")
    if need_cuda and not torch.cuda.is_available():
        missing.append("a CUDA device")
    absent = [name for name in files if name not in found]
    if absent:
        missing.append(f"{', '.join(absent)} in {folder} (set {CHECKPOINTS} to the folder that holds "
                       f"{'them' if len(absent) > 1 else 'it'})")
    if missing and not quiet:
        print(f"Full-scale section skipped: it needs {'; '.join(missing)}. The tiny version above runs the same code.")
    device = None if missing else ("cuda" if need_cuda else "cpu")
    return FullScale(missing, device, found)


# ------------------------------------------------------------------------------------------ keeping notebooks


def is_skipped(cell) -> bool:
    """A code cell nbval skips (`# NBVAL_SKIP` on its first line): an exercise's stub, or an optional long run."""
    return cell.cell_type == "code" and cell.source.lstrip().startswith("# NBVAL_SKIP")


def execute_notebook(path, timeout: int = 600) -> None:
    """Run a course notebook top to bottom in its own folder and save it with its outputs, as the course keeps them.

    The cells nbval skips are not run (the student's stubs would stop the run) and keep no output. This is how
    a notebook is refreshed after an edit: `python -m minigen.course notebooks/03_samplers.ipynb`.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    skipped = {index: cell.source for index, cell in enumerate(notebook.cells) if is_skipped(cell)}
    for index in skipped:
        notebook.cells[index].source = ""  # an empty cell runs as nothing
    NotebookClient(notebook, timeout=timeout, resources={"metadata": {"path": str(path.parent)}}).execute()
    for index, source in skipped.items():
        cell = notebook.cells[index]
        cell.source, cell.outputs, cell.execution_count = source, [], None
    nbformat.write(notebook, path)


if __name__ == "__main__":
    import sys

    for notebook_path in sys.argv[1:] or sys.exit("usage: python -m minigen.course NOTEBOOK.ipynb ..."):
        execute_notebook(notebook_path)
        print("executed", notebook_path)
