"""tiny_sv3d: SV3D_p in miniature. One view of an object -> an orbit of novel views, at cameras it is told.

Data: `OrbitDataset` orbits of procedural objects, 8 views at 64x64 (7 novel views, then the input view, as
SV3D_p orders its 21), random elevations per view. The batch carries the SV3D_p conditioner's keys unchanged
(`cond_frames_without_noise`, `cond_frames`, `cond_aug`, `polars_rad`, `azimuths_rad`), so the official
conditioner layout (CLIP image token, VAE-encoded input view, cond_aug and camera embeddings) trains as it is.
The VAE is the frozen worlds VAE (`minigen.recipes.worlds`); the UNet is tiny_sv3d's VideoUNet, trained
from scratch with SVD's noise distribution (log sigma ~ N(1.0, 1.6)) and v-prediction.
"""

from dataclasses import replace
from functools import partial

from ..data import scenes
from . import Recipe, worlds

NUM_VIEWS = 8
TRAIN_SEED, HELD_OUT_SEED = 0, 1  # held-out objects come from another seed: never seen in training
TRAIN_EXAMPLES = 2000  # rendered and encoded once (worlds.LatentCache)
ZERO_KEYS = ("cond_frames", "cond_frames_without_noise")  # what the unconditional branch zeroes


def dataset(seed: int = TRAIN_SEED, length: int = 20_000) -> scenes.OrbitDataset:
    """The recipe's world: orbits round procedural objects; another seed gives objects never seen in training."""
    return scenes.OrbitDataset(num_views=NUM_VIEWS, size=worlds.SIZE, length=length, seed=seed)


def training_set() -> worlds.LatentCache:
    """The first TRAIN_EXAMPLES orbits, rendered and encoded once before training."""
    return worlds.LatentCache(dataset(), TRAIN_EXAMPLES)


def prepare(engine) -> None:
    """The frozen worlds VAE, and the network started from the trained tiny_svd (tiny_i2v), as SV3D was fine-tuned
    from SVD: only the vector embedding's first layer (cameras widen it) starts anew."""
    worlds.load_worlds_vae(engine)
    worlds.start_from_course_model(engine, "tiny_svd")


def make_batch(examples: list[dict], generator) -> dict:
    """SV3D_p's conditioner keys (with SV3D's cond_aug 1e-5) and the cached latents of a list of cached orbits."""
    return worlds.with_latents(scenes.orbit_batch(examples, cond_aug=1e-5, generator=generator), examples)


def sample(engine, generator):
    """Held-out orbits: the truth above the model's orbit, for the periodic sample grid."""
    from .quality import orbit_grid  # the pipelines import the recipes' data, not the other way round

    return orbit_grid(engine, dataset(HELD_OUT_SEED, length=2), generator)


def recipe() -> Recipe:
    """tiny_sv3d's training: what `python -m minigen.train tiny_sv3d` runs (after tiny_i2v, whose model it starts
    from)."""
    return worlds.world_recipe(
        name="tiny_sv3d",
        preset="tiny_sv3d",
        description="SV3D_p-style orbits: 8 views of procedural objects at 64x64; tiny_sv3d VideoUNet (2.0 M, "
                    "started from tiny_svd) on the frozen worlds VAE; 4500 steps x 8: about 47 min on a 2-core CPU "
                    "shared with other runs (plus 3 min to cache 2000 orbits' latents)",
        config=replace(worlds.TRAIN_CONFIG, steps=4500, batch_size=8),
        dataset=training_set,
        make_batch=make_batch,
        condition=partial(worlds.condition, dropout=0.1, zero_keys=ZERO_KEYS, repeat_to_frames=True),
        sample=sample,
        prepare=prepare,
    )
