"""tiny_i2v: SVD in miniature. One image -> a short clip whose amount of motion is a condition.

Data: `MotionVideoDataset` clips of one procedural object moving in front of a fixed camera, 8 frames at
64x64, each rendered at a random frame rate. As for SVD, `fps_id` and `motion_bucket_id` are labels of the
data, and `motion_bucket_id` is *measured* on the rendered frames (`scenes.measure_motion`), not chosen. The
batch carries the SVD conditioner's keys unchanged (`cond_frames_without_noise`, `cond_frames`, `cond_aug`,
`fps_id`, `motion_bucket_id`); the VAE is the frozen worlds VAE with tiny_svd's temporal decoder; the UNet
is tiny_svd's VideoUNet trained from scratch with SVD's noise distribution and v-prediction.
"""

from dataclasses import replace
from functools import partial

from ..data import scenes
from . import Recipe, worlds

NUM_FRAMES = 8
FPS_ID = 5  # fps 6, the middle of the dataset's frame rates: what the evaluation asks for
TRAIN_SEED, HELD_OUT_SEED = 0, 1
TRAIN_EXAMPLES = 2000  # rendered and encoded once (worlds.LatentCache)
ZERO_KEYS = ("cond_frames", "cond_frames_without_noise")


def dataset(seed: int = TRAIN_SEED, length: int = 20_000) -> scenes.MotionVideoDataset:
    """The recipe's world: moving-object clips; another seed gives objects never seen in training."""
    return scenes.MotionVideoDataset(num_frames=NUM_FRAMES, size=worlds.SIZE, length=length, seed=seed)


def training_set() -> worlds.LatentCache:
    """The first TRAIN_EXAMPLES clips, rendered and encoded once before training."""
    return worlds.LatentCache(dataset(), TRAIN_EXAMPLES)


def make_batch(examples: list[dict], generator) -> dict:
    """SVD's conditioner keys (with SVD's cond_aug 0.02) and the cached latents of a list of cached clips."""
    return worlds.with_latents(scenes.video_batch(examples, cond_aug=0.02, generator=generator), examples)


def sample(engine, generator):
    """Held-out first frames: the true clip above the model's clip at the clip's own motion bucket."""
    from .quality import clip_grid

    return clip_grid(engine, dataset(HELD_OUT_SEED, length=2), generator)


def recipe() -> Recipe:
    """tiny_i2v's training: what `python -m minigen.train tiny_i2v` runs."""
    return worlds.world_recipe(
        name="tiny_i2v",
        preset="tiny_svd",
        description="SVD-style image-to-video: 8-frame 64x64 clips of moving procedural objects with measured "
                    "motion_bucket_id and fps_id; tiny_svd VideoUNet (2.0 M) on the frozen worlds VAE; 1500 steps x 8: "
                    "30 min on a 2-core CPU shared with two other runs (plus 4 min to cache 2000 clips' latents)",
        config=replace(worlds.TRAIN_CONFIG, steps=1500, batch_size=8),
        dataset=training_set,
        make_batch=make_batch,
        condition=partial(worlds.condition, dropout=0.1, zero_keys=ZERO_KEYS, repeat_to_frames=True),
        sample=sample,
    )
