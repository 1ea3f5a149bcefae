"""The `minigen` command on tiny presets: every model's options, outputs, no silent overwrite, clear errors."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from minigen import io
from minigen.cli import MODELS, OPTIONS, build_parser, main
from minigen.pipelines import DiffusionEngine


def picture(tmp_path, size=64):
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return io.write_image(image, tmp_path / f"input_{size}.png")


@pytest.mark.parametrize("model", sorted(MODELS))
def test_help_explains_every_option(model, capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["sample", model, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for flag in MODELS[model].flags + ("steps", "seed"):
        assert f"--{flag}" in text and OPTIONS[flag][2].split(" (")[0][:20] in " ".join(text.split())


def test_svd_writes_a_video_and_never_overwrites(tmp_path, capsys):
    output = tmp_path / "clip.gif"
    command = ["sample", "svd", "--preset", "tiny_svd", "--input", str(picture(tmp_path)), "--output", str(output),
               "--steps", "2", "--quiet", "--decoding-t", "2", "--seed", "3"]
    assert main(command) == 0
    frames = io.read_video(output)
    assert frames.shape == (8, 64, 64, 3)  # tiny_svd's 8 frames
    before = output.read_bytes()
    assert main(command) == 2 and "--overwrite" in capsys.readouterr().err
    assert output.read_bytes() == before
    assert main(command + ["--overwrite", "--num-frames", "2"]) == 0
    assert io.read_video(output).shape[0] == 2


def test_text_to_image_writes_numbered_images(tmp_path):
    output = tmp_path / "out.png"
    assert main(["sample", "sd21", "--preset", "tiny_sd", "--prompt", "a red square", "--output", str(output),
                 "--steps", "2", "--height", "64", "--width", "64", "--num-images", "2", "--quiet"]) == 0
    assert io.read_image(tmp_path / "out_0.png").shape == (64, 64, 3)
    assert io.read_image(tmp_path / "out_1.png").shape == (64, 64, 3)


def test_sv3d_p_takes_cameras(tmp_path, capsys):
    output = tmp_path / "orbit.mp4"
    base = ["sample", "sv3d-p", "--preset", "tiny_sv3d", "--input", str(picture(tmp_path)), "--output", str(output),
            "--steps", "2", "--quiet"]
    assert main(base + ["--elevations-deg", "20", "--azimuths-deg", *"45 90 135 180 225 270 315 0".split()]) == 0
    assert io.read_video(output).shape == (8, 64, 64, 3)  # tiny_sv3d's 8 views
    assert main(base + ["--overwrite", "--elevations-deg", "120"]) == 2
    assert "elevation" in capsys.readouterr().err


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    base = ["sample", "svd", "--preset", "tiny_svd", "--output", str(tmp_path / "x.gif"), "--steps", "1", "--quiet"]
    assert main(base + ["--input", str(tmp_path / "missing.png")]) == 2
    assert main(base + ["--input", str(picture(tmp_path, size=40))]) == 2
    assert "multiple of 64" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sample", "svd", "--input", "x.png", "--output", "y.gif"])  # no weights given


def test_inspect_reports_parts(tmp_path, capsys):
    engine = DiffusionEngine.from_preset("tiny_svd")
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in engine.state_dict().items() if v.dtype != torch.int64}, path)
    assert main(["inspect", str(path)]) == 0
    report = capsys.readouterr().out
    assert "model.diffusion_model" in report and "first_stage_model" in report
    assert main(["inspect", str(tmp_path / "missing.safetensors")]) == 2


def test_python_dash_m_minigen_runs():
    result = subprocess.run([sys.executable, "-m", "minigen", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "sample" in result.stdout and "inspect" in result.stdout


@pytest.mark.parametrize("model, preset, frames, views", [("sv4d", "tiny_sv4d", 7, 8), ("sv4d2", "tiny_sv4d2", 3, 4)])
def test_multiview_models_write_views_side_by_side(tmp_path, model, preset, frames, views):
    video = np.random.default_rng(1).integers(0, 256, (frames, 32, 32, 3), dtype=np.uint8)  # as trained
    source = io.write_video(video, tmp_path / "input.gif")
    output = tmp_path / "views.gif"
    assert main(["sample", model, "--preset", preset, "--input", str(source), "--output", str(output),
                 "--steps", "1", "--quiet"]) == 0
    grid = io.read_video(output)  # time as frames, the views side by side
    assert grid.shape == (frames, 32, views * 32, 3)


def test_sv4d_with_a_checkpoint_needs_the_sv3d_one(tmp_path, capsys):
    video = io.write_video(np.zeros((3, 64, 64, 3), np.uint8), tmp_path / "input.gif")
    code = main(["sample", "sv4d", "--checkpoint", str(tmp_path / "sv4d.safetensors"), "--input", str(video),
                 "--output", str(tmp_path / "o.gif")])
    assert code == 2 and "--sv3d-checkpoint" in capsys.readouterr().err
