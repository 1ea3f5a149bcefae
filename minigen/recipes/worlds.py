"""What the latent world recipes (tiny_i2v, tiny_sv3d, tiny_sv4d2) share: the worlds VAE and the encoding step.

The official video models all reuse one frozen VAE: its encoder makes the conditioning latents (inside the
conditioner, at scale 1) and the training targets (at the engine's scale factor), its decoder turns samples
back into frames. The tiny models do the same with `data/tiny_worlds_vae.safetensors`, a VAE fine-tuned on
renders of `minigen.data.scenes` (from the course VAE of notebook 05) and a temporal decoder for tiny_svd:

    python -m minigen.recipes.worlds       # about 10 minutes on 2 idle CPU cores (24 on a busy one)
    python -m minigen.recipes.worlds --export tiny_sv3d runs/tiny_sv3d/ema.safetensors data/tiny_sv3d.safetensors

Why 64x64 frames and the 8x VAE: every official model squeezes 8x8 pixels into 4 latent numbers, and the
pipelines take images in multiples of 64; 64x64 renders give 8x8 latents, large enough for a UNet with two
levels to learn an object's pose, while 32x32 frames would leave 4x4 latents (16 positions).
"""

import argparse
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .. import io
from ..conditioning import VideoPredictionEmbedderWithEncoder
from ..data import scenes
from ..diffusion import EDMSampling, StandardDiffusionLoss, VWeighting
from ..nn.autoencoder import AutoencoderKL, VideoDecoder
from ..presets import DATA_DIR, trained_weights_path
from ..presets.first_stage import TINY_DDCONFIG, FirstStageConfig
from . import Recipe, TrainConfig

WORLDS_VAE = DATA_DIR / "tiny_worlds_vae.safetensors"
COURSE_VAE = DATA_DIR / "tiny_vae.safetensors"  # notebook 05's VAE, trained on flat procedural scenes
SIZE = 64  # rendered frame size: 8x8 latents


def image_vae() -> AutoencoderKL:
    """The worlds VAE as trained: encoder + image decoder, no quant convs (SVD's first-stage layout)."""
    return FirstStageConfig(ddconfig=TINY_DDCONFIG, embed_dim=None).build()


def video_decoder() -> VideoDecoder:
    """tiny_svd's temporal decoder: the image decoder with frame-mixing ResNet blocks and output conv."""
    return FirstStageConfig(ddconfig=TINY_DDCONFIG, embed_dim=None, decoder_target="VideoDecoder").build().decoder


# ---------------------------------------------------------------------------------------- using the worlds VAE


def load_worlds_vae(engine, path: Path = WORLDS_VAE) -> None:
    """Fill an engine's first stage and its conditioner's VAE encoders from the worlds VAE file.

    The conditioner's encoders have quant convs (the configs' AutoencoderKLModeOnly); they become identities,
    so they compute exactly what the first-stage encoder computes.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; make it with `python -m minigen.recipes.worlds`.")
    weights = {key: value.float() for key, value in load_file(path).items()}
    first_stage = engine.first_stage_model
    decoder_prefix = "video_decoder." if isinstance(first_stage.decoder, VideoDecoder) else "decoder."
    first_stage.decoder.load_state_dict(_part(weights, decoder_prefix))
    if first_stage.encoder is not None:
        first_stage.encoder.load_state_dict(_part(weights, "encoder."))
    for embedder in engine.conditioner.embedders:
        if isinstance(embedder, VideoPredictionEmbedderWithEncoder):
            _fill_conditioning_encoder(embedder.encoder, weights)


def _part(weights: dict, prefix: str) -> dict:
    return {key.removeprefix(prefix): value for key, value in weights.items() if key.startswith(prefix)}


def _fill_conditioning_encoder(encoder: AutoencoderKL, weights: dict) -> None:
    encoder.encoder.load_state_dict(_part(weights, "encoder."))
    encoder.decoder.load_state_dict(_part(weights, "decoder."))
    with torch.no_grad():
        for conv in (encoder.quant_conv, encoder.post_quant_conv):
            conv.weight.copy_(torch.eye(conv.out_channels)[:, :, None, None])
            conv.bias.zero_()


# What a trained world model's file in data/ holds: the network and the (frozen, seeded) CLIP image tower. The VAE
# parts, the same in every world model, come from WORLDS_VAE, so each is stored once.
TRAINED_PREFIXES = ("model.diffusion_model.", "conditioner.embedders.0.")


def load_trained(engine, path: Path) -> None:
    """Fill a world engine from a trained model file (TRAINED_PREFIXES) and the worlds VAE, checking that the file
    holds exactly the tensors it should (a strict load, split over two files)."""
    weights = load_file(path)
    expected = {key for key in engine.state_dict() if key.startswith(TRAINED_PREFIXES)}
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or unexpected:
        raise ValueError(f"{path} does not fit this engine: {len(missing)} missing tensors {missing[:3]}, "
                         f"{len(unexpected)} unexpected {unexpected[:3]}. Was it exported for another preset?")
    engine.load_state_dict({key: value.float() for key, value in weights.items()}, strict=False)
    load_worlds_vae(engine)


def start_from_course_model(engine, preset: str, renames: dict[str, str] | None = None) -> list[str]:
    """Initialise a world engine's network from another trained course model (as SV3D was fine-tuned from SVD):
    every tensor whose name (after `renames`, old part -> new part) and shape agree is copied; returns the names
    left as they were (e.g. the vector embedding, whose width differs). Only the network: the VAE parts are the
    same file anyway."""
    trained = load_file(trained_weights_path(preset))
    source = {rename(key, renames or {}): value.float() for key, value in trained.items()
              if key.startswith("model.diffusion_model.")}
    target = engine.state_dict()
    fits = {key: value for key, value in source.items() if key in target and target[key].shape == value.shape}
    engine.load_state_dict(fits, strict=False)
    return sorted(key for key in target if key.startswith("model.diffusion_model.") and key not in fits)


def rename(key: str, renames: dict[str, str]) -> str:
    """`key` with every old part of `renames` replaced by its new part, in order (e.g. `.time_stack.` ->
    `.motion_blocks.`: where one course model's layer lives in another's layout)."""
    for old, new in renames.items():
        key = key.replace(old, new)
    return key


def export_trained(recipe_name: str, ema_path: Path, out: Path, metadata: dict[str, str]) -> Path:
    """A training run's EMA network (`ema.safetensors`) + the recipe's frozen CLIP tower -> a data/ model file."""
    from ..pipelines import DiffusionEngine
    from . import get_recipe

    recipe = get_recipe(recipe_name)
    engine = DiffusionEngine.from_preset(recipe.preset, weights="random")
    recipe.prepare(engine)
    ema = {key: value.float() for key, value in load_file(ema_path).items()}
    unexpected = engine.load_state_dict(ema, strict=False).unexpected_keys
    if unexpected:
        raise ValueError(f"{ema_path} has tensors {unexpected[:3]} that {recipe.preset} does not have.")
    tensors = {key: value.half().contiguous() for key, value in engine.state_dict().items()
               if key.startswith(TRAINED_PREFIXES)}
    save_file(tensors, out, metadata=metadata)
    return out


def conditioning_encoder(engine) -> AutoencoderKL:
    """The conditioner's first VAE encoder (every world engine has one)."""
    return next(e.encoder for e in engine.conditioner.embedders if isinstance(e, VideoPredictionEmbedderWithEncoder))


@torch.no_grad()
def encode(engine, frames: torch.Tensor) -> torch.Tensor:
    """Frames `(b t) 3 H W` in [-1, 1] -> the scaled latents the network denoises (the posterior's mode)."""
    return engine.first_stage_model.scale_factor * conditioning_encoder(engine).encode(frames)


class LatentCache(torch.utils.data.Dataset):
    """The first `length` examples of a world, rendered and encoded once by the frozen worlds VAE.

    Encoding costs more than a training step of the tiny UNets (12 ms a 64x64 frame on one core), and the VAE
    never changes, so the targets' latents are computed once, before training, as latent-diffusion training
    commonly does. Each example keeps its frames as uint8 (what the pipelines take) for the conditioner, and
    `latents`: the unscaled posterior mode of every frame, `... 4 8 8` beside `frames` `... 3 64 64`.
    Under torchrun each process renders and encodes every size-th example, and they swap shares: K processes
    build the cache in about 1/K of the time, each ending with all of it.
    """

    def __init__(self, world: torch.utils.data.Dataset, length: int, path: Path = WORLDS_VAE, chunk: int = 256):
        rank, size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        share = encoded_examples(world, range(rank, length, size), path, chunk)
        if size == 1:
            self.examples = share
            return
        shares = [None] * size
        dist.all_gather_object(shares, share)
        self.examples = [shares[index % size][index // size] for index in range(length)]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        return example | {"frames": to_float(example["frames"])}


def encoded_examples(world: torch.utils.data.Dataset, indices: range, path: Path, chunk: int) -> list[dict]:
    """The world's examples at `indices`, rendered, each with its frames as uint8 and their `latents` beside them."""
    examples = [world[index] for index in indices]
    if not examples:  # more processes than examples
        return examples
    vae = image_vae().eval()
    weights = {key: value.float() for key, value in load_file(path).items()}
    vae.encoder.load_state_dict(_part(weights, "encoder."))
    frames = torch.cat([example["frames"].reshape(-1, 3, SIZE, SIZE) for example in examples])
    frames = torch.from_numpy(io.to_uint8(frames))  # as a saved image would hold them
    with torch.no_grad():
        latents = torch.cat([vae.posterior(to_float(frames[i:i + chunk])).mode() for i in range(0, len(frames), chunk)])
    start = 0
    for example in examples:
        count = example["frames"][..., 0, 0, 0].numel()
        shape = example["frames"].shape[:-3]
        # clones, not views of the whole share: each example owns its storage (and pickles alone, under torchrun)
        example["frames"] = frames[start:start + count].reshape(*shape, 3, SIZE, SIZE).clone()
        example["latents"] = latents[start:start + count].reshape(*shape, *latents.shape[1:]).clone()
        start += count
    return examples


def to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames -> float32 in [-1, 1]."""
    return frames.float() / 127.5 - 1


def with_latents(batch: dict, examples: list[dict]) -> dict:
    """A batch of LatentCache examples with their cached latents beside the frames, `(b t) 4 h w` in the frames'
    order, where `cached_latents` reads them instead of encoding the frames again."""
    return batch | {"latents": torch.cat([example["latents"] for example in examples])}


def cached_latents(engine, batch: dict) -> torch.Tensor:
    """A batch's cached unscaled latents -> what the network denoises (the first stage's scale factor applied)."""
    return engine.first_stage_model.scale_factor * batch["latents"]


# ------------------------------------------------------------------------------------------ training settings

# What the three world recipes share: AdamW at 3e-4 after a short warm-up, bf16 autocast, an EMA over about the
# last 500 steps; each recipe sets its own steps and batch size.
TRAIN_CONFIG = TrainConfig(learning_rate=3e-4, warmup_steps=100, ema_decay=0.998, precision="bf16", log_every=25,
                           sample_every=500, checkpoint_every=250)


def loss() -> StandardDiffusionLoss:
    """SVD's training noise, shifted towards high noise (log sigma ~ N(1.0, 1.6)), and the v-prediction weighting
    (EDM's with sigma_data = 1), as the video models' VScalingWithEDMcNoise denoiser expects."""
    return StandardDiffusionLoss(EDMSampling(p_mean=1.0, p_std=1.6), VWeighting())


def world_recipe(**fields) -> Recipe:
    """A recipe that trains on a world: the frozen worlds VAE, cached latents and the shared loss; `fields` name
    the rest (name, preset, description, config, dataset, make_batch, condition, sample, perhaps prepare)."""
    return Recipe(**{"encode": cached_latents, "loss": loss, "prepare": load_worlds_vae, **fields})


KNOWN_LATENTS = "_latents"  # batch["cond_view_latents"]: the cached latents of the frames batch["cond_view"]


def known_latents(batch: dict) -> dict[str, torch.Tensor]:
    """{conditioner input key: its frames' cached latents} for the inputs whose latents the batch carries
    (`KEY_latents` beside `KEY`): the conditioner uses them instead of encoding the frames again. SV4D's
    conditioning frames are noised by 1e-5 only, so their latents are the LatentCache's; encoding the 19 frames of
    each tiny_sv4d2 window again made its training step a third longer (0.61 s against 0.45 s for 4 windows)."""
    return {key.removesuffix(KNOWN_LATENTS): value for key, value in batch.items()
            if key.endswith(KNOWN_LATENTS) and key.removesuffix(KNOWN_LATENTS) in batch}


def select_samples(batch: dict, samples: torch.Tensor, num_samples: int) -> dict:
    """The part of a batch of `num_samples` samples that belongs to the samples indexed by `samples`: every tensor
    has a whole number of rows per sample (one image, t frames, t x v frames...); plain numbers pass through."""
    selected = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            rows = value.shape[0] // num_samples
            selected[key] = value[(samples[:, None] * rows + torch.arange(rows)).flatten()]
        else:
            selected[key] = value
    return selected


def condition(engine, batch: dict, generator: torch.Generator, dropout: float, zero_keys: tuple[str, ...],
              repeat_to_frames: bool) -> dict:
    """The conditioning of a training batch, with whole samples made unconditional at rate `dropout`.

    Classifier-free guidance pairs the conditional prediction with an unconditional one in which `zero_keys`
    (the input image, the reference views...) are zeroed while the numbers (cameras, fps, cond_aug) stay. A
    dropped sample gets exactly that unconditional conditioning, so training teaches the pair guidance uses.
    `repeat_to_frames`: the SVD-family UNet wants crossattn and concat per frame, `(b t)` rows, as the pipelines
    repeat them.
    """
    num_samples, frames = batch["image_only_indicator"].shape  # b t
    c = engine.conditioner.embed(batch, (), generator, dropout=False, known_latents=known_latents(batch))
    dropped = torch.nonzero(torch.rand(num_samples, generator=generator) < dropout).flatten()
    if len(dropped):
        dropped_batch = select_samples(batch, dropped, num_samples)
        uc = engine.conditioner.embed(dropped_batch, zero_keys, generator, dropout=False,
                                      known_latents=known_latents(dropped_batch))
        for key, value in uc.items():
            rows = c[key].shape[0] // num_samples
            positions = (dropped[:, None] * rows + torch.arange(rows)).flatten().to(c[key].device)
            c[key] = c[key].index_copy(0, positions, value)
    if repeat_to_frames:
        for key in ("crossattn", "concat"):
            c[key] = c[key].repeat_interleave(frames, dim=0)  # b ... -> (b t) ...
    return c


# ------------------------------------------------------------------------------------------- training the VAE


def world_frames(count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` frames drawn from all three worlds (orbits, moving objects, motion videos), as training data."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    orbits = scenes.OrbitDataset(num_views=4, size=SIZE, length=count, seed=seed)
    videos = scenes.MotionVideoDataset(num_frames=4, size=SIZE, length=count, seed=seed + 1)
    frames = [orbits[i]["frames"] if i % 2 == 0 else videos[i]["frames"] for i in range(count // 4 + 1)]
    return torch.cat(frames)[:count]


def folded_course_vae() -> AutoencoderKL:
    """The course VAE (with quant convs) as a VAE without them: quant_conv folds exactly into the encoder's last
    conv; post_quant_conv folds into the decoder's first conv, exactly except at the zero-padded border."""
    weights = {key.removeprefix("image_vae."): value.float() for key, value in load_file(COURSE_VAE).items()
               if key.startswith("image_vae.")}
    vae = image_vae()
    vae.encoder.load_state_dict(_part(weights, "encoder."))
    vae.decoder.load_state_dict(_part(weights, "decoder."))
    quant, post = weights["quant_conv.weight"][:, :, 0, 0], weights["post_quant_conv.weight"][:, :, 0, 0]
    with torch.no_grad():
        out, first = vae.encoder.conv_out, vae.decoder.conv_in
        out.bias.copy_(quant @ out.bias + weights["quant_conv.bias"])
        out.weight.copy_(torch.einsum("oc,cikl->oikl", quant, out.weight))
        first.bias.add_(torch.einsum("ocij,c->o", first.weight, weights["post_quant_conv.bias"]))
        first.weight.copy_(torch.einsum("ocij,ck->okij", first.weight, post))
    return vae


def train_image_vae(vae: AutoencoderKL, steps: int, batch_size: int, generator: torch.Generator) -> list[float]:
    """L1 reconstruction + 1e-6 KL on world frames, as latent-diffusion VAEs are trained (no GAN)."""
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-4)
    losses = []
    for step in range(steps):
        x = world_frames(batch_size, generator)
        posterior = vae.posterior(x)
        noise = torch.randn(posterior.mean.shape, generator=generator)
        loss = F.l1_loss(vae.decoder(posterior.mean + posterior.std * noise), x) + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 50 == 0:
            print(f"image VAE step {step}: L1 {losses[-1]:.4f}", flush=True)
    return losses


def start_from_image_decoder(decoder: VideoDecoder, image_decoder) -> VideoDecoder:
    """A temporal decoder that starts as the image decoder: its spatial weights, and an output time mix that is
    the identity (the frame-mixing ResNet blocks start from their blend)."""
    decoder.load_state_dict(image_decoder.state_dict(), strict=False)  # the spatial weights
    with torch.no_grad():
        decoder.conv_out.time_mix_conv.weight.zero_()[:, :, 1].copy_(torch.eye(3)[:, :, None, None])
        decoder.conv_out.time_mix_conv.bias.zero_()
    return decoder


def train_video_decoder(vae: AutoencoderKL, steps: int, clips: int, generator: torch.Generator,
                        latent_noise: float = 0.3) -> VideoDecoder:
    """The temporal decoder, started from the image decoder, taught to decode 4-frame clips whose latents carry
    independent per-frame noise (the flicker a diffusion model leaves) into steady frames."""
    decoder = start_from_image_decoder(video_decoder(), vae.decoder)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=3e-4)
    for step in range(steps):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        videos = scenes.MotionVideoDataset(num_frames=4, size=SIZE, length=clips, seed=seed)
        frames = torch.cat([videos[i]["frames"] for i in range(clips)])  # (b t) 3 H W
        with torch.no_grad():
            z = vae.posterior(frames).mode()
            z = z + latent_noise * torch.randn(z.shape, generator=generator)
        loss = F.l1_loss(decoder(z, num_video_frames=4), frames)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            print(f"video decoder step {step}: L1 {loss.item():.4f}", flush=True)
    return decoder.eval()


@torch.no_grad()
def latent_std(vae: AutoencoderKL, generator: torch.Generator, count: int = 256) -> float:
    """Standard deviation of the latents of world frames: 1 / it is the scale factor the presets use."""
    return vae.posterior(world_frames(count, generator)).mode().std().item()


def main() -> None:
    """`python -m minigen.recipes.worlds`: fine-tune and write the worlds VAE, or `--export` a trained run."""
    parser = argparse.ArgumentParser(description="Fine-tune the course VAE on the worlds of minigen.data.scenes, "
                                                 "or (--export) turn a training run into a data/ model file.")
    parser.add_argument("--steps", type=int, default=1500, help="image VAE steps (the temporal decoder gets half)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=WORLDS_VAE)
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--export", nargs=3, metavar=("RECIPE", "EMA", "OUT"),
                        help="write OUT from a run's EMA weights (runs/RECIPE/ema.safetensors) instead of training")
    args = parser.parse_args()
    out = Path(args.export[2]) if args.export else args.out
    if out.exists() and not args.overwrite:
        raise SystemExit(f"{out} exists; pass --overwrite to replace it.")
    if args.export:
        recipe, ema = args.export[0], Path(args.export[1])
        with safe_open(ema, "pt") as run:
            metadata = dict(run.metadata() or {})
        print(f"wrote {export_trained(recipe, ema, out, metadata | {'vae': WORLDS_VAE.name})}")
        return
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(2025)
    start = time.time()
    vae = folded_course_vae()
    losses = train_image_vae(vae, args.steps, args.batch_size, generator)
    decoder = train_video_decoder(vae.eval(), args.steps // 2, args.batch_size // 4 or 1, generator)
    std = latent_std(vae, generator)
    tensors = {f"encoder.{k}": v for k, v in vae.encoder.state_dict().items()}
    tensors |= {f"decoder.{k}": v for k, v in vae.decoder.state_dict().items()}
    tensors |= {f"video_decoder.{k}": v for k, v in decoder.state_dict().items()}
    minutes = (time.time() - start) / 60
    metadata = {"made_by": f"python -m minigen.recipes.worlds --steps {args.steps} --batch-size {args.batch_size}",
                "final_l1": f"{sum(losses[-50:]) / len(losses[-50:]):.4f}", "latent_std": f"{std:.4f}",
                "minutes": f"{minutes:.1f}"}
    save_file({k: v.half().contiguous() for k, v in tensors.items()}, args.out, metadata=metadata)
    print(f"wrote {args.out}: {metadata}")


if __name__ == "__main__":
    main()
