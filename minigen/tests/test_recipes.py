"""The world recipes: batches the official conditioners and networks read, guidance dropout, cached latents,
the quality metrics, and presets that load their committed trained weights."""

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from minigen.pipelines import DiffusionEngine
from minigen.presets import TRAINED_WEIGHTS, trained_weights_path
from minigen.recipes import get_recipe, quality, recipe_names, tiny_sv4d2, worlds
from minigen.tests.processes import run_two_processes

WORLD_RECIPES = {"tiny_sv3d": "tiny_sv3d", "tiny_i2v": "tiny_svd", "tiny_sv4d2": "tiny_sv4d2"}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def small_cache(recipe_name: str, length: int = 2) -> worlds.LatentCache:
    module = __import__(f"minigen.recipes.{recipe_name}", fromlist=["dataset"])
    return worlds.LatentCache(module.dataset(length=length), length)


def training_step_inputs(recipe_name: str, generator: torch.Generator):
    recipe = get_recipe(recipe_name)
    engine = DiffusionEngine.from_preset(recipe.preset, weights="random")
    recipe.prepare(engine)
    cache = small_cache(recipe_name)
    batch = recipe.make_batch([cache[0], cache[1]], generator)
    return recipe, engine, batch


def test_every_recipe_is_listed():
    assert recipe_names() == ["tiny_image", "tiny_i2v", "tiny_sv3d", "tiny_sv4d2"]
    with pytest.raises(ValueError, match="Valid recipes: tiny_image"):
        get_recipe("tiny_sv5d")


@pytest.mark.parametrize("recipe_name", sorted(WORLD_RECIPES))
def test_a_training_step_runs_through_the_official_conditioner_and_network(recipe_name):
    generator = torch.Generator().manual_seed(0)
    recipe, engine, batch = training_step_inputs(recipe_name, generator)
    x = recipe.encode(engine, batch)
    assert x.shape[0] == batch["frames"].shape[0] == 2 * batch["num_video_frames"]
    assert x.shape[1:] == (4, 8, 8)  # 64x64 frames, the 8x VAE
    cond = recipe.condition(engine, batch, generator)
    output = engine.denoise(x, torch.full((len(x),), 3.0), cond, num_video_frames=batch["num_video_frames"],
                            image_only_indicator=batch["image_only_indicator"])
    assert output.shape == x.shape and torch.isfinite(output).all()


def test_cached_latents_are_the_worlds_vae_encoding_of_the_frames():
    recipe, engine, batch = training_step_inputs("tiny_sv3d", torch.Generator().manual_seed(0))
    encoded = worlds.encode(engine, batch["frames"])  # through the conditioner's encoder, as the pipelines do
    torch.testing.assert_close(recipe.encode(engine, batch), encoded, atol=1e-4, rtol=1e-4)


def test_processes_share_the_work_of_a_cache_and_each_ends_with_all_of_it(tmp_path):
    """Under torchrun each process renders and encodes every other example; both end with the one-process cache."""
    run_two_processes("minigen.tests.test_recipes", tmp_path)
    alone = small_cache("tiny_sv4d2", length=3)  # 3: the processes' shares differ in size
    for rank in (0, 1):
        shared = load_file(tmp_path / f"cache_rank{rank}.safetensors")
        for index, example in enumerate(alone.examples):
            assert torch.equal(shared[f"{index}.frames"], example["frames"])
            torch.testing.assert_close(shared[f"{index}.latents"], example["latents"], atol=1e-5, rtol=1e-5)
            assert torch.equal(shared[f"{index}.azimuths_deg"], example["azimuths_deg"])


def cache_worker(folder: Path) -> None:
    """One process of the shared-cache test: build the cache, save what this process ends with."""
    torch.distributed.init_process_group("gloo")
    cache = small_cache("tiny_sv4d2", length=3)
    tensors = {f"{index}.{key}": example[key] for index, example in enumerate(cache.examples)
               for key in ("frames", "latents", "azimuths_deg")}
    save_file(tensors, folder / f"cache_rank{torch.distributed.get_rank()}.safetensors")
    torch.distributed.destroy_process_group()


def test_dropped_samples_get_exactly_the_unconditional_conditioning():
    generator = torch.Generator().manual_seed(0)
    recipe, engine, batch = training_step_inputs("tiny_sv3d", generator)
    frames = batch["num_video_frames"]
    c, uc = engine.conditioner.get_unconditional_conditioning(batch, force_uc_zero_embeddings=recipe_zero_keys())
    kept = worlds.condition(engine, batch, generator, dropout=0.0, zero_keys=recipe_zero_keys(),
                            repeat_to_frames=True)
    dropped = worlds.condition(engine, batch, generator, dropout=1.0, zero_keys=recipe_zero_keys(),
                               repeat_to_frames=True)
    for key in ("crossattn", "concat"):
        torch.testing.assert_close(kept[key], c[key].repeat_interleave(frames, 0))
        torch.testing.assert_close(dropped[key], uc[key].repeat_interleave(frames, 0))
        assert dropped[key].abs().max() == 0  # the image is gone
    torch.testing.assert_close(dropped["vector"], c["vector"])  # the cameras stay


def recipe_zero_keys():
    from minigen.recipes.tiny_sv3d import ZERO_KEYS

    return ZERO_KEYS


def test_select_samples_takes_every_row_of_the_chosen_samples():
    batch = {"frames": torch.arange(6).reshape(6, 1), "image": torch.arange(2), "num_video_frames": 3}
    part = worlds.select_samples(batch, torch.tensor([1]), num_samples=2)
    assert part["frames"].flatten().tolist() == [3, 4, 5] and part["image"].tolist() == [1]
    assert part["num_video_frames"] == 3


def test_an_sv4d2_window_at_time_0_has_no_views_as_the_pipelines_first_window():
    cache = small_cache("tiny_sv4d2", length=1)
    first, later = tiny_sv4d2.window(cache[0], 0), tiny_sv4d2.window(cache[0], 2)
    assert first["image_only_indicator"].max() == 0 and first["cond_view"].abs().max() == 0
    assert later["image_only_indicator"].min() == 1
    torch.testing.assert_close(later["cond_view"], cache[0]["frames"][2, 1:])  # the novel views at its first time
    torch.testing.assert_close(later["cond_motion"], cache[0]["frames"][2:5, 0])  # the input video at its times
    assert later["frames"].shape == (3 * 4, 3, 64, 64) and later["latents"].shape == (3 * 4, 4, 8, 8)


def test_an_sv4d2_window_conditions_on_its_cached_latents_as_on_its_frames():
    """tiny_sv4d2 hands the conditioner the cached latents of its 19 conditioning frames instead of encoding them
    at every step; the conditioning is what encoding the frames gives, for windows with and without views."""
    recipe, engine, _ = training_step_inputs("tiny_sv4d2", torch.Generator().manual_seed(0))
    cache = small_cache("tiny_sv4d2", length=1)
    for start in (0, 2):
        batch = tiny_sv4d2.window(cache[0], start) | {"num_video_frames": 12}
        assert sorted(worlds.known_latents(batch)) == ["cond_frames", "cond_motion", "cond_view"]
        frames_only = {key: value for key, value in batch.items() if not key.endswith(worlds.KNOWN_LATENTS)}
        with torch.no_grad():
            from_cache = recipe.condition(engine, batch, torch.Generator().manual_seed(1))
            encoded = recipe.condition(engine, frames_only, torch.Generator().manual_seed(1))
        assert from_cache.keys() == encoded.keys()
        for key in encoded:
            torch.testing.assert_close(from_cache[key], encoded[key], atol=1e-4, rtol=0)


def test_psnr_ssim_and_rank_correlation():
    truth = torch.rand(2, 3, 16, 16)
    assert quality.psnr(truth + 0.1, truth).tolist() == pytest.approx([20.0, 20.0], abs=1e-3)  # mse 0.01
    assert quality.ssim(truth, truth).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert quality.ssim(torch.rand(2, 3, 16, 16), truth).max() < 0.5
    assert quality.spearman([1, 2, 3, 4], [0.1, 0.5, 0.7, 2.0]) == pytest.approx(1.0)
    assert quality.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert quality.spearman([0, 255, 0, 255], [0.3, 0.3, 0.3, 0.3]) == 0.0  # motion that ignores the bucket
    assert quality.spearman([0, 0, 255, 255], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.894, abs=1e-3)  # ties


def test_the_margin_over_the_better_baseline_comes_per_object_with_its_standard_error():
    truth = [torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)]  # two objects of two images, mid-grey
    model = [torch.full((2, 3, 8, 8), 0.02), torch.full((2, 3, 8, 8), 0.2)]  # errors 0.01, 0.1: 40 and 20 dB
    copy = [torch.full((2, 3, 8, 8), 0.2)] * 2  # 20 dB
    mean = [torch.full((2, 3, 8, 8), 0.4)] * 2  # 14 dB
    result = quality.novel_view_scores(truth, model=model, copy=copy, mean=mean)
    assert result["model"]["psnr"] == pytest.approx(30.0, abs=1e-3) and result["copy"]["psnr"] == pytest.approx(20.0)
    margin = result["margin"]
    assert margin["over"] == "copy" and margin["margin per object"] == pytest.approx([20.0, 0.0], abs=1e-3)
    assert margin["psnr"] == pytest.approx(result["model"]["psnr"] - result["copy"]["psnr"], abs=1e-4)
    assert margin["standard error"] == pytest.approx(20.0 / 2**0.5 / 2**0.5, abs=1e-3)  # sd 14.14 over sqrt(2)


def test_a_recipe_scores_another_model_file_of_its_kind():
    """benchmarks/quality.py --weights: an earlier data/ file or a run's export loads as the committed one does."""
    committed = quality.trained_engine("tiny_sv4d2")
    from_file = quality.trained_engine("tiny_sv4d2", weights=str(trained_weights_path("tiny_sv4d2")))
    for (key, a), b in zip(committed.state_dict().items(), from_file.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


def test_random_weights_come_from_a_fixed_seed():
    first, second = (DiffusionEngine.from_preset("tiny_sv3d", weights="random") for _ in range(2))
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


@pytest.mark.parametrize("preset", sorted(TRAINED_WEIGHTS))
def test_course_presets_load_their_trained_weights_by_default(preset):
    trained = DiffusionEngine.from_preset(preset)
    random = DiffusionEngine.from_preset(preset, weights="random")
    loaded = DiffusionEngine.from_preset(preset, weights="random")
    worlds.load_trained(loaded, trained_weights_path(preset))
    for key, value in trained.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    output_layer = "model.diffusion_model.out.2.weight"  # zero before training
    assert random.state_dict()[output_layer].abs().max() == 0 and trained.state_dict()[output_layer].abs().max() > 0


def test_a_model_file_for_another_preset_is_refused(tmp_path):
    engine = DiffusionEngine.from_preset("tiny_sv3d", weights="random")
    with pytest.raises(ValueError, match="does not fit this engine"):
        worlds.load_trained(engine, trained_weights_path("tiny_sv4d2"))


def test_a_missing_weights_file_says_how_to_get_random_weights(monkeypatch, tmp_path):
    monkeypatch.setattr("minigen.presets.DATA_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="weights='random'"):
        DiffusionEngine.from_preset("tiny_sv3d")


def test_the_readme_quick_start_orbits_the_bundled_object(tmp_path):
    """`minigen sample sv3d-p --preset tiny_sv3d --input data/object.png --output orbit.gif`, as a new user runs it:
    8 views of an object on white (a random network would give noise), ending on the input view."""
    from minigen import io
    from minigen.cli import main

    image = worlds.DATA_DIR / "object.png"
    output = tmp_path / "orbit.gif"
    assert main(["sample", "sv3d-p", "--preset", "tiny_sv3d", "--input", str(image), "--output", str(output),
                 "--quiet"]) == 0
    orbit = io.read_video(output)
    assert orbit.shape == (8, 64, 64, 3)
    assert (orbit[-1].astype(int) - io.read_image(image)).__abs__().max() <= 1  # the input view, as saved
    object_pixels = (orbit.min(axis=-1) < 200).mean(axis=(1, 2))  # per view: the share that is not white
    assert ((object_pixels > 0.05) & (object_pixels < 0.6)).all(), object_pixels
    corners = orbit[:, :4, :4].reshape(len(orbit), -1)
    assert (corners > 200).all()  # white background


def test_the_committed_tiny_image_draws_the_shape_it_is_asked_for():
    from minigen.recipes import tiny_image

    result = quality.evaluate_image(tiny_image.trained_engine(), rows=2, cfg_scales=(3.0,))
    assert result["classifier on real shapes"] > 0.95
    assert result["samples at cfg 3"] >= 0.75  # 8 samples, 2 of each shape (benchmarks: 100% of 64)


if __name__ == "__main__":
    cache_worker(Path(sys.argv[1]))
