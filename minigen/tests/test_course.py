"""The course's full-scale switch: it runs a section only when asked, on a GPU, with the files; else it says why."""

import pytest
import torch

from minigen.course import CHECKPOINTS, SWITCH, full_scale


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv(CHECKPOINTS, str(tmp_path))
    return tmp_path


def test_without_the_switch_the_section_skips_and_says_how_to_turn_it_on(folder, monkeypatch, capsys):
    monkeypatch.delenv(SWITCH, raising=False)
    (folder / "svd.safetensors").touch()
    scale = full_scale("svd.safetensors", need_cuda=False)
    assert not scale and scale.device is None
    assert f"{SWITCH}=1" in capsys.readouterr().out


def test_every_missing_thing_is_named_at_once(folder, monkeypatch, capsys):
    monkeypatch.setenv(SWITCH, "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    scale = full_scale("svd.safetensors", "sv3d_p.safetensors")
    line = capsys.readouterr().out
    assert not scale and len(scale.missing) == 2
    assert "a CUDA device" in line and "svd.safetensors, sv3d_p.safetensors in" in line and CHECKPOINTS in line


def test_with_switch_device_and_files_the_section_runs(folder, monkeypatch, capsys):
    monkeypatch.setenv(SWITCH, "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    (folder / "svd.safetensors").touch()
    scale = full_scale("svd.safetensors")
    assert scale and scale.device == "cuda" and scale.checkpoints == {"svd.safetensors": folder / "svd.safetensors"}
    assert capsys.readouterr().out == ""
    assert full_scale(need_cuda=False).device == "cpu"


def test_quiet_prints_nothing(folder, monkeypatch, capsys):
    monkeypatch.delenv(SWITCH, raising=False)
    assert not full_scale("x.safetensors", quiet=True)
    assert capsys.readouterr().out == ""


def test_execute_notebook_saves_outputs_and_leaves_the_students_stubs_alone(tmp_path):
    import nbformat

    from minigen.course import execute_notebook

    path = tmp_path / "lesson.ipynb"
    stub = '# NBVAL_SKIP\nraise NotImplementedError("your code here")'
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)"),
                                               nbformat.v4.new_code_cell(stub),
                                               nbformat.v4.new_code_cell("print('after')")])
    nbformat.write(notebook, path)
    execute_notebook(path)
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].outputs[0]["text"] == "42\n" and cells[2].outputs[0]["text"] == "after\n"
    assert cells[1].source == stub and cells[1].outputs == [] and cells[1].execution_count is None
