"""The trainer: any recipe's engine, on one CPU or GPU, or on many GPUs under torchrun.

    python -m minigen.train tiny_image --out runs/tiny_image          (or: minigen train tiny_image ...)
    torchrun --nproc_per_node=8 -m minigen.train tiny_i2v --out runs/tiny_i2v

One optimizer step: the global batch's examples (a seeded permutation per epoch) are split over processes and
micro-batches; each example is batched, conditioned (with condition dropout) and noised with its own random
generator; the network's weighted denoising loss is backpropagated; AdamW steps and an EMA follows the weights.
A run folder holds a checkpoint that resumes exactly, loss and sample pictures, and `ema.safetensors`, the EMA
weights under the official keys. docs/training.md tours it. The reference trains with PyTorch Lightning
(`main.py`, `DiffusionEngine.training_step` in sgm/models/diffusion.py); this file is that loop, written out.
"""

import argparse
import contextlib
import dataclasses
import fnmatch
import functools
import json
import math
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from einops import rearrange, repeat
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from . import io
from .nn.unet import set_gradient_checkpointing
from .pipelines.common import input_keys as conditioner_keys
from .pipelines.engine import DiffusionEngine
from .recipes import Recipe, TrainConfig, get_recipe, recipe_names

CHECKPOINT = "checkpoint.safetensors"  # everything a resume needs
EXPORT = "ema.safetensors"  # the EMA weights of the trained part, under the official keys
# batch entries besides the conditioner's that a batch may hold: the clean targets (pixels, or latents cached by
# the recipe for its `encode`) and the video network's inputs
TRAINER_KEYS = ("frames", "latents", "num_video_frames", "image_only_indicator")
MODEL_KEYS = ("num_video_frames", "image_only_indicator")  # batch entries the network receives as they are
RESUMABLE_FIELDS = ("steps", "log_every", "sample_every", "checkpoint_every")  # may change when resuming
NETWORK_PREFIX = "model."  # the NetworkWrapper: the only trainable part (DistributedDataParallel wraps it)
SIGMA_EDGES = torch.logspace(-3, 3, 13)  # 12 half-decade sigma buckets, 0.001 .. 1000; the end ones take the rest
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # autocast dtype
EXPORT_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


# ---------------------------------------------------------------- processes


@dataclasses.dataclass
class World:
    """This process's place in the run: rank `rank` of `size` processes, computing on `device`."""

    rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0  # the only process that writes files and shows progress


def join_world(device: str | None) -> World:
    """Rank 0 of 1 for a plain run; under torchrun, join the process group its environment describes.

    torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `init_process_group` reads them.
    Each process takes the GPU of its LOCAL_RANK (nccl), or computes on the CPU (gloo).
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(0, 1, device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), size, device)


# ---------------------------------------------------------------- data and randomness


def mixed_seed(*numbers: int) -> int:
    """One well-spread 64-bit seed from several numbers (numpy's SeedSequence hashes them)."""
    return int(np.random.SeedSequence(numbers).generate_state(1, dtype=np.uint64)[0])


@functools.lru_cache(maxsize=2)
def epoch_order(seed: int, epoch: int, size: int) -> list[int]:
    """The dataset's indices in the order epoch `epoch` visits them: a permutation seeded by (seed, epoch)."""
    return torch.randperm(size, generator=torch.Generator().manual_seed(mixed_seed(seed, epoch))).tolist()


def batch_indices(step: int, batch_size: int, size: int, seed: int) -> list[int]:
    """Dataset indices of step `step`'s global batch: epochs one after another, a batch may straddle two.

    A function of the step alone, so a resumed run sees exactly the batches a straight run sees.
    """
    positions = range(step * batch_size, (step + 1) * batch_size)
    orders = {epoch: epoch_order(seed, epoch, size) for epoch in {position // size for position in positions}}
    return [orders[position // size][position % size] for position in positions]


def micro_batches(batch_size: int, accumulate: int, world: World) -> list[list[int]]:
    """This process's positions in the global batch, as `accumulate` micro-batches.

    Process r takes positions r, r + size, r + 2 size, ... (as DistributedSampler does): the processes
    together cover the global batch once, whatever their number.
    """
    share = list(range(world.rank, batch_size, world.size))
    micro = len(share) // accumulate
    return [share[i * micro:(i + 1) * micro] for i in range(accumulate)]


def example_generator(seed: int, step: int, position: int) -> torch.Generator:
    """The generator of all that is random about one example of one step: its batch, dropout, sigma and noise.

    Seeded by (seed, step, position in the global batch), not by the process: an example draws the same
    numbers whichever process or micro-batch it lands in, so K processes with b examples each train like one
    process with K b examples, accumulation changes nothing, and a resumed run draws what a straight run draws.
    """
    return torch.Generator().manual_seed(mixed_seed(seed, step, position))


# ---------------------------------------------------------------- the engine's trainable part


def matches(name: str, pattern: str) -> bool:
    """`pattern` is a parameter-name prefix in which `*` stands for any text (dots included).

    "model.diffusion_model." selects the whole UNet; "model.diffusion_model.*.time_stack." every temporal layer.
    """
    return fnmatch.fnmatchcase(name, pattern + "*")


def select_trainable(engine: DiffusionEngine, trainable, frozen) -> dict[str, torch.nn.Parameter]:
    """Make the parameters matching a `trainable` pattern and no `frozen` one trainable; freeze the others."""
    names = [name for name, _ in engine.named_parameters()]
    for pattern in (*trainable, *frozen):
        if not any(matches(name, pattern) for name in names):
            raise ValueError(f"The pattern {pattern!r} (trainable / frozen) matches no parameter of the engine; its "
                             f"names look like {names[0]!r} ... {names[-1]!r}.")
    engine.requires_grad_(False)
    selected = {name: parameter for name, parameter in engine.named_parameters()
                if any(matches(name, p) for p in trainable) and not any(matches(name, p) for p in frozen)}
    if not selected:
        raise ValueError(f"Nothing to train: every parameter matching {list(trainable)} is frozen by {list(frozen)}.")
    outside = sorted({name.split(".")[0] for name in selected if not name.startswith(NETWORK_PREFIX)})
    if outside:
        raise ValueError(f"trainable selects parameters of {outside}; minigen.train trains the network "
                         f"({NETWORK_PREFIX}...) only: the conditioner and first stage run frozen, without gradients.")
    for parameter in selected.values():
        parameter.requires_grad_(True)
    return selected


def input_keys(engine: DiffusionEngine) -> list[str]:
    """The batch entries the conditioner reads (none without a conditioner)."""
    return conditioner_keys(engine.conditioner) if engine.conditioner is not None else []


def set_condition_dropout(engine: DiffusionEngine, rates: dict[str, float]) -> None:
    """Drop each conditioner entry's embedding with the rate given for its input key (others: never)."""
    unknown = sorted(set(rates) - set(input_keys(engine)))
    if unknown:
        raise ValueError(f"condition_dropout names {unknown}, which the conditioner does not read; "
                         f"it reads {input_keys(engine)}.")
    for key, rate in rates.items():
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"condition_dropout[{key!r}] = {rate} is not a probability in [0, 1].")
    for entry in engine.conditioner.entries if engine.conditioner is not None else []:
        entry.ucg_rate = max([rates[key] for key in entry.keys if key in rates], default=0.0)


# ---------------------------------------------------------------- one example's batch and conditioning


def check_batch(batch: dict, engine: DiffusionEngine, recipe: Recipe, loss) -> None:
    """Clear errors for a make_batch that gives the conditioner too little, or entries nobody reads."""
    if "frames" not in batch:
        raise ValueError(f"make_batch must give 'frames', the clean targets (b t) 3 H W; it gave {sorted(batch)}.")
    if recipe.condition is not None:  # the recipe's own condition() reads the batch: it may read any entry
        return
    reads = input_keys(engine)
    missing = [key for key in reads if key not in batch]
    unread = sorted(set(batch) - set(reads) - set(TRAINER_KEYS) - loss.batch2model_keys)
    if missing or unread:
        raise ValueError(f"make_batch gave {sorted(batch)}: missing {missing}, unread {unread}. The conditioner "
                         f"reads {reads}; the trainer knows {list(TRAINER_KEYS)} and the network (the loss's "
                         f"batch2model_keys) {sorted(loss.batch2model_keys)}.")


def conditioning(engine: DiffusionEngine, recipe: Recipe, batch: dict, generator: torch.Generator) -> dict:
    """The recipe's `condition`, or the conditioner's output (with its dropout) with each video's crossattn and
    concat repeated to its frames, as the pipelines do (`video_common.conditionings`)."""
    if recipe.condition is not None:
        return recipe.condition(engine, batch, generator)
    if engine.conditioner is None:
        return {}
    cond = engine.conditioner(batch, generator=generator)
    frames, num_frames = batch["frames"].shape[0], batch.get("num_video_frames", 1)
    for key in ("crossattn", "concat"):
        if key in cond and num_frames > 1 and cond[key].shape[0] * num_frames == frames:
            cond[key] = repeat(cond[key], "b ... -> (b t) ...", t=num_frames)
    return cond


def collate(parts: list[dict]) -> dict:
    """One dict from per-example dicts: tensors concatenated on their first axis (`b ...` or `(b t) ...`),
    lists joined, other values (num_video_frames) the same in every part."""
    merged = {}
    for key, value in parts[0].items():
        values = [part[key] for part in parts]
        if isinstance(value, torch.Tensor):
            merged[key] = torch.cat(values)
        elif isinstance(value, list):
            merged[key] = [item for items in values for item in items]
        elif any(other != value for other in values):
            raise ValueError(f"Batch entry {key!r} differs between examples ({values}); per-example values must be "
                             "tensors (concatenated on their first axis) or lists.")
        else:
            merged[key] = value
    return merged


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch with its tensors moved to `device`; other entries (prompts, ids in lists) stay as they are."""
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


# ---------------------------------------------------------------- EMA, loss per sigma, pictures


class EMA:
    """Exponential moving average of the trainable weights: what the sample grids show and the export holds.

    The decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates, as the reference's LitEma does,
    so that a short run's average does not remember the random initial weights.
    """

    def __init__(self, parameters: dict[str, torch.Tensor], decay: float):
        self.decay = decay
        self.updates = 0
        self.weights = {name: parameter.detach().float().clone() for name, parameter in parameters.items()}

    @torch.no_grad()
    def update(self, parameters: dict[str, torch.Tensor]) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, parameter in parameters.items():
            self.weights[name].lerp_(parameter.detach().float(), 1.0 - decay)


@contextlib.contextmanager
def ema_weights_in(parameters: dict[str, torch.Tensor], ema: EMA):
    """Put the EMA weights into the parameters for the duration of the block, then the trained ones back."""
    trained = {name: parameter.detach().clone() for name, parameter in parameters.items()}
    with torch.no_grad():
        for name, parameter in parameters.items():
            parameter.copy_(ema.weights[name])
    try:
        yield
    finally:
        with torch.no_grad():
            for name, parameter in parameters.items():
                parameter.copy_(trained[name])


class SigmaBuckets:
    """Mean training loss per noise level since the start: which sigmas the model finds hard."""

    def __init__(self):
        self.total = torch.zeros(len(SIGMA_EDGES) - 1, dtype=torch.float64)
        self.count = torch.zeros(len(SIGMA_EDGES) - 1, dtype=torch.float64)

    def add(self, sigmas: torch.Tensor, losses: torch.Tensor) -> None:
        """Count each sample's loss in the bucket of its sigma (`sigmas` and `losses` both `b`)."""
        bucket = torch.bucketize(sigmas.detach().float().cpu(), SIGMA_EDGES[1:-1])  # b, in 0 .. 11
        self.total.index_add_(0, bucket, losses.detach().double().cpu())
        self.count.index_add_(0, bucket, torch.ones_like(bucket, dtype=torch.float64))

    def means(self) -> list[float | None]:
        """The mean loss of each bucket, None for a bucket no sample has reached yet."""
        return [total / count if count else None
                for total, count in zip(self.total.tolist(), self.count.tolist(), strict=True)]

    def as_json(self) -> dict:
        """Edges, mean losses and counts, as written to the run folder's sigma_buckets.json."""
        return {"sigma_edges": SIGMA_EDGES.tolist(), "mean_loss": self.means(), "count": self.count.long().tolist()}


def write_loss_plot(path: Path, losses: list[float], buckets: SigmaBuckets) -> None:
    """The loss of every step (and its running mean), and the mean loss per sigma bucket."""
    from matplotlib.figure import Figure  # matplotlib loads in half a second: only when a picture is drawn

    figure = Figure(figsize=(10, 3.5), layout="constrained")
    curve, per_sigma = figure.subplots(1, 2)
    if losses:
        steps = np.arange(1, len(losses) + 1)
        window = max(1, len(losses) // 20)
        running = np.convolve(losses, np.ones(window) / window, mode="valid")
        curve.plot(steps, losses, alpha=0.3, label="step")
        curve.plot(steps[window - 1:], running, label=f"mean of {window} steps")
        curve.legend()
    curve.set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    centres = (SIGMA_EDGES[:-1] * SIGMA_EDGES[1:]).sqrt().numpy()
    means = np.array([np.nan if mean is None else mean for mean in buckets.means()])
    per_sigma.plot(centres, means, "o-")
    per_sigma.set(xscale="log", yscale="log", xlabel="sigma (bucket centre)", ylabel="mean loss",
                  title="loss per noise level, whole run")
    figure.savefig(path, dpi=80)


def write_sample_grid(path: Path, images: torch.Tensor, min_width: int = 256) -> None:
    """Images as one PNG: `rows columns 3 h w` as laid out, or `n 3 h w` ceil(sqrt(n)) to a row (black where the
    grid has no image), in [-1, 1]. Small grids are enlarged (whole pixels) to at least `min_width` pixels."""
    if images.ndim == 4:
        columns = math.ceil(math.sqrt(len(images)))
        padding = images.new_full((-len(images) % columns, *images.shape[1:]), -1.0)
        images = rearrange(torch.cat([images, padding]), "(rows columns) ... -> rows columns ...", columns=columns)
    grid = rearrange(images.float().clamp(-1, 1), "rows columns c h w -> (rows h) (columns w) c")
    zoom = max(1, min_width // grid.shape[1])
    grid = grid.repeat_interleave(zoom, dim=0).repeat_interleave(zoom, dim=1)
    io.write_image(io.to_uint8(grid.cpu()), path, overwrite=True)


def write_atomically(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """safetensors file written to a temporary name, then renamed: a crash never leaves half a file."""
    temporary = path.with_name(path.name + ".tmp")
    save_file({key: value.detach().cpu().contiguous() for key, value in tensors.items()}, temporary, metadata)
    os.replace(temporary, path)


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate of optimizer step `step` (0-based): a linear warm-up, a constant stretch, and a linear decay
    to 0 over the last `decay_steps` steps (warmup-stable-decay). The decay is where the loss drops that a constant
    rate's noise hides; the constant stretch lets a finished run be resumed with more steps and a new decay."""
    warmup = (step + 1) / max(1, config.warmup_steps)
    decay = (config.steps - step) / config.decay_steps if config.decay_steps else 1.0
    return config.learning_rate * min(1.0, warmup, decay)


# ---------------------------------------------------------------- run folders


def config_json(config: TrainConfig) -> dict:
    """The config as the checkpoint's metadata stores it, so that a resumed run can compare like with like."""
    return json.loads(json.dumps(dataclasses.asdict(config)))  # tuples become lists, as when read back


def read_run(path: Path) -> tuple[str, dict, int]:
    """(recipe name, config as JSON, step) of the checkpoint at `path`."""
    with safe_open(path, "pt") as checkpoint:
        metadata = checkpoint.metadata()
    return metadata["recipe"], json.loads(metadata["config"]), int(metadata["step"])


def config_differences(saved: dict, config: TrainConfig) -> list[str]:
    """'field: saved -> requested' for every field that changes what a run computes."""
    requested, defaults = config_json(config), config_json(TrainConfig())
    saved = defaults | saved  # a field newer than the checkpoint: the run had its default behaviour
    return [f"{field}: {saved[field]!r} -> {value!r}" for field, value in requested.items()
            if field not in RESUMABLE_FIELDS and saved[field] != value]


def check_out(out: Path, recipe: Recipe, config: TrainConfig, resume: bool) -> None:
    """Refuse to overwrite anything: `out` is new (or empty), or, with `resume`, holds this very run."""
    if not (out / CHECKPOINT).exists():
        if resume:
            raise FileNotFoundError(f"--resume: {out} holds no {CHECKPOINT} to continue from.")
        if out.exists() and any(out.iterdir()):
            raise FileExistsError(f"{out} holds files but no {CHECKPOINT}: it is not a minigen.train run (or one that "
                                  "stopped before its first checkpoint). Choose another --out: nothing is overwritten.")
        return
    saved_recipe, saved_config, step = read_run(out / CHECKPOINT)
    differences = config_differences(saved_config, config)
    if saved_recipe != recipe.name:
        raise FileExistsError(f"{out} holds a run of recipe {saved_recipe!r}, not {recipe.name!r}; "
                              "choose another --out.")
    if not resume:
        if differences:
            raise FileExistsError(f"{out} holds another {recipe.name} run (its config differs: "
                                  f"{'; '.join(differences)}); choose another --out.")
        raise FileExistsError(f"{out} already holds this run (at step {step}); pass --resume to continue it, "
                              "or choose another --out.")
    if differences:
        raise ValueError(f"Cannot resume {out}: the requested config differs from the run's in "
                         f"{'; '.join(differences)}. Only {', '.join(RESUMABLE_FIELDS)} may change.")


# ---------------------------------------------------------------- the trainer


class Trainer:
    """The state of one run (engine, optimizer, EMA, step, losses) and the step that advances it."""

    def __init__(self, recipe: Recipe, config: TrainConfig, out: Path, world: World, progress: bool = True):
        self.recipe, self.config, self.out, self.world, self.progress = recipe, config, out, world, progress
        torch.manual_seed(config.seed)  # the same initial weights in every process
        if recipe.build_engine is not None:
            engine = recipe.build_engine()
        else:  # random weights, never the committed trained ones: a recipe trains from scratch (or loads in prepare)
            engine = DiffusionEngine.from_preset(recipe.preset, weights="random")
        if recipe.prepare is not None:
            recipe.prepare(engine)
        self.engine = engine.to(world.device).eval()
        self.parameters = select_trainable(self.engine, config.trainable, config.frozen)
        set_gradient_checkpointing(self.engine.network, config.gradient_checkpointing)
        set_condition_dropout(self.engine, config.condition_dropout)
        self.engine.model.train()
        # DistributedDataParallel averages the gradients over processes in backward (and, on creation, copies
        # process 0's weights to all: every process has checked the run folder before any of them writes)
        self.network = self.engine.model if world.size == 1 else DistributedDataParallel(
            self.engine.model, device_ids=[world.device] if world.device.type == "cuda" else None)
        self.loss = recipe.loss()
        self.dataset = recipe.dataset()
        self.optimizer = torch.optim.AdamW(self.parameters.values(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.scaler = torch.amp.GradScaler(world.device.type, enabled=config.precision == "fp16")
        self.ema = EMA(self.parameters, config.ema_decay)
        self.step = 0
        self.losses: list[float] = []  # process 0's share of each step's batch
        self.buckets = SigmaBuckets()

    # -- one step

    def autocast(self):
        """The autocast context of `precision` (bf16 / fp16) on the run's device, or no context for fp32."""
        dtype = PRECISIONS[self.config.precision]
        return contextlib.nullcontext() if dtype is None else torch.autocast(self.world.device.type, dtype=dtype)

    def micro_batch_loss(self, positions: list[int], indices: list[int]) -> torch.Tensor:
        """Mean per-sample loss of the examples at `positions` of the global batch (dataset `indices`)."""
        generators = [example_generator(self.config.seed, self.step, position) for position in positions]
        batches, conds = [], []
        with torch.no_grad():  # batches, conditionings and latents: everything before the network is frozen
            for index, generator in zip(indices, generators, strict=True):
                batch = to_device(self.recipe.make_batch([self.dataset[index]], generator), self.world.device)
                check_batch(batch, self.engine, self.recipe, self.loss)
                batches.append(batch)
                conds.append(conditioning(self.engine, self.recipe, batch, generator))
            batch, cond = collate(batches), collate(conds)
            x = self.recipe.encode(self.engine, batch).float()  # (b t) c h w
        if x.shape[0] % len(batches):
            raise ValueError(f"encode gave {x.shape[0]} rows for {len(batches)} examples: every example must have "
                             "the same number of frames.")
        draws = [self.loss.draw_noise(part, generator, batch.get("num_video_frames"))  # each example's frames
                 for part, generator in zip(x.chunk(len(batches)), generators, strict=True)]
        sigmas, noise = (torch.cat(parts) for parts in zip(*draws, strict=True))  # (b t), (b t) c h w
        inputs = {**{key: batch[key] for key in MODEL_KEYS if key in batch}, **self.loss.model_inputs(batch)}
        losses = self.loss.denoising_loss(self.network, self.engine.denoiser, cond, x, sigmas, noise, inputs)
        self.buckets.add(sigmas, losses)
        return losses.mean()

    def train_step(self) -> float:
        """One optimizer step on the global batch; returns this process's mean loss."""
        config = self.config
        indices = batch_indices(self.step, config.batch_size, len(self.dataset), config.seed)
        parts = micro_batches(config.batch_size, config.accumulate, self.world)
        total = 0.0
        for number, positions in enumerate(parts):
            # gradients are averaged over processes once, after the last micro-batch
            last = number == len(parts) - 1
            with contextlib.nullcontext() if last or self.world.size == 1 else self.network.no_sync():
                with self.autocast():
                    loss = self.micro_batch_loss(positions, [indices[p] for p in positions]) / len(parts)
                self.scaler.scale(loss).backward()
            total += loss.item()
        self.scaler.unscale_(self.optimizer)  # fp16: true gradients before clipping
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters.values(), config.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(config, self.step)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.parameters)
        self.step += 1
        return total

    def run(self) -> None:
        """Steps until `config.steps`, writing checkpoints, pictures and the export on the way (process 0)."""
        config = self.config
        bar = tqdm(total=config.steps, initial=self.step, desc=self.recipe.name, dynamic_ncols=True,
                   disable=not (self.progress and self.world.is_main))
        while self.step < config.steps:
            self.losses.append(self.train_step())
            bar.update()
            bar.set_postfix(loss=f"{self.losses[-1]:.4f}")
            if config.log_every and self.step % config.log_every == 0 and not bar.disable:
                bar.write(f"step {self.step}: mean loss {np.mean(self.losses[-config.log_every:]):.4f}")
            if config.checkpoint_every and self.step % config.checkpoint_every == 0 and self.step < config.steps:
                self.save()
            if config.sample_every and self.step % config.sample_every == 0 and self.step < config.steps:
                self.write_pictures()
        bar.close()
        self.save()
        self.write_pictures()

    # -- files (process 0 only)

    def save(self) -> None:
        """Write the checkpoint: weights, EMA, optimizer, grad scaler, step, random states, losses and config."""
        if not self.world.is_main:
            return
        tensors = {f"weights.{name}": p for name, p in self.parameters.items()}
        tensors |= {f"ema.{name}": weight for name, weight in self.ema.weights.items()}
        state = self.optimizer.state_dict()["state"]  # parameter number -> {"step", "exp_avg", "exp_avg_sq"}
        for number, name in enumerate(self.parameters):
            tensors |= {f"optimizer.{name}.{key}": torch.as_tensor(value)
                        for key, value in state.get(number, {}).items()}
        tensors |= {f"scaler.{key}": torch.tensor(value) for key, value in self.scaler.state_dict().items()}
        tensors |= {"rng.torch": torch.get_rng_state(), "losses": torch.tensor(self.losses, dtype=torch.float64),
                    "sigma_buckets.total": self.buckets.total, "sigma_buckets.count": self.buckets.count}
        if self.world.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.world.device)
        self.out.mkdir(parents=True, exist_ok=True)
        metadata = {"recipe": self.recipe.name, "config": json.dumps(config_json(self.config)), "step": str(self.step)}
        write_atomically(tensors, self.out / CHECKPOINT, metadata)

    def load(self) -> None:
        """Continue from the run folder's checkpoint exactly where it stopped (every process reads it)."""
        tensors = load_file(self.out / CHECKPOINT)
        with torch.no_grad():
            for name, parameter in self.parameters.items():
                parameter.copy_(tensors[f"weights.{name}"])
                self.ema.weights[name].copy_(tensors[f"ema.{name}"])
        state = self.optimizer.state_dict()
        for number, name in enumerate(self.parameters):
            prefix = f"optimizer.{name}."
            entries = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
            if entries:
                state["state"][number] = entries
        self.optimizer.load_state_dict(state)
        self.scaler.load_state_dict({key[len("scaler."):]: value.item() for key, value in tensors.items()
                                     if key.startswith("scaler.")})
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and self.world.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.world.device)
        self.step = self.ema.updates = read_run(self.out / CHECKPOINT)[2]
        self.losses = tensors["losses"].tolist()
        self.buckets.total, self.buckets.count = tensors["sigma_buckets.total"], tensors["sigma_buckets.count"]

    def write_pictures(self) -> None:
        """The loss plot, the loss-per-sigma record and a sample grid drawn with the EMA weights."""
        if not self.world.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        write_loss_plot(self.out / "loss.png", self.losses, self.buckets)
        (self.out / "sigma_buckets.json").write_text(json.dumps(self.buckets.as_json(), indent=1) + "\n")
        if self.recipe.sample is None:
            return
        generator = torch.Generator().manual_seed(self.config.seed)  # the same noise at every step: comparable
        devices = [self.world.device] if self.world.device.type == "cuda" else []
        # fork_rng: sampling leaves the global random state as it was, so it cannot change the training
        with ema_weights_in(self.parameters, self.ema), torch.random.fork_rng(devices), torch.no_grad(), \
                self.autocast():
            self.engine.model.eval()
            images = self.recipe.sample(self.engine, generator)
            self.engine.model.train()
        write_sample_grid(self.out / f"samples_{self.step:06d}.png", images)

    def export(self, command: str, dtype: torch.dtype = torch.float16) -> Path:
        """`ema.safetensors`: the EMA weights of the trained part under the official keys, in `dtype`."""
        path = self.out / EXPORT
        if self.world.is_main:
            weights = {name: weight.to(dtype) for name, weight in self.ema.weights.items()}
            metadata = {"recipe": self.recipe.name, "steps": str(self.step), "command": command,
                        "processes": str(self.world.size), "config": json.dumps(config_json(self.config))}
            write_atomically(weights, path, metadata)
        return path


def check_config(config: TrainConfig, world: World) -> None:
    """Clear errors for settings that cannot work, before any weights are built."""
    if config.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {config.precision!r}.")
    if config.precision == "fp16" and world.device.type != "cuda":
        raise ValueError("precision 'fp16' needs a CUDA device (its gradient scaler works on GPUs only); "
                         "on the CPU use 'bf16' or 'fp32'.")
    if config.precision == "bf16" and world.device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("This GPU does not support bfloat16; use precision 'fp16' or 'fp32'.")
    if config.accumulate < 1 or config.steps < 0:
        raise ValueError(f"Need accumulate >= 1 and steps >= 0; got {config.accumulate} and {config.steps}.")
    if not 0 <= config.decay_steps <= config.steps:
        raise ValueError(f"decay_steps must lie in 0 .. steps ({config.steps}): the decay is the run's last part; "
                         f"got {config.decay_steps}.")
    per_micro_batch = world.size * config.accumulate
    if config.batch_size % per_micro_batch or config.batch_size < per_micro_batch:
        raise ValueError(f"batch_size {config.batch_size} must be a multiple of accumulate ({config.accumulate}) x "
                         f"processes ({world.size}) = {per_micro_batch}: every micro-batch has "
                         "batch_size / (accumulate x processes) examples.")


def train(recipe: Recipe | str, out, config: TrainConfig | None = None, resume: bool = False,
          device: str | None = None, progress: bool = True, command: str = "",
          export_dtype: torch.dtype = torch.float16) -> Trainer:
    """Train `recipe` (a Recipe or its name) with `config` (default: the recipe's) into the run folder `out`.

    `resume` continues the run `out` holds. Under torchrun every process calls this; process 0 writes.
    Returns the Trainer: `engine` (trained weights), `ema.weights`, `optimizer`, `losses`.
    """
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    config = config or recipe.config
    world = join_world(device)
    try:
        check_config(config, world)
        check_out(Path(out), recipe, config, resume)
        trainer = Trainer(recipe, config, Path(out), world, progress)
        if resume:
            trainer.load()
        trainer.run()
        trainer.export(command, export_dtype)
        return trainer
    finally:
        if world.size > 1:
            dist.destroy_process_group()


# ---------------------------------------------------------------- command line


def parse_dropout(text: str) -> tuple[str, float]:
    """`--condition-dropout label=0.1` -> ("label", 0.1); argparse shows the error of a value without "="."""
    key, separator, rate = text.partition("=")
    if not separator:
        raise argparse.ArgumentTypeError(f"expected KEY=RATE (e.g. label=0.1), got {text!r}")
    return key, float(rate)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The trainer's options; `python -m minigen.train` and `minigen train` share them."""
    parser.add_argument("recipe", nargs="?", help="the recipe to train (see --list)")
    parser.add_argument("--list", action="store_true", help="list the recipes and exit")
    parser.add_argument("--out", type=Path, help="the run folder (default: runs/RECIPE)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--export-dtype", choices=sorted(EXPORT_DTYPES), default="float16",
                        help="precision of ema.safetensors")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    settings = parser.add_argument_group("training settings (default: the recipe's TrainConfig)")
    settings.add_argument("--steps", type=int, help="optimizer steps")
    settings.add_argument("--batch-size", type=int, help="examples per step, over all processes and micro-batches")
    settings.add_argument("--accumulate", type=int, help="micro-batches per step (gradient accumulation)")
    settings.add_argument("--learning-rate", type=float, help="AdamW's learning rate after warm-up")
    settings.add_argument("--weight-decay", type=float, help="AdamW's decoupled weight decay")
    settings.add_argument("--warmup-steps", type=int, help="steps of linear learning-rate warm-up")
    settings.add_argument("--decay-steps", type=int, help="last steps, the learning rate falling linearly to 0")
    settings.add_argument("--ema-decay", type=float, help="decay of the EMA of the weights")
    settings.add_argument("--grad-clip", type=float, help="max global gradient norm (0: no clipping)")
    settings.add_argument("--precision", choices=list(PRECISIONS), help="fp32, bf16 autocast, fp16 autocast (GPU)")
    settings.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction,
                          help="recompute activations in backward to save memory")
    settings.add_argument("--condition-dropout", type=parse_dropout, nargs="+", metavar="KEY=RATE",
                          help="drop the conditioner input KEY's embedding with probability RATE")
    settings.add_argument("--trainable", nargs="+", metavar="PREFIX", help="parameter-name prefixes that train "
                          "(* matches anything: model.diffusion_model.*.time_stack.)")
    settings.add_argument("--frozen", nargs="+", metavar="PREFIX", help="prefixes frozen even inside --trainable")
    settings.add_argument("--seed", type=int)
    settings.add_argument("--log-every", type=int, help="steps between loss lines")
    settings.add_argument("--sample-every", type=int, help="steps between sample grids (0: only at the end)")
    settings.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (0: only at the end)")


def config_from(args: argparse.Namespace, config: TrainConfig) -> TrainConfig:
    """The recipe's config with the options given on the command line."""
    changes = {field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)
               if getattr(args, field.name, None) is not None}
    if "condition_dropout" in changes:
        changes["condition_dropout"] = {**config.condition_dropout, **dict(changes["condition_dropout"])}
    for field in ("trainable", "frozen"):
        if field in changes:
            changes[field] = tuple(changes[field])
    if changes.get("grad_clip") == 0:
        changes["grad_clip"] = None
    return dataclasses.replace(config, **changes)


def list_recipes() -> str:
    """One line per recipe, name and description, for `--list`; a recipe whose imports fail says why instead of
    hiding the others."""
    lines = []
    for name in recipe_names():
        try:
            description = get_recipe(name).description
        except ImportError as error:
            description = f"(cannot be loaded: {error})"
        lines.append(f"{name:<12} {description}")
    return "\n".join(lines)


def run_command(args: argparse.Namespace, command: str) -> int:
    """Carry out parsed options (`command`: the command line, recorded in the export)."""
    if args.list:
        print(list_recipes())
        return 0
    if args.recipe is None:
        raise ValueError(f"Name a recipe to train: {', '.join(recipe_names())} (--list describes them).")
    recipe = get_recipe(args.recipe)
    out = args.out or Path("runs") / recipe.name
    trainer = train(recipe, out, config_from(args, recipe.config), resume=args.resume, device=args.device,
                    progress=not args.quiet, command=command, export_dtype=EXPORT_DTYPES[args.export_dtype])
    if trainer.world.is_main:
        print(f"trained {trainer.step} steps; wrote {out / EXPORT}")
    return 0


def launcher() -> list[str]:
    """How this process was started, as the export records it: `python`, or torchrun and its process counts (from
    the environment torchrun sets), so that the recorded command starts the run again as it was."""
    processes, per_node = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if processes == 1:
        return ["python"]
    nodes = [f"--nnodes={processes // per_node}"] if processes > per_node else []
    return ["torchrun", *nodes, f"--nproc_per_node={per_node}"]


def main(argv=None) -> int:
    """`python -m minigen.train`: run the command, and turn a user error into one `error:` line and exit status 2."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m minigen.train", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    try:
        return run_command(parser.parse_args(argv), shlex.join([*launcher(), "-m", "minigen.train", *argv]))
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"minigen.train: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
