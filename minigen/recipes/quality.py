"""How good are the trained tiny models? Measured on held-out objects against the renderer's truth.

Every world of `minigen.data.scenes` knows exactly what each novel view and frame looks like, so the tiny
models can be scored the way papers score the real ones, with PSNR and SSIM against the truth, beside two
trivial baselines a model must beat to have learnt anything: copying the input view, and the mean training
image. For the image-to-video model, fidelity of frame 0 to the input and whether the measured motion of its
clips rises with `motion_bucket_id` (Spearman's rank correlation).

    python benchmarks/quality.py tiny_sv3d     # benchmarks/results/quality_tiny_sv3d.json, docs/benchmarks.md
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange

from .. import io
from ..camera import Trajectory
from ..data import scenes
from ..pipelines import DiffusionEngine
from ..pipelines.sv3d import SV3DPipeline
from ..pipelines.sv4d import SV4D2Pipeline
from ..pipelines.svd import SVDPipeline

# ---------------------------------------------------------------------------------------------------- metrics


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped as saved frames are."""
    return ((images.float() + 1) / 2).clamp(0, 1)


def psnr(images: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each image `n 3 H W` (values in [0, 1]) against the truth."""
    mse = ((images - truth) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def ssim(images: torch.Tensor, truth: torch.Tensor, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity of each image `n 3 H W` in [0, 1] (Wang et al. 2004; Gaussian window, per channel)."""
    coords = torch.arange(window, dtype=torch.float32) - window // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = (g[:, None] * g[None, :] / g.sum() ** 2).expand(3, 1, window, window)

    def blur(x):
        return F.conv2d(x, kernel, groups=3)

    mu_x, mu_y = blur(images), blur(truth)
    var_x = blur(images * images) - mu_x**2
    var_y = blur(truth * truth) - mu_y**2
    cov = blur(images * truth) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    score = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return score.flatten(1).mean(1)


def ranks(values: list[float]) -> torch.Tensor:
    """Ranks 0 .. n-1 of the values, tied values sharing the mean of their ranks."""
    values = torch.tensor(values, dtype=torch.float64)
    order = values.argsort().argsort().double()
    return torch.stack([order[values == value].mean() for value in values])


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation: the correlation of the ranks (ties get their mean rank; 0 if one side is
    constant, since a constant says nothing about order)."""
    rank_x, rank_y = ranks(x), ranks(y)
    rank_x, rank_y = rank_x - rank_x.mean(), rank_y - rank_y.mean()
    norm = rank_x.norm() * rank_y.norm()
    return 0.0 if norm == 0 else (rank_x @ rank_y / norm).item()


def scores(images: torch.Tensor, truth: torch.Tensor) -> dict:
    """Mean PSNR and SSIM of images against the truth, both `n 3 H W` in [-1, 1]."""
    images, truth = to_unit(images), to_unit(truth)
    return {"psnr": psnr(images, truth).mean().item(), "ssim": ssim(images, truth).mean().item()}


def novel_view_scores(truth: list[torch.Tensor], **methods: list[torch.Tensor]) -> dict:
    """Each method's scores against the truth (per object, images `n 3 H W` in [-1, 1]; `model` and two baselines),
    and the model's margin over the better baseline with its spread over objects.

    The margin is a mean over few objects, so it comes with its standard error (the spread of the per-object
    margins / sqrt(objects)): how far it could move on other objects of the same world. `margin per object`
    keeps every object's, so the margin over any subset of the objects can be read off."""
    result = {name: scores(torch.cat(images), torch.cat(truth)) for name, images in methods.items()}
    better = max((name for name in methods if name != "model"), key=lambda name: result[name]["psnr"])
    per_object = torch.stack([object_psnr(model, true) - object_psnr(baseline, true) for model, baseline, true in
                              zip(methods["model"], methods[better], truth, strict=True)])
    result["margin"] = {"over": better, "psnr": per_object.mean().item(),
                        "standard error": (per_object.std() / len(per_object) ** 0.5).item(),
                        "margin per object": per_object.tolist()}
    return result


def object_psnr(images: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The mean PSNR of one object's images (the benchmark's PSNR averages images, so objects count alike)."""
    return psnr(to_unit(images), to_unit(truth)).mean()


def mean_image(dataset, count: int = 64) -> torch.Tensor:
    """The mean of the frames of `count` training examples: `3 H W`, the 'predict the average' baseline."""
    frames = torch.cat([dataset[i]["frames"].reshape(-1, *dataset[i]["frames"].shape[-3:]) for i in range(count)])
    return frames.mean(0)


# -------------------------------------------------------------------------------------------------- generation


def tiny_pipeline(pipeline_class, engine: DiffusionEngine, preset: str):
    """A pipeline around an engine being trained, with the preset's sampling defaults, so that the sample grids
    during training are made the way a user of the trained model will make them."""
    return pipeline_class(engine, pipeline_class.DEFAULTS[preset])


def generate_orbit(pipeline: SV3DPipeline, example: dict, seed: int) -> torch.Tensor:
    """The model's orbit `v 3 H W` in [-1, 1] at the example's cameras, from its input view (the last frame)."""
    frames = example["frames"]
    trajectory = Trajectory(example["elevations_deg"].double(), example["azimuths_deg"].double())
    values = pipeline.conditions(len(frames), trajectory.elevations_deg, trajectory.azimuths_deg)
    sampler = pipeline.make_sampler(num_frames=len(frames), progress=False)
    generator = torch.Generator().manual_seed(seed)
    sample = pipeline.generate(frames[-1:], values, len(frames), sampler, generator=generator)
    return sample.decoded.float().clamp(-1, 1)


def truth_and_model_grid(examples, generator: torch.Generator, truth_and_model) -> torch.Tensor:
    """For the training run's sample grids: `truth_and_model(example, seed)` gives an example's true frames and the
    model's, each `n 3 H W`; they are stacked example by example, with one seed drawn from `generator`."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    return torch.cat([rows for index in range(len(examples)) for rows in truth_and_model(examples[index], seed)])


def orbit_grid(engine: DiffusionEngine, examples, generator: torch.Generator) -> torch.Tensor:
    """True orbits, each above the model's orbit from its input view at the same cameras."""
    pipeline = tiny_pipeline(SV3DPipeline, engine, "tiny_sv3d")
    return truth_and_model_grid(examples, generator,
                                lambda example, seed: (example["frames"], generate_orbit(pipeline, example, seed)))


def as_uint8(frames: torch.Tensor):
    """`n 3 H W` in [-1, 1] -> uint8 `[n, H, W, 3]`, what the pipelines take."""
    return io.to_uint8(frames.permute(0, 2, 3, 1))


def from_uint8(frames) -> torch.Tensor:
    """uint8 `[..., H, W, 3]` -> `... 3 H W` in [-1, 1]."""
    return torch.from_numpy(frames).movedim(-1, -3).float() / 127.5 - 1


def clip_grid(engine: DiffusionEngine, examples, generator: torch.Generator) -> torch.Tensor:
    """True clips, each above the model's clip from its first frame at the clip's own motion bucket and fps."""
    pipeline = tiny_pipeline(SVDPipeline, engine, "tiny_svd")

    def truth_and_model(example, seed):
        clip = pipeline(as_uint8(example["frames"][:1])[0], motion_bucket_id=int(example["motion_bucket_id"]),
                        fps_id=int(example["fps_id"]), seed=seed, progress=False)
        return example["frames"], from_uint8(clip)

    return truth_and_model_grid(examples, generator, truth_and_model)


def novel_view_videos(pipeline: SV4D2Pipeline, example: dict, seed: int, **sampling) -> torch.Tensor:
    """The model's novel-view videos `t v 3 H W` in [-1, 1] from a moving-object example's input video (view 0) at
    its cameras; `sampling`: the pipeline's options (num_steps=, cfg=...)."""
    from .tiny_sv4d2 import novel_view_cameras

    elevations, azimuths = novel_view_cameras(example)
    videos = pipeline(as_uint8(example["frames"][:, 0]), elevations_deg=elevations, azimuths_deg=azimuths,
                      seed=seed, progress=False, **sampling)  # v t H W 3 uint8
    return rearrange(from_uint8(videos), "v t c h w -> t v c h w")


def multiview_grid(engine: DiffusionEngine, examples, generator: torch.Generator) -> torch.Tensor:
    """The true novel-view videos above the model's, one row of frames per view."""
    pipeline = tiny_pipeline(SV4D2Pipeline, engine, "tiny_sv4d2")
    return truth_and_model_grid(examples, generator, lambda example, seed: (
        rearrange(example["frames"][:, 1:], "t v c h w -> (v t) c h w"),
        rearrange(novel_view_videos(pipeline, example, seed), "t v c h w -> (v t) c h w")))


# ------------------------------------------------------------------------------------------------- evaluations


def evaluate_sv3d(engine: DiffusionEngine, objects: int = 16, seed: int = 0) -> dict:
    """Novel views of held-out objects against the truth, beside copying the input view and the mean image."""
    from .tiny_sv3d import HELD_OUT_SEED, dataset

    pipeline = tiny_pipeline(SV3DPipeline, engine, "tiny_sv3d")
    held_out, average = dataset(HELD_OUT_SEED, length=objects), mean_image(dataset())
    model, copy, mean, truths = [], [], [], []
    for index in range(objects):
        example = held_out[index]
        truth = example["frames"][:-1]  # the novel views; the last frame is the input view itself
        truths.append(truth)
        model.append(generate_orbit(pipeline, example, seed + index)[:-1])
        copy.append(example["frames"][-1:].expand_as(truth))
        mean.append(average.expand_as(truth))
    return novel_view_scores(truths, model=model, **{"copy input view": copy, "mean training image": mean})


def evaluate_sv4d2(engine: DiffusionEngine, objects: int = 8, seed: int = 0) -> dict:
    """Novel-view videos of held-out moving objects against the truth (every view and frame), the two baselines,
    and temporal consistency: mean frame-to-frame change of the generated videos beside the truth's."""
    from .tiny_sv4d2 import HELD_OUT_SEED, dataset

    pipeline = tiny_pipeline(SV4D2Pipeline, engine, "tiny_sv4d2")
    held_out, average = dataset(HELD_OUT_SEED, length=objects), mean_image(dataset())
    model, copy, mean, truths = [], [], [], []
    for index in range(objects):
        example = held_out[index]
        frames = example["frames"]  # t v 3 H W, view 0 the input video
        truth = frames[:, 1:]
        truths.append(truth)
        model.append(novel_view_videos(pipeline, example, seed + index))
        copy.append(frames[:, :1].expand_as(truth))
        mean.append(average.expand_as(truth))
    flat = [[part.flatten(0, 1) for part in parts] for parts in (truths, model, copy, mean)]  # (t v) 3 H W each
    result = novel_view_scores(flat[0], model=flat[1], **{"copy input view": flat[2], "mean training image": flat[3]})
    result["frame-to-frame change"] = {"model": frame_change(torch.stack(model)), "truth": frame_change(
        torch.stack(truths))}
    return result


def frame_change(videos: torch.Tensor) -> float:
    """Mean absolute change between consecutive frames of `n t v 3 H W` videos, in [0, 1] units."""
    return (to_unit(videos[:, 1:]) - to_unit(videos[:, :-1])).abs().mean().item()


def evaluate_i2v(engine: DiffusionEngine, objects: int = 8, buckets=(0, 64, 128, 192, 255), seed: int = 0) -> dict:
    """Frame 0's fidelity to the input image, and motion control: the measured motion of generated clips against
    the `motion_bucket_id` asked for (Spearman's rank correlation over every clip)."""
    from .tiny_i2v import FPS_ID, HELD_OUT_SEED, dataset

    pipeline = tiny_pipeline(SVDPipeline, engine, "tiny_svd")
    held_out = dataset(HELD_OUT_SEED, length=objects)
    asked, measured, first = [], [], []
    for index in range(objects):
        image = held_out[index]["frames"][0]
        for bucket in buckets:
            clip = pipeline(as_uint8(image[None])[0], motion_bucket_id=bucket, fps_id=FPS_ID, seed=seed + index,
                            progress=False)
            clip = from_uint8(clip)  # t 3 H W
            asked.append(bucket)
            measured.append(scenes.measure_motion(clip))
            first.append(scores(clip[:1], image[None]))
    by_bucket = {bucket: sum(m for a, m in zip(asked, measured, strict=True) if a == bucket) / objects
                 for bucket in buckets}
    return {"frame 0 psnr": sum(s["psnr"] for s in first) / len(first),
            "frame 0 ssim": sum(s["ssim"] for s in first) / len(first),
            "measured motion by motion_bucket_id": by_bucket,
            "spearman(motion_bucket_id, measured motion)": spearman(asked, measured)}


def shape_classifier(steps: int = 300, seed: int = 0) -> torch.nn.Module:
    """A small CNN that names the shape of a 16x16 image (trained in seconds on fresh shapes): the judge of
    whether tiny_image draws the class it is asked for."""
    from ..data.shapes import SHAPES, sample_shapes
    from .tiny_image import IMAGE_SIZE

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        classifier = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.SiLU(), torch.nn.MaxPool2d(2),  # 8x8
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.SiLU(), torch.nn.MaxPool2d(2),  # 4x4
            torch.nn.Flatten(), torch.nn.Linear(32 * 16, len(SHAPES)),
        )
    optimizer = torch.optim.Adam(classifier.parameters(), lr=3e-3)
    for _ in range(steps):
        images, labels = sample_shapes(64, generator, image_size=IMAGE_SIZE, size_range=(0.6, 0.8), jitter=0.5)
        loss = F.cross_entropy(classifier(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return classifier.eval()


@torch.no_grad()
def accuracy(classifier: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of `images` the classifier gives their `labels`."""
    return (classifier(images).argmax(1) == labels).float().mean().item()


def evaluate_image(engine: DiffusionEngine, rows: int = 16, cfg_scales=(1.0, 3.0), seed: int = 0) -> dict:
    """How often tiny_image draws the shape it is asked for, judged by a classifier, at two guidance scales; the
    classifier's own accuracy on real shapes is the ceiling."""
    from ..data.shapes import sample_shapes
    from .tiny_image import IMAGE_SIZE, NUM_CLASSES, sample

    classifier = shape_classifier()
    real, labels = sample_shapes(256, torch.Generator().manual_seed(seed + 1), image_size=IMAGE_SIZE,
                                 size_range=(0.6, 0.8), jitter=0.5)
    result = {"classifier on real shapes": accuracy(classifier, real, labels)}
    asked = torch.arange(NUM_CLASSES).repeat(rows)  # the grid's classes, row after row
    for cfg in cfg_scales:
        images = sample(engine, torch.Generator().manual_seed(seed), rows=rows, cfg=cfg)
        result[f"samples at cfg {cfg:g}"] = accuracy(classifier, images.flatten(0, 1), asked)
    return result


def trained_engine(recipe: str, weights="default") -> DiffusionEngine:
    """The engine a recipe trained: its preset's committed weights, or `weights`, another file of the same kind
    (e.g. an earlier version of the data/ file, or an export of a run)."""
    if recipe == "tiny_image":
        from .tiny_image import TRAINED
        from .tiny_image import trained_engine as image_engine

        return image_engine(TRAINED if weights == "default" else Path(weights))
    return DiffusionEngine.course_model(PRESETS[recipe], path=None if weights == "default" else Path(weights))


PRESETS = {"tiny_sv3d": "tiny_sv3d", "tiny_sv4d2": "tiny_sv4d2", "tiny_i2v": "tiny_svd"}
EVALUATIONS = {"tiny_image": evaluate_image, "tiny_i2v": evaluate_i2v, "tiny_sv3d": evaluate_sv3d,
               "tiny_sv4d2": evaluate_sv4d2}
