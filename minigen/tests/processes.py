"""Two-process tests: run a test module as the worker of `torchrun --standalone --nproc_per_node=2` on the CPU."""

import os
import subprocess
import sys
from pathlib import Path


def run_two_processes(module: str, folder: Path) -> None:
    """`python -m module folder` in two gloo processes of one thread each; fails the test with their stderr."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", module, str(folder)]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
