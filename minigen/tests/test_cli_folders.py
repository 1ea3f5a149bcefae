"""`minigen sample` with a folder of inputs: one output per input, existing outputs skipped, a bad input reported
by name while the others are written, and torchrun sharing the inputs between processes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from minigen import io
from minigen.cli import main
from minigen.pipelines import DiffusionEngine

torch.set_num_threads(1)  # as the torchrun processes below: the same arithmetic, so the same bytes
NAMES = [f"input_{index}" for index in range(4)]
CLIPS = [f"{name}.mp4" for name in NAMES]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """tiny_svd's engine with every network weight nudged: a network with a zero-initialised output layer ignores
    its input, and here each input must give its own clip. Loaded with --checkpoint (identified by its shapes)."""
    torch.manual_seed(0)
    engine = DiffusionEngine.from_preset("tiny_svd")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in engine.model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    path = tmp_path_factory.mktemp("weights") / "tiny_svd.safetensors"
    save_file({key: value.contiguous() for key, value in engine.state_dict().items() if value.dtype != torch.int64},
              path)
    return path


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pictures")
    for index, name in enumerate(NAMES):
        image = np.random.default_rng(index).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        io.write_image(image, folder / f"{name}.png")
    (folder / "notes.txt").write_text("not a picture: ignored")
    return folder


def command(checkpoint, source, output, *extra) -> list[str]:
    return ["sample", "svd", "--checkpoint", str(checkpoint), "--input", str(source), "--output", str(output),
            "--steps", "1", "--quiet", "--seed", "7", *extra]


def test_one_output_per_input_and_existing_ones_are_skipped(checkpoint, pictures, tmp_path, capsys):
    output = tmp_path / "clips"  # created
    assert main(command(checkpoint, pictures, output)) == 0
    assert sorted(path.name for path in output.iterdir()) == CLIPS
    clips = [io.read_video(output / clip) for clip in CLIPS]
    assert clips[0].shape == (8, 64, 64, 3)  # tiny_svd's 8 frames
    assert not np.array_equal(clips[0], clips[1])  # each input its own clip
    before = {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in output.iterdir()}
    capsys.readouterr()

    assert main(command(checkpoint, pictures, output)) == 0
    printed = capsys.readouterr().out
    assert printed.count("skipped") == 4 and "wrote" not in printed and "--overwrite" in printed
    assert {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in output.iterdir()} == before


def test_format_and_output_folder_are_checked(checkpoint, pictures, tmp_path, capsys):
    assert main(command(checkpoint, pictures, tmp_path / "clips", "--format", "png")) == 2
    assert ".mp4, .gif" in capsys.readouterr().err  # says which suffixes svd can write
    assert main(command(checkpoint, pictures, tmp_path / "clip.mp4")) == 2
    assert "folder" in capsys.readouterr().err
    single = command(checkpoint, pictures / "input_0.png", tmp_path / "clip.gif", "--format", "gif")
    assert main(single) == 2 and "--format" in capsys.readouterr().err


def test_a_bad_input_is_reported_and_the_others_are_written(checkpoint, pictures, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in NAMES:
        (inputs / f"{name}.png").write_bytes((pictures / f"{name}.png").read_bytes())
    (inputs / "input_2.png").write_bytes(b"not a png")
    output = tmp_path / "clips"
    assert main(command(checkpoint, inputs, output, "--format", ".gif")) == 1
    errors = capsys.readouterr().err
    assert "input_2.png:" in errors and "1 of 4 inputs failed" in errors
    assert sorted(path.name for path in output.iterdir()) == ["input_0.gif", "input_1.gif", "input_3.gif"]


def test_torchrun_writes_each_output_once_and_as_one_process_does(checkpoint, pictures, tmp_path):
    alone = tmp_path / "alone"
    assert main(command(checkpoint, pictures, alone)) == 0
    shared = tmp_path / "shared"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "minigen"]
    run = subprocess.run(torchrun + command(checkpoint, pictures, shared), capture_output=True, text=True,
                         env=os.environ | {"OMP_NUM_THREADS": "1"}, timeout=300)
    assert run.returncode == 0, run.stderr
    wrote = {rank: [Path(line.split(" wrote ", 1)[1]).name for line in run.stdout.splitlines()
                    if line.startswith(f"rank {rank}: wrote ")] for rank in (0, 1)}
    assert wrote == {0: CLIPS[0::2], 1: CLIPS[1::2]}  # files[rank::world_size]: disjoint, together all
    for clip in CLIPS:  # the same seed for every input, so the rank makes no difference
        assert (shared / clip).read_bytes() == (alone / clip).read_bytes()


def test_under_torchrun_a_failing_rank_waits_for_the_others(checkpoint, pictures, tmp_path):
    inputs = tmp_path / "inputs"  # sorted: input_0-broken, input_0, input_1-broken, ...: rank 0 gets the broken ones
    inputs.mkdir()
    for name in NAMES[:3]:
        (inputs / f"{name}.png").write_bytes((pictures / f"{name}.png").read_bytes())
        (inputs / f"{name}-broken.png").write_bytes(b"not a png")
    output = tmp_path / "clips"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "minigen"]
    run = subprocess.run(torchrun + command(checkpoint, inputs, output), capture_output=True, text=True,
                         env=os.environ | {"OMP_NUM_THREADS": "1"}, timeout=300)
    assert run.returncode != 0 and "rank 0: input_0-broken.png:" in run.stderr
    assert sorted(path.name for path in output.iterdir()) == CLIPS[:3]  # torchrun did not stop rank 1
