"""The `minigen` command on tiny presets: every model's options, outputs, no silent overwrite, clear errors."""

import inspect
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from minigen import io
from minigen.cli import MODELS, OPTIONS, build_parser, load_pipeline, main
from minigen.pipelines import DiffusionEngine, SVDPipeline, TextToImagePipeline
from minigen.tests.official import manifest_shapes


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


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_flag_is_a_keyword_of_the_pipeline(model):
    """The CLI speaks the pipelines' vocabulary: each flag reaches a keyword of the model's pipeline call."""
    spec = MODELS[model]
    keywords = set(inspect.signature(spec.pipeline.__call__).parameters)
    assert {OPTIONS[flag][0] for flag in spec.flags + ("steps", "seed")} <= keywords


def test_switches_have_an_off_form_and_closed_lists_are_checked(tmp_path, capsys):
    args = ["sample", "sv3d-p", "--preset", "tiny_sv3d", "--input", "x.png", "--output", "o.gif"]
    parser = build_parser()
    assert parser.parse_args(args).preprocess is None  # the model's default
    assert parser.parse_args(args + ["--no-preprocess"]).preprocess is False
    parsed = parser.parse_args(args + ["--cfg", "3.5", "--min-cfg", "1.5", "--sampler", "HeunEDMSampler"])
    assert (parsed.cfg, parsed.min_cfg, parsed.sampler) == (3.5, 1.5, "HeunEDMSampler")
    with pytest.raises(SystemExit):
        parser.parse_args(args + ["--sampler", "Euler"])
    assert "invalid choice: 'Euler'" in capsys.readouterr().err


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
        main(["sample", "svd", "--input", "x.png", "--output", "y.gif"])  # no weights given
    assert "--checkpoint FILE, --preset NAME, or both" in capsys.readouterr().err


def one_error_line(capsys) -> str:
    """What the command wrote to stderr, which must be exactly one `minigen: error:` line (no traceback)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minigen: error: "), lines
    return lines[0]


def test_a_file_that_is_not_an_image_is_one_line_naming_it(tmp_path, capsys):
    text = tmp_path / "x.png"
    text.write_text("not a picture")
    assert main(["sample", "svd", "--preset", "tiny_svd", "--input", str(text), "--output", str(tmp_path / "o.gif"),
                 "--quiet"]) == 2
    assert "x.png" in one_error_line(capsys)
    assert not (tmp_path / "o.gif").exists()


def test_an_output_suffix_the_model_cannot_write_names_the_ones_it_can(tmp_path, capsys):
    output = tmp_path / "o.xyz"
    assert main(["sample", "svd", "--preset", "tiny_svd", "--input", str(picture(tmp_path)), "--output", str(output),
                 "--quiet"]) == 2
    line = one_error_line(capsys)
    assert "o.xyz" in line and all(suffix in line for suffix in io.VIDEO_SUFFIXES) and "o_0" not in line
    video = io.write_video(np.zeros((3, 32, 32, 3), np.uint8), tmp_path / "input.gif")
    assert main(["sample", "sv4d2", "--preset", "tiny_sv4d2", "--input", str(video), "--output",
                 str(tmp_path / "views.png"), "--quiet"]) == 2
    line = one_error_line(capsys)  # the views go side by side into one video: image suffixes cannot hold them
    assert ".gif" in line and ".png," not in line
    assert sorted(path.name for path in tmp_path.iterdir()) == ["input.gif", "input_64.png"]  # nothing written


def test_same_seed_same_file(tmp_path):
    """Random weights come from a fixed seed and every draw of a call from --seed, whatever the global RNG holds."""
    source = picture(tmp_path)

    def run(name: str, seed: str, *weights: str) -> bytes:
        torch.manual_seed(len(name))  # a different global RNG state for every run
        assert main(["sample", "svd", "--preset", "tiny_svd", *weights, "--seed", seed, "--input", str(source),
                     "--output", str(tmp_path / name), "--steps", "2", "--num-frames", "2", "--quiet"]) == 0
        return (tmp_path / name).read_bytes()

    assert run("a.gif", "7", "--random-weights") == run("again.gif", "7", "--random-weights")
    assert run("b.gif", "7", "--random-weights") != run("other_seed.gif", "8", "--random-weights")
    assert run("trained.gif", "7") == run("trained_again.gif", "7")  # the committed trained weights


def test_inspect_names_a_truncated_file(tmp_path, capsys):
    path = tmp_path / "cut.safetensors"
    save_file({"weight": torch.ones(64, 64)}, path)
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-100])  # the header is intact, the data stops short
    assert main(["inspect", str(path)]) == 2
    line = one_error_line(capsys)
    assert "truncated" in line and f"{size:,} bytes" in line and f"has {size - 100:,}" in line
    assert "re-download" in line


def test_inspect_of_a_pickle_gives_the_pickle_explanation(tmp_path, capsys):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"weight": torch.ones(2)}}, path)
    assert main(["inspect", str(path)]) == 2
    line = one_error_line(capsys)
    assert "model.ckpt is a pickle checkpoint: loading one can run arbitrary code" in line
    assert "not a readable safetensors" not in line


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


# ---------------------------------------------------------------- --checkpoint with --preset: which model a file is


def header_only(path: Path, manifest: str) -> Path:
    """A safetensors header with an official model's tensor table and no data: enough to identify the file."""
    table = {key: {"dtype": "F16", "shape": shape, "data_offsets": [0, 0]} for key, shape in
             manifest_shapes(manifest).items()}
    header = json.dumps(table).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


@pytest.fixture
def chosen(monkeypatch) -> list:
    """The (preset, weights) that from_checkpoint goes on to build, instead of loading the absent weights."""
    calls = []
    for cls in (TextToImagePipeline, SVDPipeline):
        monkeypatch.setattr(cls, "from_preset", classmethod(lambda cls, name, weights, **_: calls.append(
            (name, weights.name))))
    return calls


def load(*argv: str):
    args = build_parser().parse_args(["sample", *argv, "--output", "o.png"])
    return load_pipeline(args, MODELS[args.model])


def test_preset_beside_checkpoint_names_sd21_512_or_768(tmp_path, chosen):
    path = header_only(tmp_path / "v2-1_768-ema-pruned.safetensors", "sd_2_1")  # both files hold these tensors
    with pytest.raises(ValueError, match="fits sd_2_1, sd_2_1_768.*--preset beside --checkpoint"):
        load("sd21", "--checkpoint", str(path))
    load("sd21", "--checkpoint", str(path), "--preset", "sd_2_1_768")
    load("sd21", "--checkpoint", str(path), "--preset", "sd_2_1")
    assert chosen == [("sd_2_1_768", path.name), ("sd_2_1", path.name)]


def test_preset_beside_checkpoint_must_fit_the_file(tmp_path, chosen, capsys):
    path = header_only(tmp_path / "v2-1_512-ema-pruned.safetensors", "sd_2_1")
    with pytest.raises(ValueError, match=r"not hold --preset sd_xl_base's tensors \(it holds sd_2_1, sd_2_1_768\)"):
        load("sd21", "--checkpoint", str(path), "--preset", "sd_xl_base")
    with pytest.raises(ValueError, match="TextToImagePipeline runs .*; got --preset svd"):
        load("sd21", "--checkpoint", str(path), "--preset", "svd")
    with pytest.raises(ValueError, match="--random-weights goes with --preset alone"):
        load("sd21", "--checkpoint", str(path), "--preset", "sd_2_1", "--random-weights")
    assert main(["sample", "sd21", "--checkpoint", str(path), "--preset", "tiny_sd", "--prompt", "owl", "--output",
                 str(tmp_path / "o.png")]) == 2
    assert "tiny_sd" in one_error_line(capsys)
    assert chosen == []


def test_svd_xt_runs_the_xt_image_decoder_file(tmp_path, chosen):
    """svd_xt_image_decoder holds svd_image_decoder's tensors: the official file name tells them apart."""
    xt = header_only(tmp_path / "svd_xt_image_decoder.safetensors", "svd_image_decoder")
    load("svd-xt", "--checkpoint", str(xt), "--input", "photo.png")
    load("svd", "--checkpoint", str(header_only(tmp_path / "svd_image_decoder.safetensors", "svd_image_decoder")),
         "--input", "photo.png")
    renamed = header_only(tmp_path / "decoder.safetensors", "svd_image_decoder")
    with pytest.raises(ValueError, match="fits svd_image_decoder, svd_xt_image_decoder"):
        load("svd-xt", "--checkpoint", str(renamed), "--input", "photo.png")
    load("svd-xt", "--checkpoint", str(renamed), "--preset", "svd_xt_image_decoder", "--input", "photo.png")
    assert chosen == [("svd_xt_image_decoder", xt.name), ("svd_image_decoder", "svd_image_decoder.safetensors"),
                      ("svd_xt_image_decoder", renamed.name)]
