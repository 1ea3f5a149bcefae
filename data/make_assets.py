"""Regenerate the small assets of data/: a sample image, a short clip and a tiny trained VAE.

Everything is procedural (coloured shapes on gradient backgrounds) and seeded, so the files can
be rebuilt exactly on the same torch version. Used by notebook 05_latent_space.

    python data/make_assets.py             # sample.png and clip.gif (a second)
    python data/make_assets.py --train     # also tiny_vae.safetensors (a few minutes on 2 CPU cores)
    python data/make_assets.py --worlds    # also object.png and moving_object.gif: held-out world objects

The trained world models (tiny_svd, tiny_sv3d, tiny_sv4d2) and their VAE are made by `minigen.train` and
`minigen.recipes.worlds`: see data/README.md.
"""

import argparse
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from minigen.presets.first_stage import tiny_sd_vae, tiny_svd_vae
from minigen.recipes.worlds import start_from_image_decoder

DATA = Path(__file__).resolve().parent
SIZE = 64


def scene(generator: torch.Generator, size: int = SIZE, shift: tuple = (0.0, 0.0)) -> torch.Tensor:
    """One image (3, size, size) in [-1, 1]: a two-colour gradient and three shapes, moved by `shift`."""
    def uniform(*shape):
        return torch.rand(*shape, generator=generator)

    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    top, bottom = uniform(3, 1, 1), uniform(3, 1, 1)
    image = top * (1 - ys) + bottom * ys
    for kind in range(3):
        colour, centre, radius = uniform(3, 1, 1), uniform(2) * 0.6 + 0.2, 0.08 + 0.12 * uniform(1)
        dy, dx = ys - centre[0] - shift[0] * (kind + 1) / 3, xs - centre[1] - shift[1] * (kind + 1) / 3
        inside = (dy**2 + dx**2 < radius**2) if kind != 1 else (dy.abs() < radius) & (dx.abs() < radius)
        image = torch.where(inside, colour, image)
    return image * 2 - 1


def clip(generator: torch.Generator, frames: int = 8, size: int = SIZE) -> torch.Tensor:
    """(frames, 3, size, size): the shapes of one scene gliding along a random direction."""
    state = generator.get_state()
    angle = 2 * math.pi * torch.rand(1, generator=generator).item()
    video = []
    for t in range(frames):
        generator.set_state(state)  # the same scene every frame, only shifted
        step = 0.04 * t
        video.append(scene(generator, size, (step * math.sin(angle), step * math.cos(angle))))
    return torch.stack(video)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def train_image_vae(steps: int, generator: torch.Generator, device="cpu"):
    """tiny_sd's AutoencoderKL: L1 reconstruction + 1e-6 KL, as latent-diffusion VAEs are trained (no GAN)."""
    vae = tiny_sd_vae().build().to(device)
    with torch.no_grad():  # start nearly deterministic (logvar -8) so early samples are not pure noise
        vae.quant_conv.bias[vae.latent_channels:] = -8.0
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    for step in range(steps):
        x = torch.stack([scene(generator, 32) for _ in range(8)]).to(device)
        posterior = vae.posterior(x)
        noise = torch.randn(posterior.mean.shape, generator=generator).to(device)
        reconstruction = vae.decoder(vae.post_quant_conv(posterior.mean + posterior.std * noise))
        loss = F.l1_loss(reconstruction, x) + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            print(f"image VAE step {step}: loss {loss.item():.4f}")
    return vae.eval()


def train_video_decoder(vae, steps: int, generator: torch.Generator, noise: float = 0.3, device="cpu"):
    """tiny_svd's VideoDecoder, started from the image decoder, taught to decode clips whose latents
    carry independent per-frame noise (the flicker a diffusion model leaves) into steady frames."""
    video_decoder = start_from_image_decoder(tiny_svd_vae().build().decoder, vae.decoder).to(device)
    optimizer = torch.optim.Adam(video_decoder.parameters(), lr=1e-3)
    for step in range(steps):
        clips = torch.cat([clip(generator, 4, 32) for _ in range(4)]).to(device)  # (b t) c h w, t = 4
        with torch.no_grad():
            z = vae.post_quant_conv(vae.posterior(clips).mode())
            z = z + noise * torch.randn(z.shape, generator=generator).to(device)
        loss = F.l1_loss(video_decoder(z, num_video_frames=4), clips)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            print(f"video decoder step {step}: loss {loss.item():.4f}")
    return video_decoder.eval()


def world_assets() -> None:
    """Inputs for the quick start: a held-out object (never seen in training) seen from its orbit's input view,
    and a held-out moving object's input video, both rendered by minigen.data.scenes at 64x64 on white."""
    from minigen.recipes import tiny_sv3d, tiny_sv4d2

    orbit = tiny_sv3d.dataset(tiny_sv3d.HELD_OUT_SEED, length=7)[6]  # a box with a marked pole: easy to follow
    iio.imwrite(DATA / "object.png", to_uint8(orbit["frames"][-1:])[0])
    moving = tiny_sv4d2.dataset(tiny_sv4d2.HELD_OUT_SEED, length=7)[6]  # the same box, turning
    iio.imwrite(DATA / "moving_object.gif", to_uint8(moving["frames"][:, 0]), duration=200, loop=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", action="store_true", help="also train data/tiny_vae.safetensors")
    parser.add_argument("--worlds", action="store_true", help="also render object.png and moving_object.gif")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--device", default="cpu", help="where to train, e.g. cuda (the data is drawn on the CPU)")
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(2024)
    iio.imwrite(DATA / "sample.png", to_uint8(scene(generator)[None])[0])
    iio.imwrite(DATA / "clip.gif", to_uint8(clip(generator)), duration=120, loop=0)
    if args.worlds:
        world_assets()
    if not args.train:
        return
    torch.set_num_threads(2)
    vae = train_image_vae(args.steps, generator, args.device)
    video_decoder = train_video_decoder(vae, args.steps // 3, generator, device=args.device)
    tensors = {f"image_vae.{k}": v.cpu() for k, v in vae.state_dict().items()}
    tensors |= {f"video_decoder.{k}": v.cpu() for k, v in video_decoder.state_dict().items()}
    save_file({k: v.half().contiguous() for k, v in tensors.items()}, DATA / "tiny_vae.safetensors",
              metadata={"made_by": "python data/make_assets.py --train", "steps": str(args.steps)})


if __name__ == "__main__":
    main()
