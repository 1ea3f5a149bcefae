"""tiny_sv4d2: SV4D 2.0 in miniature. A video of an object -> videos of it from novel views, window by window.

Data: `MovingObjectDataset` objects that move, turn and squash over 5 frames, seen by the input camera and 4 novel
cameras at 64x64, framed as SV4D 2.0's script frames its input (the whole motion fills about 90% of the frame). A
training example is one SV4D 2.0 pass: 3 consecutive times x 4 novel views, ordered (t v), conditioned on the input
video at those times (`cond_motion`, `cond_frames`, one CLIP token per time), on the 4 cameras relative to the
input's, and on the novel views at the window's first time (`cond_view`). A window starting at time 0 has no views
yet, exactly as the pipeline's first window: its `cond_view` is zeroed and `image_only_indicator` is 0. The
conditioner is SV4D 2.0's layout unchanged, given the cached latents of the window's 19 conditioning frames
(`worlds.known_latents`) instead of encoding them at every step; the VAE is the frozen worlds VAE; the UNet is
tiny_sv4d2's SpatialUNetModelWithTime (view, time and motion attention, 3D attention), started as SV4D was (from
SV3D and SVD): its per-image layers and view attention from the trained tiny_sv3d, its motion attention from the
trained tiny_svd (`prepare`). `torchrun --nproc_per_node=2 -m minigen.train tiny_sv4d2` (after tiny_svd and
tiny_sv3d): two single-thread processes step 16 windows about 1.15 times as fast as one process with two threads,
whose threads share each small layer (benchmarks/processes.py); `python -m minigen.train tiny_sv4d2` trains the same
model more slowly.
"""

from dataclasses import replace

import torch

from ..camera import Trajectory, sv4d2_camera_inputs
from ..data import scenes
from . import Recipe, worlds

NUM_TIMES, NUM_VIEWS = 3, 4  # one pass of tiny_sv4d2
VIDEO_FRAMES = 5  # frames per example video: windows start at 0, 1 or 2
TRAIN_SEED, HELD_OUT_SEED = 0, 1
TRAIN_EXAMPLES = 1500  # rendered and encoded once (worlds.LatentCache)
ZERO_KEYS = ("cond_frames", "cond_frames_without_noise", "cond_view", "cond_motion")


def dataset(seed: int = TRAIN_SEED, length: int = 20_000) -> scenes.MovingObjectDataset:
    """The recipe's world: videos of moving objects seen by five cameras, the input camera first; another seed gives
    objects never seen in training."""
    return scenes.MovingObjectDataset(num_frames=VIDEO_FRAMES, num_views=NUM_VIEWS + 1, size=worlds.SIZE,
                                      length=length, seed=seed)


def training_set() -> worlds.LatentCache:
    """The first TRAIN_EXAMPLES videos, rendered and encoded once before training."""
    return worlds.LatentCache(dataset(), TRAIN_EXAMPLES)


def novel_view_cameras(example: dict) -> tuple[list[float], list[float]]:
    """Elevations and azimuths (degrees, the input camera first) as the SV4D 2.0 pipeline takes them."""
    return example["elevations_deg"].tolist(), example["azimuths_deg"].tolist()


def window(example: dict, start: int) -> dict:
    """One pass's conditioner inputs and targets, for one example and the window starting at `start`."""
    frames = example["frames"][start:start + NUM_TIMES]  # t v 3 H W, view 0 the input video
    latents = example["latents"][start:start + NUM_TIMES]  # t v 4 h w, cached
    input_video, novel = frames[:, 0], frames[:, 1:]
    cameras = sv4d2_camera_inputs(Trajectory(*novel_view_cameras(example)), num_times=NUM_TIMES)
    with_views = start > 0
    return {
        "frames": novel.reshape(-1, *novel.shape[-3:]),  # (t v) 3 H W targets
        "latents": latents[:, 1:].flatten(0, 1),  # (t v) 4 h w
        "cond_frames_without_noise": input_video,  # t 3 H W: one CLIP token per time
        "cond_frames": input_video.repeat_interleave(NUM_VIEWS, dim=0),  # (t v): each view its time's frame
        "polar_rad": cameras["polar_rad"].float(), "azimuth_rad": cameras["azimuth_rad"].float(),  # (t v)
        "cond_view": novel[0] if with_views else torch.zeros_like(novel[0]),  # v 3 H W at the first time
        "cond_motion": input_video,  # t 3 H W
        "image_only_indicator": torch.full((1, NUM_TIMES * NUM_VIEWS), float(with_views)),
        # the conditioning frames' latents, cached (worlds.known_latents); a window without views has its
        # cond_view zeroed in `condition`, so the latents standing for its blank frames do not matter
        "cond_frames_latents": latents[:, 0].repeat_interleave(NUM_VIEWS, dim=0),
        "cond_view_latents": latents[0, 1:] if with_views else torch.zeros_like(latents[0, 1:]),
        "cond_motion_latents": latents[:, 0],
    }


def make_batch(examples: list[dict], generator) -> dict:
    """A window per example, at a random start; the examples stacked along the batch dimension."""
    starts = torch.randint(0, VIDEO_FRAMES - NUM_TIMES + 1, (len(examples),), generator=generator).tolist()
    windows = [window(example, start) for example, start in zip(examples, starts, strict=True)]
    batch = {key: torch.cat([w[key] for w in windows]) for key in windows[0]}
    return batch | {"num_video_frames": NUM_TIMES * NUM_VIEWS}


def condition(engine, batch: dict, generator) -> dict:
    """SV4D 2.0's conditioning with whole samples dropped for guidance; a window without views gets its
    cond_view zeroed, as the pipeline's first window."""
    c = worlds.condition(engine, batch, generator, dropout=0.1, zero_keys=ZERO_KEYS, repeat_to_frames=False)
    has_views = batch["image_only_indicator"][:, 0].repeat_interleave(NUM_VIEWS)  # (b v)
    c["cond_view"] = c["cond_view"] * has_views.to(c["cond_view"])[:, None, None, None]
    return c


def prepare(engine) -> list[str]:
    """The frozen worlds VAE, and the network started as SV4D was: the per-image layers and the view attention from
    the trained tiny_sv3d (its attention across the orbit's frames becomes attention across views), the motion
    attention from the trained tiny_svd (attention across a video's frames); returns the names that start anew (the
    vector embedding, the motion layers' cross-attention to a wider context, the 3D time embedding's first layer)."""
    worlds.load_worlds_vae(engine)
    not_from_svd = worlds.start_from_course_model(engine, "tiny_svd", renames=SVD_TO_SV4D2)
    not_from_sv3d = worlds.start_from_course_model(engine, "tiny_sv3d", renames=SV3D_TO_SV4D2)  # after: it wins
    return sorted(set(not_from_svd) & set(not_from_sv3d))


SV3D_TO_SV4D2 = {".time_stack.": ".time_mix_blocks.", ".time_pos_embed.": ".time_mix_time_embed."}
SVD_TO_SV4D2 = {".time_stack.": ".motion_blocks.", ".time_pos_embed.": ".time_mix_motion_embed.",
                ".time_mixer.": ".time_mixer_motion."}


def sample(engine, generator):
    """A held-out object: the true novel-view videos above the model's, for the periodic sample grid."""
    from .quality import multiview_grid

    return multiview_grid(engine, dataset(HELD_OUT_SEED, length=1), generator)


def recipe() -> Recipe:
    """tiny_sv4d2's training: what `torchrun --nproc_per_node=2 -m minigen.train tiny_sv4d2` runs (after tiny_svd and
    tiny_sv3d)."""
    return worlds.world_recipe(
        name="tiny_sv4d2",
        preset="tiny_sv4d2",
        description="SV4D 2.0-style passes: 3 times x 4 novel views of moving procedural objects at 64x64; "
                    "tiny_sv4d2 SpatialUNetModelWithTime (2.9 M) started from tiny_sv3d and tiny_svd, on the frozen "
                    "worlds VAE; 3600 steps x 16 in fp32 (faster than bf16 autocast on this CPU), the learning rate "
                    "6e-4 decaying to 0 over the last 1200: 42 min on 2 CPU cores as two single-thread processes "
                    "(torchrun --nproc_per_node=2, 0.65 s a step; 2.7 min of it caching 1500 videos' latents, half "
                    "in each), sample grids included",
        config=replace(worlds.TRAIN_CONFIG, steps=3600, decay_steps=1200, batch_size=16, learning_rate=6e-4,
                       precision="fp32"),
        dataset=training_set,
        make_batch=make_batch,
        condition=condition,
        sample=sample,
        prepare=prepare,
    )
