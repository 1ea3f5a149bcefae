"""Text-to-image pipelines end to end on the tiny presets: every option, reproducibility, loading, bad input.

Runs take a fraction of a second each (tiny networks, 64 x 64 images, 2 steps). The refiner is a tiny
variant built here from the presets' building blocks: the refiner's conditioner layout (one text encoder,
sizes and aesthetic score) at tiny sizes.
"""

import json
import struct
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from minigen import diffusion
from minigen.checkpoint import manifest
from minigen.pipelines.common import SAMPLERS, generator_for
from minigen.pipelines.engine import DiffusionEngine
from minigen.pipelines.sdxl import (
    HandoverDiscretization,
    MicroConditioning,
    Refinement,
    StrengthDiscretization,
    TextToImagePipeline,
    TurboDiscretization,
    TurboPipeline,
    conditioner_batches,
)
from minigen.presets import get_preset
from minigen.presets.conditioners import ConditionerConfig, open_clip_text, scalar, tiny
from minigen.presets.networks import tiny_sdxl
from minigen.tests.test_pipelines_video import perturbed

FAST = {"num_steps": 2, "progress": False}


def tiny_pipeline(cls, name: str, **options):
    torch.manual_seed(0)
    return perturbed(cls.from_preset(name, **options))


def tiny_refiner() -> TextToImagePipeline:
    """sd_xl_refiner's layout at tiny_sdxl's sizes: crossattn from one text encoder (16), vector = pooled (8)
    + original size (2 x 4) + crop (2 x 4) + aesthetic score (4) = 28."""
    conditioner = tiny(ConditionerConfig([open_clip_text("minigen-tiny-text-bigg"), scalar("original_size_as_tuple", 4),
                                          scalar("crop_coords_top_left", 4), scalar("aesthetic_score", 4)]))
    parts = get_preset("tiny_sdxl")
    torch.manual_seed(1)
    engine = DiffusionEngine(replace(tiny_sdxl(), adm_in_channels=28, context_dim=16).build(), parts.denoiser.build(),
                             conditioner.build(), parts.first_stage_model.build()).eval().requires_grad_(False)
    defaults = replace(TextToImagePipeline.DEFAULTS["sd_xl_refiner"], size=64, num_steps=4)
    return perturbed(TextToImagePipeline(engine, defaults))


@pytest.fixture(scope="module")
def sd():
    return tiny_pipeline(TextToImagePipeline, "tiny_sd")


@pytest.fixture(scope="module")
def sdxl():
    return tiny_pipeline(TextToImagePipeline, "tiny_sdxl")


@pytest.fixture(scope="module")
def refiner():
    return tiny_refiner()


@pytest.fixture(scope="module")
def sdxl_image(sdxl):
    return sdxl("a red cube", seed=0, **FAST)


def differ(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and not np.array_equal(a, b)


# ---------------------------------------------------------------- defaults and outputs


def test_defaults_are_the_demos():
    defaults = TextToImagePipeline.DEFAULTS
    assert {name: d.size for name, d in defaults.items() if not name.startswith("tiny")} == {
        "sd_2_1": 512, "sd_2_1_768": 768, "sd_xl_base": 1024, "sd_xl_refiner": 1024}
    assert all((d.num_steps, d.cfg, d.sampler) == (50, 5.0, diffusion.EulerEDMSampler)
               for name, d in defaults.items() if not name.startswith("tiny"))
    # only the non-legacy model zeroes the unconditional text (force_uc_zero_embeddings=["txt"])
    assert [name for name, d in defaults.items() if d.zero_empty_negative] == ["sd_xl_base", "tiny_sdxl"]
    assert {(d.size, d.num_steps, d.cfg, d.sampler) for name, d in TurboPipeline.DEFAULTS.items()
            if not name.startswith("tiny")} == {(512, 1, 1.0, diffusion.EulerAncestralSampler)}


def test_images_are_uint8_at_the_asked_size(sdxl, sdxl_image):
    assert sdxl_image.shape == (1, 64, 64, 3) and sdxl_image.dtype == np.uint8
    assert sdxl("a red cube", height=128, width=64, seed=0, **FAST).shape == (1, 128, 64, 3)
    assert sdxl_image.std() > 1  # not a flat image


def test_same_seed_same_images_other_seed_other_images(sdxl, sdxl_image):
    assert np.array_equal(sdxl("a red cube", seed=0, **FAST), sdxl_image)
    assert differ(sdxl("a red cube", seed=1, **FAST), sdxl_image)
    assert np.array_equal(sdxl("a red cube", **FAST), sdxl("a red cube", seed=42, **FAST))  # the demo's seed


def test_prompt_changes_the_images(sdxl, sdxl_image):
    assert differ(sdxl("a blue ball", seed=0, **FAST), sdxl_image)


def test_num_images_and_prompt_lists(sd):
    images = sd(["a red cube", "a blue ball"], num_images=2, seed=0, **FAST)
    assert images.shape == (4, 64, 64, 3)
    assert differ(images[0], images[1])  # same prompt, other noise
    alone = sd("a red cube", seed=0, **FAST)
    assert alone.shape == (1, 64, 64, 3)


def test_everything_but_the_prompt_is_keyword_only(sd, sdxl):
    with pytest.raises(TypeError):
        sd("a red cube", "blurry")
    with pytest.raises(TypeError):
        sdxl.image_to_image(torch.zeros(1, 4, 8, 8), "a", "blurry")
    with pytest.raises(TypeError):
        sd.make_sampler(2, 5.0)


# ---------------------------------------------------------------- seeds: the demo's noise


def first_sample_input(monkeypatch, pipe, run) -> torch.Tensor:
    """The `x` that `run()` gives `pipe.sample` first."""
    inputs = []
    original = pipe.sample

    def sample(x, *args, **kwargs):
        inputs.append(x)
        return original(x, *args, **kwargs)

    monkeypatch.setattr(pipe, "sample", sample)
    run()
    return inputs[0]


def test_start_noise_is_the_demos_first_cpu_draw_after_seeding(monkeypatch, sd):
    x = first_sample_input(monkeypatch, sd, lambda: sd(["a", "b"], num_images=2, height=128, **FAST))
    torch.manual_seed(42)  # the demo's seed_everything(42), then torch.randn(shape) in do_sample
    assert torch.equal(x, torch.randn(4, 4, 16, 8))


def test_image_to_image_posterior_sample_is_the_demos_first_cpu_draw(sd):
    pixels = torch.from_numpy(sd("a red cube", seed=0, **FAST)).permute(0, 3, 1, 2).float() / 127.5 - 1
    first_stage = sd.engine.first_stage_model
    posterior = first_stage.posterior(pixels)
    torch.manual_seed(42)  # the reference's DiagonalGaussianDistribution.sample draws torch.randn on the CPU
    expected = first_stage.scale_factor * (posterior.mean + posterior.std * torch.randn(posterior.mean.shape))
    latents = sd.to_latents(sd("a red cube", seed=0, **FAST), generator_for(42, "cpu"))
    torch.testing.assert_close(latents, expected)


def test_turbo_noise_is_the_turbo_demos(monkeypatch):
    turbo = tiny_pipeline(TurboPipeline, "tiny_sd")
    x = first_sample_input(monkeypatch, turbo, lambda: turbo("a red cube", progress=False))
    assert torch.equal(x, torch.from_numpy(np.random.RandomState(0).randn(1, 4, 8, 8)).float())  # seeded_randn
    fresh = turbo.fresh_noise(generator_for(7, "cpu"))  # SeededNoise(7): seeds 8, 9, ...
    like = torch.zeros(1, 4, 8, 8)
    for seed in (8, 9):
        assert torch.equal(fresh(like), torch.from_numpy(np.random.RandomState(seed).randn(1, 4, 8, 8)).float())


# ---------------------------------------------------------------- guidance


def test_negative_prompt_steers_only_with_guidance(sd):
    plain = sd("a red cube", seed=0, cfg=5.0, **FAST)
    assert differ(sd("a red cube", negative_prompt="blurry", seed=0, cfg=5.0, **FAST), plain)
    unguided = sd("a red cube", seed=0, cfg=1.0, **FAST)
    assert differ(unguided, plain)
    assert np.array_equal(sd("a red cube", negative_prompt="blurry", seed=0, cfg=1.0, **FAST), unguided)


def network_batches(pipe, run) -> list[int]:
    """Batch sizes the network saw while `run()` ran."""
    sizes = []
    handle = pipe.engine.network.register_forward_hook(lambda module, args, output: sizes.append(len(output)))
    try:
        run()
    finally:
        handle.remove()
    return sizes


def test_cfg_doubles_the_batch_and_cfg_1_does_not(sd):
    assert network_batches(sd, lambda: sd("a", num_images=2, cfg=5.0, **FAST)) == [4, 4]
    assert network_batches(sd, lambda: sd("a", num_images=2, cfg=1.0, **FAST)) == [2, 2]


def test_sdxl_zeroes_the_unconditional_text_unless_a_negative_prompt_is_given(sd, sdxl):
    def uc(pipe, negative):
        return pipe.conditionings(["a red cube"], [negative], 64, 64, None, guided=True)[1]

    assert not uc(sdxl, "")["crossattn"].any()  # the demo's force_uc_zero_embeddings=["txt"]
    assert uc(sdxl, "blurry")["crossattn"].abs().sum() > 0
    assert uc(sd, "")["crossattn"].abs().sum() > 0  # SD 2.1 (legacy) embeds the empty prompt


def test_micro_conditioning_batches_follow_the_demo():
    keys = ["txt", "original_size_as_tuple", "crop_coords_top_left", "target_size_as_tuple", "aesthetic_score"]
    micro = MicroConditioning(original_size=(300, 200), crop_coords_top_left=(10, 20))
    batch, batch_uc = conditioner_batches(keys, ["a", "b"], ["", ""], 128, 64, micro, "cpu")
    assert batch["original_size_as_tuple"].tolist() == [[300, 200]] * 2  # (height, width)
    assert batch["crop_coords_top_left"].tolist() == [[10, 20]] * 2  # (top, left)
    assert batch["target_size_as_tuple"].tolist() == [[128, 64]] * 2  # default: the output's size
    assert batch["aesthetic_score"].tolist() == [[6.0]] * 2 and batch_uc["aesthetic_score"].tolist() == [[2.5]] * 2
    assert batch_uc["txt"] == ["", ""] and batch_uc["original_size_as_tuple"].tolist() == [[300, 200]] * 2
    only_text, _ = conditioner_batches(["txt"], ["a"], [""], 64, 64, micro, "cpu")
    assert list(only_text) == ["txt"]


def test_micro_conditioning_changes_sdxl_images(sdxl, sdxl_image):
    cropped = sdxl("a red cube", seed=0, micro=MicroConditioning(crop_coords_top_left=(256, 0)), **FAST)
    assert differ(cropped, sdxl_image)


# ---------------------------------------------------------------- samplers, callback


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_runs(sd, name):
    images = sd("a red cube", sampler=name, seed=0, **FAST)
    assert images.shape == (1, 64, 64, 3)


def test_sampler_choice_and_options_change_the_images(sd):
    euler = sd("a red cube", seed=0, num_steps=3, progress=False)  # with 2 steps DPM++(2M) is Euler
    assert differ(sd("a red cube", sampler="DPMPP2MSampler", seed=0, num_steps=3, progress=False), euler)
    ancestral = sd("a red cube", sampler="EulerAncestralSampler", seed=0, **FAST)
    deterministic = sd("a red cube", sampler="EulerAncestralSampler", sampler_options={"eta": 0.0}, seed=0, **FAST)
    assert differ(ancestral, deterministic)


def test_callback_sees_every_step(sd):
    steps = []
    sd("a red cube", seed=0, num_steps=3, progress=False,
       callback=lambda x, denoised, sigma, step: steps.append((step, x.shape, denoised.shape)))
    assert steps == [(i, (1, 4, 8, 8), (1, 4, 8, 8)) for i in range(3)]


# ---------------------------------------------------------------- image to image and the refiner


def test_strength_keeps_the_lowest_sigmas_like_the_reference():
    full = diffusion.LegacyDDPMDiscretization()(10)  # 11 sigmas, high to low, then 0
    for strength in (1.0, 0.5, 0.3, 0.01):
        keep = max(int(strength * 11), 1)
        expected = torch.flip(torch.flip(full, (0,))[:keep], (0,))  # Img2ImgDiscretizationWrapper
        torch.testing.assert_close(StrengthDiscretization(diffusion.LegacyDDPMDiscretization(), strength)(10),
                                   expected)


@pytest.mark.parametrize("num_steps", [4, 10, 50])
@pytest.mark.parametrize("strength", [0.0, 0.01, 0.15, 0.3, 0.5, 1.0])
def test_handover_stops_the_base_like_the_reference(num_steps, strength):
    full = diffusion.LegacyDDPMDiscretization()(num_steps)
    steps = num_steps + 1  # Txt2NoisyDiscretizationWrapper with original_steps = the base's steps
    prune_index = max(min(int(strength * steps) - 1, steps - 1), 0)
    expected = torch.flip(torch.flip(full, (0,))[prune_index:], (0,))
    base = HandoverDiscretization(diffusion.LegacyDDPMDiscretization(), strength)(num_steps)
    torch.testing.assert_close(base, expected)
    refiner = StrengthDiscretization(diffusion.LegacyDDPMDiscretization(), strength)(num_steps)
    assert base[-1] == refiner[0] and len(base) + len(refiner) == len(full) + 1  # one shared sigma, no gap


def spy_on_sample(monkeypatch, pipe, runs: list):
    """Record every `pipe.sample` run as (first state, schedule, negative prompts, output)."""
    original = pipe.sample

    def sample(x, prompts, negative_prompts, sampler, **options):
        out = original(x, prompts, negative_prompts, sampler, **options)
        sigmas = sampler.sigmas()
        runs.append((sampler.start(x, sigmas), sigmas, negative_prompts, out))
        return out

    monkeypatch.setattr(pipe, "sample", sample)


def test_image_to_image_default_strength_is_the_demos(monkeypatch, sd):
    runs = []
    spy_on_sample(monkeypatch, sd, runs)
    sd.image_to_image(torch.zeros(1, 4, 8, 8), "a", num_steps=50, progress=False)
    # "Img2Img Strength" 0.75: the lowest int(0.75 * 51) = 38 of the 51 sigmas, so 37 steps
    torch.testing.assert_close(runs[0][1], diffusion.LegacyDDPMDiscretization()(50)[13:])


def test_image_to_image_at_strength_0_returns_the_input_decoded(sdxl):
    latents = sdxl("a red cube", seed=0, return_latents=True, **FAST)
    assert latents.shape == (1, 4, 8, 8)
    unchanged = sdxl.image_to_image(latents, "a red cube", strength=0.0, seed=0, **FAST)
    assert np.array_equal(unchanged, sdxl.decode(latents))
    # 4 steps: 5 sigmas, strength 0.5 keeps the lowest 2 (one step); with 2 steps it would keep only sigma = 0
    assert differ(sdxl.image_to_image(latents, "a red cube", strength=0.5, seed=0, num_steps=4, progress=False),
                  unchanged)


def test_image_to_image_takes_uint8_images(sd):
    images = sd(["a red cube", "a blue ball"], seed=0, **FAST)
    redrawn = sd.image_to_image(images, "a green cone", strength=0.6, seed=0, **FAST)
    assert redrawn.shape == (2, 64, 64, 3) and differ(redrawn, images)
    assert sd.image_to_image(images[0], ["a green cone"], strength=0.6, seed=0, **FAST).shape == (1, 64, 64, 3)


def test_refiner_finishes_the_base_trajectory_as_the_demo(monkeypatch, sdxl, refiner):
    runs, sigmas_seen = [], []
    spy_on_sample(monkeypatch, sdxl, runs)
    spy_on_sample(monkeypatch, refiner, runs)
    sdxl("a red cube", negative_prompt="blurry", refiner=refiner, num_steps=50, progress=False,
         callback=lambda x, denoised, sigma, step: sigmas_seen.append((step, float(sigma))))
    (_, base_sigmas, base_negatives, handed_over), (refiner_start, refiner_sigmas, refiner_negatives, _) = runs
    full = diffusion.LegacyDDPMDiscretization()(50)
    # 50 steps, strength 0.15: the base runs 44 steps and stops at sigma 0.3866; the refiner runs the last 6
    torch.testing.assert_close(base_sigmas, full[:45])
    torch.testing.assert_close(refiner_sigmas, full[44:])
    assert abs(float(base_sigmas[-1]) - 0.3866) < 1e-4
    assert [step for step, _ in sigmas_seen] == [*range(44), *range(6)]  # the callback sees both runs
    assert [sigma for _, sigma in sigmas_seen[44:]] == pytest.approx(full[44:-1].tolist())
    # ... from exactly the base's latents: no fresh noise
    torch.testing.assert_close(refiner_start, handed_over, rtol=1e-6, atol=1e-6)
    assert base_negatives == ["blurry"] and refiner_negatives == [""]  # the demo's refiner gets ""


def test_refiner_can_re_noise_the_finished_base_image(monkeypatch, sdxl, refiner):
    runs = []
    spy_on_sample(monkeypatch, sdxl, runs)
    spy_on_sample(monkeypatch, refiner, runs)
    options = {"refiner": refiner, "num_steps": 50, "progress": False}
    sdxl("a red cube", refinement=Refinement(strength=0.3, finish_denoising=False), **options)
    (_, base_sigmas, _, finished), (refiner_start, refiner_sigmas, _, _) = runs
    full = diffusion.LegacyDDPMDiscretization()(50)
    torch.testing.assert_close(base_sigmas, full)  # the base runs to sigma 0
    torch.testing.assert_close(refiner_sigmas, full[-int(0.3 * 51):])  # the refiner's own strength-0.3 schedule
    added = (refiner_start - finished) / refiner_sigmas[0]
    assert 0.8 < float(added.std()) < 1.2 and abs(float(added.mean())) < 0.2  # fresh unit noise at sigma_0


def test_refiner_options_reach_the_refiner(monkeypatch, sdxl, refiner):
    runs = []
    spy_on_sample(monkeypatch, refiner, runs)
    batches = network_batches(refiner, lambda: sdxl("a", refiner=refiner, num_steps=10, progress=False,
                                                    refinement=Refinement(strength=0.5, cfg=1.0,
                                                                          sampler="HeunEDMSampler")))
    assert len(runs[0][1]) == 5  # the lowest int(0.5 * 11) = 5 sigmas of the base's 10 steps: 4 steps
    assert batches == [1] * 7  # Heun: two evaluations a step but the last; cfg 1: no unconditional half
    runs.clear()
    sdxl("a", refiner=refiner, num_steps=10, progress=False,
         refinement=Refinement(num_steps=20, finish_denoising=False))
    assert len(runs[0][1]) == int(0.15 * 21)  # its own 20-step schedule, cut at 0.15


def test_refiner_steps_change_the_image_reproducibly(sdxl, refiner):
    options = {"seed": 0, "refiner": refiner, "num_steps": 20, "progress": False}  # 0.15 of 21 sigmas: 2 steps
    refined = sdxl("a red cube", **options)
    assert np.array_equal(sdxl("a red cube", **options), refined)
    # strength 0: the base runs to sigma 0 and the refiner only decodes
    assert differ(refined, sdxl("a red cube", refinement=Refinement(strength=0.0), **options))
    assert sdxl("a red cube", return_latents=True, **options).shape == (1, 4, 8, 8)


def test_a_refiner_that_cannot_continue_the_base_is_refused(sdxl, refiner):
    with pytest.raises(ValueError, match="refiner's schedule .*Refinement\\(finish_denoising=False\\)"):
        sdxl("a", refiner=refiner, num_steps=50, refinement=Refinement(num_steps=40), progress=False)
    with pytest.raises(ValueError, match="pass refiner="):
        sdxl("a", refinement=Refinement(), progress=False)
    for bad, message in [({"strength": 1.5}, "strength is a fraction"), ({"num_steps": 0}, "num_steps must be"),
                         ({"cfg": -2.0}, "cfg must be"), ({"finish_denoising": "yes"}, "True or False")]:
        with pytest.raises(ValueError, match=message):
            Refinement(**bad)


def test_refiner_is_conditioned_on_aesthetic_scores(refiner):
    c, uc = refiner.conditionings(["a red cube"], [""], 64, 64, None, guided=True)
    assert c["vector"].shape == uc["vector"].shape == (1, 28)
    assert not torch.equal(c["vector"][:, -4:], uc["vector"][:, -4:])  # 6.0 against 2.5
    assert uc["crossattn"].abs().sum() > 0  # the refiner is "legacy": "" is embedded, not zeroed


# ---------------------------------------------------------------- turbo


def test_turbo_schedule_is_the_demos():
    sigmas = diffusion.LegacyDDPMDiscretization()(1000)
    for steps in (1, 2, 4):
        torch.testing.assert_close(TurboDiscretization()(steps), sigmas[[0, 100, 200, 300][:steps] + [1000]])
    with pytest.raises(ValueError, match="1 to 4 steps"):
        TurboDiscretization()(5)


def test_turbo_samples_in_one_unguided_step():
    turbo = tiny_pipeline(TurboPipeline, "tiny_sdxl")
    assert network_batches(turbo, lambda: turbo("a red cube", seed=0, num_images=2, progress=False)) == [2]
    one = turbo("a red cube", seed=0, progress=False)
    assert one.shape == (1, 64, 64, 3)
    assert np.array_equal(turbo("a red cube", seed=0, progress=False), one)
    assert differ(turbo("a red cube", seed=0, num_steps=4, progress=False), one)
    with pytest.raises(ValueError, match="1 to 4 steps"):
        turbo("a red cube", num_steps=8, progress=False)


# ---------------------------------------------------------------- memory options


def test_dtype_applies_to_network_and_text_encoders_not_the_vae():
    pipe = tiny_pipeline(TextToImagePipeline, "tiny_sdxl", dtype=torch.bfloat16)
    assert next(pipe.engine.network.parameters()).dtype == torch.bfloat16
    assert next(pipe.engine.conditioner.parameters()).dtype == torch.bfloat16
    assert next(pipe.engine.first_stage_model.parameters()).dtype == torch.float32
    images = pipe("a red cube", seed=0, **FAST)
    assert images.shape == (1, 64, 64, 3) and images.dtype == np.uint8


def test_offload_is_a_no_op_on_cpu(sdxl, sdxl_image):
    offloaded = TextToImagePipeline(sdxl.engine, sdxl.defaults, offload="model")
    assert np.array_equal(offloaded("a red cube", seed=0, **FAST), sdxl_image)


# ---------------------------------------------------------------- loading and identification


def write_checkpoint(pipe, path):
    save_file({key: value.contiguous() for key, value in pipe.engine.state_dict().items()}, path)
    return path


def test_checkpoint_in_the_official_layout_loads_and_is_identified(tmp_path, sdxl, sdxl_image):
    path = write_checkpoint(sdxl, tmp_path / "model.safetensors")
    for preset in (None, "tiny_sdxl"):
        loaded = TextToImagePipeline.from_checkpoint(path, preset=preset)
        assert np.array_equal(loaded("a red cube", seed=0, **FAST), sdxl_image)
    turbo = TurboPipeline.from_checkpoint(write_checkpoint(sdxl, tmp_path / "turbo.safetensors"))
    assert turbo.defaults == TurboPipeline.DEFAULTS["tiny_sdxl"]


def header_only_checkpoint(path, name: str):
    """A safetensors header with an official model's tensor table and no data: enough to identify it."""
    tensors = manifest(name)["tensors"]
    header = json.dumps({key: {"dtype": "F16", "shape": entry["shape"], "data_offsets": [0, 0]}
                         for key, entry in tensors.items()}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


def test_official_files_are_identified_by_their_tensors(tmp_path, monkeypatch):
    chosen = []
    for cls in (TextToImagePipeline, TurboPipeline):  # stop before loading the (absent) weights
        monkeypatch.setattr(cls, "from_preset", classmethod(lambda cls, name, **options: chosen.append(name)))
    base = header_only_checkpoint(tmp_path / "base.safetensors", "sd_xl_base")
    TextToImagePipeline.from_checkpoint(base)
    TurboPipeline.from_checkpoint(base)  # SDXL-Turbo's file reads as sd_xl_base
    TextToImagePipeline.from_checkpoint(header_only_checkpoint(tmp_path / "refiner.safetensors", "sd_xl_refiner"))
    sd_2_1 = header_only_checkpoint(tmp_path / "v2-1.safetensors", "sd_2_1")
    TurboPipeline.from_checkpoint(sd_2_1)  # SD-Turbo
    assert chosen == ["sd_xl_base", "sd_xl_turbo", "sd_xl_refiner", "sd_2_1"]
    with pytest.raises(ValueError, match="sd_2_1, sd_2_1_768.*pass preset="):  # eps or v: the tensors cannot tell
        TextToImagePipeline.from_checkpoint(sd_2_1)


def test_files_of_other_models_are_named(tmp_path, refiner):
    path = write_checkpoint(refiner, tmp_path / "refiner.safetensors")  # no preset has the tiny refiner's layout
    with pytest.raises(ValueError, match="is none of sd_2_1, .*pass preset="):
        TextToImagePipeline.from_checkpoint(path)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("options, message", [
    ({"height": 100}, r"100x64 is not a multiple of 64; use one of heights \[64, 128\]"),
    ({"width": 0}, "positive whole numbers"),
    ({"num_steps": 0}, "num_steps must be an integer >= 1"),
    ({"sampler": "Euler"}, "Unknown sampler 'Euler'; choose one of DEISSampler, DPMPP2MSampler"),
    ({"prompt": []}, "non-empty list of strings"),
    ({"prompt": ["a", 3]}, "non-empty list of strings"),
    ({"negative_prompt": ["a", "b"]}, "2 negative_prompts for 1 prompts; give one, or one per prompt"),
    ({"micro": None, "height": 64.5}, "positive whole numbers"),
    ({"num_images": 0}, "num_images must be an integer >= 1"),
    ({"cfg": -1.0}, "cfg must be a finite number >= 0"),
    ({"sampler_options": {"bogus": 1}}, "bogus"),
])
def test_bad_input_is_refused_with_a_message(sd, options, message):
    options = {"prompt": "a red cube", **options}
    with pytest.raises((ValueError, TypeError), match=message):
        sd(**options, progress=False)


def test_bad_micro_conditioning_is_refused():
    with pytest.raises(ValueError, match=r"original_size is a pair of numbers"):
        MicroConditioning(original_size=(1024,))


def test_bad_image_to_image_input_is_refused(sd):
    with pytest.raises(ValueError, match="strength"):
        sd.image_to_image(torch.zeros(1, 4, 8, 8), "a", strength=1.5, progress=False)
    with pytest.raises(ValueError, match=r"latents shaped \(N, 4, H/8, W/8\)"):
        sd.image_to_image(torch.zeros(1, 3, 8, 8), "a", progress=False)
    with pytest.raises(ValueError, match="not a multiple of 64"):
        sd.image_to_image(np.zeros((96, 64, 3), np.uint8), "a", progress=False)
    with pytest.raises(ValueError, match="2 prompts for 1 images"):
        sd.image_to_image(torch.zeros(1, 4, 8, 8), ["a", "b"], progress=False)


def test_a_conditioner_this_pipeline_cannot_feed_is_named(sd):
    svd = DiffusionEngine.from_preset("tiny_svd")
    with pytest.raises(ValueError, match="conditioner reads .*cond_frames_without_noise"):
        TextToImagePipeline(svd, sd.defaults)("a red cube", **FAST)
