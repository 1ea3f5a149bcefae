"""Checkpoint loading: strict reports, meta-device loading, pickle refusal, damaged files, identification."""

import gzip
import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from minigen.checkpoint import CheckpointError, MappedFile, inspect_checkpoint, load_checkpoint


class Tiny(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(3, width), nn.GroupNorm(2, width))
        self.head = nn.Linear(width, 2)
        self.register_buffer("scale", torch.ones(2))


def saved_weights(tmp_path, model=None, name="tiny.safetensors", **changes):
    state = {k: v.detach().clone() for k, v in (model or Tiny()).state_dict().items()}
    for key, value in changes.items():
        if value is None:
            state.pop(key.replace("__", "."))
        else:
            state[key.replace("__", ".")] = value
    path = tmp_path / name
    save_file(state, path)
    return path, state


def test_loads_into_a_meta_model_without_initialising_it(tmp_path):
    path, state = saved_weights(tmp_path)
    with torch.device("meta"):
        model = Tiny()
    report = load_checkpoint(model, path)
    assert report.ok and report.loaded == len(state)
    for key, value in model.state_dict().items():
        assert value.device.type == "cpu"
        torch.testing.assert_close(value, state[key])
    assert all(p.requires_grad for p in model.parameters())
    assert model.head(model.encoder(torch.ones(1, 3))).isfinite().all()  # a loaded meta model runs


def test_loads_into_a_materialised_model_and_casts(tmp_path):
    path, state = saved_weights(tmp_path)
    model = Tiny()
    load_checkpoint(model, path, dtype=torch.float16)
    assert model.head.weight.dtype == torch.float16
    torch.testing.assert_close(model.head.weight.float(), state["head.weight"], atol=1e-3, rtol=1e-3)


def test_a_converting_load_maps_the_file_anew_every_window(tmp_path):
    """Converted copies let the file pages they were read from go: the mapping is renewed every `window` bytes,
    and a tensor read before a renewal (a view of the old mapping) keeps its values."""
    path, state = saved_weights(tmp_path)
    mapped = MappedFile(path, window=1)  # renewed before every tensor after the first
    handles, tensors = [], {}
    for key in state:
        tensors[key] = mapped.get_tensor(key)
        handles.append(mapped.handle)
    assert len({id(handle) for handle in handles}) == len(state)
    for key, value in tensors.items():
        torch.testing.assert_close(value, state[key])


def test_strict_mismatch_gives_one_readable_report(tmp_path):
    path, _ = saved_weights(tmp_path, head__bias=None, head__weight=torch.zeros(3, 4),
                           extra__layer__weight=torch.zeros(1))
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(Tiny(), path)
    message = str(raised.value)
    assert "head.bias" in message or "head.* (1)" in message  # missing, grouped by module
    assert "extra.layer.weight" in message or "extra.layer.* (1)" in message  # unexpected
    assert "head.weight: model [2, 4] vs file [3, 4]" in message  # both shapes
    assert "inspect_checkpoint" in message


def test_non_strict_loads_what_fits_and_reports(tmp_path, capsys):
    path, state = saved_weights(tmp_path, head__bias=None)
    model = Tiny()
    report = load_checkpoint(model, path, strict=False)
    assert report.missing == ["head.bias"] and report.loaded == len(state)
    assert "tensors loaded" in capsys.readouterr().out
    torch.testing.assert_close(model.head.weight, state["head.weight"])


def test_known_legacy_buffers_are_named_and_accepted(tmp_path):
    path, _ = saved_weights(tmp_path, cond__transformer__text_model__embeddings__position_ids=torch.arange(77)[None])
    report = load_checkpoint(Tiny(), path)
    assert report.ok and report.legacy_skipped == ["cond.transformer.text_model.embeddings.position_ids"]


def test_pickle_files_are_refused_unless_asked(tmp_path):
    model = Tiny()
    path = tmp_path / "weights.ckpt"
    torch.save({"state_dict": model.state_dict()}, path)
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        load_checkpoint(Tiny(), path)
    fresh = Tiny()
    assert load_checkpoint(fresh, path, allow_pickle=True).ok
    torch.testing.assert_close(fresh.head.weight, model.head.weight)


def test_pickle_with_code_is_refused_even_when_allowed(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"head.weight": torch.zeros(2, 4)}, "hook": print}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(Tiny(), path, allow_pickle=True)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_damaged_files_give_a_clear_error(tmp_path, damage):
    path, _ = saved_weights(tmp_path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00\x01not a safetensors file" * 10)
    else:
        path.unlink()
    with pytest.raises(CheckpointError, match="safetensors|No checkpoint"):
        load_checkpoint(Tiny(), path)
    with pytest.raises(CheckpointError):
        inspect_checkpoint(path)


def test_a_truncated_file_is_named_truncated_with_its_sizes(tmp_path):
    """A download cut short keeps a valid header: the data it describes must all be in the file."""
    path, _ = saved_weights(tmp_path)
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-8])
    sizes = f"truncated: .* {size:,} bytes, the file has {size - 8:,}.*re-download"
    for read in (lambda: inspect_checkpoint(path), lambda: load_checkpoint(Tiny(), path)):
        with pytest.raises(CheckpointError, match=sizes):
            read()


@pytest.mark.parametrize("name", ["weights.ckpt", "renamed.safetensors"])
def test_inspect_explains_pickle_files_as_loading_does(tmp_path, name):
    """By suffix, or by torch.save's zip signature when the name says safetensors."""
    path = tmp_path / name
    torch.save(Tiny().state_dict(), path)
    with pytest.raises(CheckpointError, match="allow_pickle=True") as loading:
        load_checkpoint(Tiny(), path)
    with pytest.raises(CheckpointError) as inspecting:
        inspect_checkpoint(path)
    explanation = f"{name} is a pickle checkpoint: loading one can run arbitrary code. Convert it to safetensors"
    assert str(loading.value).startswith(explanation) and str(inspecting.value).startswith(explanation)


def write_manifest(folder, name, model):
    tensors = {k: {"shape": list(v.shape), "dtype": "float32"} for k, v in model.state_dict().items()}
    (folder / f"{name}.json.gz").write_bytes(gzip.compress(json.dumps({"tensors": tensors}).encode()))


def test_inspect_identifies_the_model_by_its_tensor_table(tmp_path):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    write_manifest(manifests, "tiny_a", Tiny(width=4))
    write_manifest(manifests, "tiny_a_copy", Tiny(width=4))
    write_manifest(manifests, "tiny_b", Tiny(width=6))
    path, _ = saved_weights(tmp_path, Tiny(width=6))
    info = inspect_checkpoint(path, manifest_dir=manifests)
    assert info.matches == ["tiny_b"] and info.dtypes == {"F32": 7}
    path, _ = saved_weights(tmp_path, Tiny(width=4), name="a.safetensors")
    assert inspect_checkpoint(path, manifest_dir=manifests).matches == ["tiny_a", "tiny_a_copy"]
    path, _ = saved_weights(tmp_path, Tiny(width=4), name="partial.safetensors", head__bias=None)
    info = inspect_checkpoint(path, manifest_dir=manifests)
    assert info.matches == [] and info.closest == "tiny_a" and info.missing_from_closest == 1
    assert "closest is tiny_a" in str(info)


def test_inspect_against_official_manifests_counts_parts(tmp_path):
    path = tmp_path / "sdxl_piece.safetensors"
    save_file({"denoiser.sigmas": torch.zeros(1000),
               "model.diffusion_model.time_embed.0.weight": torch.zeros(1280, 320)}, path)
    info = inspect_checkpoint(path)
    assert info.parameters_per_part == {"denoiser": 1000, "model.diffusion_model": 1280 * 320}
    assert info.matches == [] and info.closest is not None


class WithTextEncoder(nn.Module):
    """Module tree like SDXL's first embedder: conditioner.embedders.0.transformer.embeddings..."""

    def __init__(self):
        super().__init__()
        self.conditioner = nn.Module()
        self.conditioner.embedders = nn.ModuleList([nn.Module()])
        self.conditioner.embedders[0].transformer = nn.Module()
        self.conditioner.embedders[0].transformer.embeddings = nn.Linear(2, 2)


def test_official_text_model_spelling_is_renamed(tmp_path):
    """Official SDXL files nest CLIP-L under `transformer.text_model.`; today's modules do not."""
    path = tmp_path / "sdxl_like.safetensors"
    weight = torch.arange(4.0).reshape(2, 2)
    save_file({"conditioner.embedders.0.transformer.text_model.embeddings.weight": weight,
               "conditioner.embedders.0.transformer.text_model.embeddings.bias": torch.ones(2),
               "conditioner.embedders.0.transformer.text_model.embeddings.position_ids": torch.arange(77)[None]},
              path)
    model = WithTextEncoder()
    report = load_checkpoint(model, path)
    assert report.ok and report.loaded == 2 and len(report.legacy_skipped) == 1
    torch.testing.assert_close(model.conditioner.embedders[0].transformer.embeddings.weight, weight)
