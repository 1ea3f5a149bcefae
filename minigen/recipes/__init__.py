"""Training recipes: what to train (a preset's engine), on what (a world of minigen.data) and how (a TrainConfig).

A recipe is plain data plus four small functions; `minigen.train` runs any of them, on one CPU or under
`torchrun` on many GPUs, without knowing which model it trains. The table `RECIPES` below is the whole
registry: one line per recipe, each pointing at the file that defines it.

    python -m minigen.train tiny_sv3d --steps 2000 --out runs/tiny_sv3d
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

# recipe name -> module of this package that defines `recipe()`
RECIPES = {
    "tiny_image": "tiny_image",  # class-conditional tiny UNet on the shapes dataset (pixels)
    "tiny_i2v": "tiny_i2v",  # SVD-style image-to-video on single-view videos with measured motion
    "tiny_sv3d": "tiny_sv3d",  # SV3D_p-style orbits of procedural objects
    "tiny_sv4d2": "tiny_sv4d2",  # SV4D 2.0-style frames x views of moving objects
}


@dataclass
class TrainConfig:
    """Everything that defines a training run. Stored in every checkpoint; a resume must match it."""

    steps: int = 1000  # optimizer steps
    batch_size: int = 8  # examples per optimizer step, summed over processes and accumulation
    accumulate: int = 1  # micro-batches per optimizer step (gradient accumulation)
    learning_rate: float = 1e-4
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    warmup_steps: int = 0  # linear learning-rate warm-up
    decay_steps: int = 0  # linear learning-rate decay to 0 over the run's last decay_steps steps
    ema_decay: float = 0.999  # EMA of the trainable weights, what gets exported
    grad_clip: float | None = 1.0  # max global gradient norm (None: no clipping)
    precision: str = "fp32"  # "fp32", "bf16" (autocast on CPU or GPU) or "fp16" (autocast + grad scaler, GPU)
    gradient_checkpointing: bool = False  # recompute activations in the backward pass to save memory
    condition_dropout: dict[str, float] = field(default_factory=dict)  # conditioner input key -> drop rate (CFG)
    trainable: tuple[str, ...] = ("model.diffusion_model.",)  # engine parameter-name prefixes that train
    frozen: tuple[str, ...] = ()  # prefixes frozen even inside `trainable` (e.g. all but the temporal layers)
    seed: int = 0
    log_every: int = 10
    sample_every: int = 0  # steps between sample grids (0: only at the end)
    checkpoint_every: int = 0  # steps between checkpoints (0: only at the end)


@dataclass
class Recipe:
    """A preset's engine, the world it learns and the functions that turn examples into a training step.

    - `dataset()`: a map-style dataset of examples, deterministic by index.
    - `make_batch(examples, generator)`: a list of examples -> the batch the conditioner reads (its input keys,
      `num_video_frames` / `image_only_indicator` for video networks) plus `"frames"`: the clean targets
      `(b t) 3 H W` in [-1, 1].
    - `encode(engine, batch)`: the batch's clean targets -> what the network denoises, `(b t) c h w` (scaled
      latents, from `batch["frames"]` or latents cached in the batch).
    - `condition(engine, batch, generator)`: the conditioning dict the network reads; by default the conditioner's
      output with per-sample embeddings (crossattn, concat) repeated to every frame, as the pipelines do.
    - `prepare(engine)`: fill the frozen parts (VAE, encoders) before training, e.g. from data/ files.
    - `sample(engine, generator)`: images `n 3 H W` in [-1, 1] for the periodic sample grid.
    - `build_engine()`: the engine, for a model without a preset (used instead of `from_preset(preset)`).
    """

    name: str
    preset: str
    description: str  # data, preset, steps and measured wall time on a 2-core CPU
    config: TrainConfig
    dataset: Callable[[], torch.utils.data.Dataset]
    make_batch: Callable[[list[dict], torch.Generator], dict]
    encode: Callable
    loss: Callable  # () -> StandardDiffusionLoss
    condition: Callable | None = None
    prepare: Callable | None = None
    sample: Callable | None = None
    build_engine: Callable | None = None  # () -> DiffusionEngine; None: DiffusionEngine.from_preset(preset)


def recipe_names() -> list[str]:
    """The names `get_recipe` and `python -m minigen.train` accept, without importing any recipe's module."""
    return list(RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe called `name` (see `RECIPES`)."""
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}. Valid recipes: {', '.join(RECIPES)}.")
    return importlib.import_module(f"{__name__}.{RECIPES[name]}").recipe()
