"""Where tiny_sv4d2's error is: the measurements behind data/README.md's "Where the remaining error is".

On held-out objects (minigen.recipes.quality's world and metrics), with the committed data/tiny_sv4d2.safetensors:
- the first window's posterior mean (one denoising step from pure noise, the model's PSNR-optimal guess): its
  PSNR, its outline's IoU with the truth's (beside the input view's outline), and its colours inside the true
  outline;
- an oracle that paints the true outline of every novel view and frame with the input view's mean colour;
- how the mean colour of a novel view follows the input view's, in the truth and in the model (correlation per
  channel over objects, and the model's spread beside the input's);
- sampled PSNR at a few step counts and guidance scales (cfg 1: no guidance), on another held-out seed (the one
  tuning is allowed on);
- the margin of `benchmarks/quality.py` (its per-object margins, read from its results file: run it first) by the
  shape of the objects;
- the recipe's training loss on videos the model learnt from and on held-out ones: whether it overfits;
- whether the model reads its camera inputs: sampled PSNR with the true cameras and with plain ones (each novel view
  at the middle elevation, exactly 360 / V degrees from the last), and what ignoring them costs: the samples against
  the truth rendered at the plain cameras.

    python benchmarks/sv4d2_error.py       # about 7 minutes on 2 CPU cores; benchmarks/results/sv4d2_error.json
"""

import json
from dataclasses import replace
from pathlib import Path

import torch

from minigen.camera import Trajectory, sv4d2_camera_inputs
from minigen.data.scenes import SHAPES, MovingObjectDataset
from minigen.pipelines.sv4d import SV4D2Pipeline
from minigen.recipes import quality, tiny_sv4d2, worlds
from minigen.train import Trainer, join_world

RESULTS = Path(__file__).resolve().parent / "results"
OBJECTS, TUNING_SEED, TUNING_OBJECTS = 12, 2, 24
LOSS_VIDEOS, LOSS_DRAWS = 64, 4
CAMERA_OBJECTS = 24
SAMPLER_SETTINGS = ((16, 2.0), (16, 1.0), (8, 1.5), (3, 1.0))  # (steps, cfg); the preset's 16 steps at cfg 2 first
WHITE = 0.98  # [0, 1] units: a pixel darker than this in any channel belongs to the object


def object_mask(images: torch.Tensor, white: float = WHITE) -> torch.Tensor:
    """`... 1 H W` booleans: the non-white pixels of images `... 3 H W` in [0, 1]."""
    return (images < white).any(-3, keepdim=True)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two boolean masks."""
    return ((a & b).sum() / (a | b).sum()).item()


def psnr(images: torch.Tensor, truth: torch.Tensor) -> float:
    """PSNR in dB of the whole set (images in [0, 1]), as quality.scores averages it per image."""
    return quality.psnr(images.flatten(0, -4), truth.flatten(0, -4)).mean().item()


def mean_colour(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`... 3`: the mean colour of each image's masked pixels."""
    return (images * mask).sum((-1, -2)) / mask.sum((-1, -2)).clamp(min=1)


def correlation(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Pearson correlation per column of two `n c` tables."""
    a, b = a - a.mean(0), b - b.mean(0)
    return ((a * b).sum(0) / (a.norm(dim=0) * b.norm(dim=0))).tolist()


@torch.no_grad()
def first_window_posterior_mean(pipeline: SV4D2Pipeline, example: dict, generator: torch.Generator) -> torch.Tensor:
    """The network's denoised estimate from pure noise at sigma 700 for the first window: `t v 3 H W` in [-1, 1]."""
    frames = example["frames"]  # t v 3 H W, view 0 the input video
    times = pipeline.frames_per_window
    cameras = sv4d2_camera_inputs(Trajectory(*tiny_sv4d2.novel_view_cameras(example)), num_times=times)
    window = pipeline.window_conditioning(frames[:times, 0], frames[0, 1:], cameras, generator, None,
                                          with_views=False)
    sigma = 700.0
    noise = sigma * torch.randn(times * pipeline.views, 4, 8, 8, generator=generator)
    extra = window.extra | {"image_only_indicator": window.extra["image_only_indicator"][1:]}  # c's row only
    denoised = pipeline.engine.denoise(noise, torch.full((len(noise),), sigma), window.c, **extra)
    return pipeline.decode(denoised, None)


def outline_and_colour(pipeline: SV4D2Pipeline) -> dict:
    """The posterior-mean breakdown, the outline oracle and the colour correlations on OBJECTS held-out objects."""
    held_out = tiny_sv4d2.dataset(tiny_sv4d2.HELD_OUT_SEED, length=OBJECTS)
    generator = torch.Generator().manual_seed(0)
    examples = [held_out[index] for index in range(OBJECTS)]
    unit = [quality.to_unit(example["frames"]) for example in examples]  # t v 3 H W
    guesses = torch.stack([quality.to_unit(first_window_posterior_mean(pipeline, example, generator))
                           for example in examples])  # n t v 3 H W, the first window's times
    truth = torch.stack([frames[:pipeline.frames_per_window, 1:] for frames in unit])
    inputs = torch.stack([frames[:pipeline.frames_per_window, :1] for frames in unit]).expand_as(truth)
    true_outline, input_outline, model_outline = object_mask(truth), object_mask(inputs), object_mask(guesses, 0.9)
    oracle = [torch.where(object_mask(frames[:, 1:]), mean_colour(frames[:, :1], object_mask(frames[:, :1]))
                          [..., None, None], torch.ones_like(frames[:, 1:])) for frames in unit]  # every frame
    input_colour = torch.stack([mean_colour(frames[0, 0], object_mask(frames[0, 0])) for frames in unit])  # n 3
    true_colour = torch.stack([mean_colour(frames[0, 1:], object_mask(frames[0, 1:])).mean(0) for frames in unit])
    model_colour = torch.stack([mean_colour(guess[0], object_mask(guess[0], 0.9)).mean(0) for guess in guesses])
    return {
        "posterior mean psnr": psnr(guesses, truth),
        "posterior mean colours inside the true outline psnr": psnr(
            torch.where(true_outline, guesses, torch.ones_like(guesses)), truth),
        "outline iou: model": iou(model_outline, true_outline),
        "outline iou: input view": iou(input_outline, true_outline),
        "oracle: true outline, input mean colour psnr (all frames)": psnr(
            torch.stack(oracle), torch.stack([frames[:, 1:] for frames in unit])),
        "colour correlation: input and truth": correlation(input_colour, true_colour),
        "colour correlation: input and model": correlation(input_colour, model_colour),
        "colour spread: input": input_colour.std(0).tolist(),
        "colour spread: model": model_colour.std(0).tolist(),
    }


def sampler_settings(pipeline: SV4D2Pipeline) -> dict:
    """Sampled PSNR of every novel view and frame at SAMPLER_SETTINGS, on TUNING_OBJECTS of TUNING_SEED."""
    held_out = tiny_sv4d2.dataset(TUNING_SEED, length=TUNING_OBJECTS)
    examples = [held_out[index] for index in range(TUNING_OBJECTS)]
    truth = torch.stack([example["frames"][:, 1:] for example in examples])
    result = {}
    for steps, cfg in SAMPLER_SETTINGS:
        model = torch.stack([quality.novel_view_videos(pipeline, example, index, num_steps=steps, cfg=cfg)
                             for index, example in enumerate(examples)])  # n t v 3 H W
        result[f"{steps} steps, cfg {cfg:g}"] = quality.scores(model.flatten(0, 2), truth.flatten(0, 2))["psnr"]
    return result


def margin_by_shape() -> dict:
    """{shape: its objects and their mean margin (dB)} over the objects benchmarks/quality.py scored."""
    margins = json.loads((RESULTS / "quality_tiny_sv4d2.json").read_text())["margin"]["margin per object"]
    held_out = tiny_sv4d2.dataset(tiny_sv4d2.HELD_OUT_SEED, length=len(margins))
    shapes = [held_out[index]["shape"] for index in range(len(margins))]
    by_shape = {shape: [m for m, s in zip(margins, shapes, strict=True) if s == shape] for shape in SHAPES}
    return {shape: {"objects": len(values), "margin": sum(values) / len(values)}
            for shape, values in by_shape.items() if values}


def training_losses(engine) -> dict:
    """The recipe's training loss (its windows, conditioning dropout and noise, drawn as a training step draws them)
    of the committed network on the first LOSS_VIDEOS videos it was trained on and on as many held-out ones,
    LOSS_DRAWS draws each."""
    def videos(seed: int) -> worlds.LatentCache:
        return worlds.LatentCache(tiny_sv4d2.dataset(seed, length=LOSS_VIDEOS), LOSS_VIDEOS)

    recipe = replace(tiny_sv4d2.recipe(), dataset=lambda: videos(tiny_sv4d2.TRAIN_SEED))
    trainer = Trainer(recipe, recipe.config, Path("not written"), join_world("cpu"), progress=False)
    trainer.engine.model.load_state_dict(engine.model.state_dict())
    trainer.engine.model.eval()
    result = {}
    for name, cache in (("videos trained on", trainer.dataset), ("held-out videos", videos(tiny_sv4d2.HELD_OUT_SEED))):
        trainer.dataset = cache
        losses = []
        with torch.no_grad():
            for draw in range(LOSS_DRAWS):
                trainer.step = draw  # the step seeds each example's draws
                for first in range(0, LOSS_VIDEOS, 4):
                    losses.append(trainer.micro_batch_loss(list(range(4)), list(range(first, first + 4))).item())
        result[name] = sum(losses) / len(losses)
    return result


class PlainCameras(MovingObjectDataset):
    """The same videos seen by plain cameras: the novel views at the middle of the elevation range and exactly
    360 / V degrees apart (the world's draws are made as before, so objects and motion stay the same)."""

    def cameras(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        elevations, azimuths = super().cameras(generator)
        elevations[1:] = sum(self.elevation_range) / 2
        return elevations, torch.remainder(azimuths[0] + torch.arange(self.num_views) * 360.0 / self.num_views, 360.0)


def camera_use(pipeline: SV4D2Pipeline) -> dict:
    """Sampled PSNR of CAMERA_OBJECTS held-out objects told their true cameras and told plain ones (same seeds), and
    the true-camera samples against the truth at the plain cameras: a model that ignores its cameras draws the views
    of the typical cameras, and scores higher against their truth than against the truth it was asked for."""
    world = tiny_sv4d2.dataset(tiny_sv4d2.HELD_OUT_SEED, length=CAMERA_OBJECTS)
    plain = PlainCameras(num_frames=world.num_frames, num_views=world.num_views, size=world.size, length=world.length,
                         seed=world.seed, elevation_range=world.elevation_range, fov_deg=world.fov_deg)
    truth, plain_truth, told_true, told_plain = [], [], [], []
    for index in range(CAMERA_OBJECTS):
        example, plain_example = world[index], plain[index]
        truth.append(example["frames"][:, 1:])
        plain_truth.append(plain_example["frames"][:, 1:])
        told_true.append(quality.novel_view_videos(pipeline, example, index))
        told_plain.append(quality.novel_view_videos(pipeline, example | {key: plain_example[key] for key in (
            "elevations_deg", "azimuths_deg")}, index))
    truth, plain_truth, told_true, told_plain = (quality.to_unit(torch.stack(videos)) for videos in (
        truth, plain_truth, told_true, told_plain))
    return {"told the true cameras": psnr(told_true, truth), "told plain cameras": psnr(told_plain, truth),
            "told the true cameras, against the truth at plain cameras": psnr(told_true, plain_truth),
            "truth at plain cameras against the truth": psnr(plain_truth, truth)}


def main() -> None:
    engine = quality.trained_engine("tiny_sv4d2")
    pipeline = quality.tiny_pipeline(SV4D2Pipeline, engine, "tiny_sv4d2")
    result = {f"held-out seed {tiny_sv4d2.HELD_OUT_SEED}, {OBJECTS} objects": outline_and_colour(pipeline),
              f"held-out seed {TUNING_SEED}, {TUNING_OBJECTS} objects: sampled psnr": sampler_settings(pipeline),
              "benchmarks/quality.py's margin by shape": margin_by_shape(),
              f"training loss, {LOSS_VIDEOS} videos x {LOSS_DRAWS} draws": training_losses(engine),
              f"held-out seed {tiny_sv4d2.HELD_OUT_SEED}, {CAMERA_OBJECTS} objects: cameras": camera_use(pipeline)}
    text = json.dumps(result, indent=1)
    (RESULTS / "sv4d2_error.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
