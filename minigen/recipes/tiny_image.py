"""Recipe tiny_image: a tiny class-conditional UNet that learns the coloured shapes, as a DiffusionEngine.

Notebook 04's model, built the official way: the label reaches the UNet through a
GeneralConditioner (a one-hot `vector`, the UNet's `y` with num_classes="sequential"), so condition dropout,
`force_uc_zero_embeddings` and classifier-free guidance work exactly as they do for SDXL or SVD. The model
denoises pixels (no first stage) with EDM's preconditioning and loss. `python -m minigen.train tiny_image`.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning import EmbedderEntry, GeneralConditioner
from ..data.shapes import SHAPES, sample_shapes
from ..diffusion import (
    Denoiser,
    EDMDiscretization,
    EDMSampling,
    EDMScaling,
    EDMWeighting,
    EulerEDMSampler,
    StandardDiffusionLoss,
    VanillaCFG,
)
from ..nn.unet import UNetModel
from ..pipelines.engine import DiffusionEngine
from ..presets import DATA_DIR
from . import Recipe, TrainConfig

NUM_CLASSES = len(SHAPES)
IMAGE_SIZE = 16  # notebook 04's size: the shapes are told apart, and a CPU trains it in minutes
SIGMA_DATA = 0.5  # expected standard deviation of the training images (EDM's preconditioning)


class OneHotLabel(nn.Module):
    """Embedder: class labels `b` -> one-hot vectors `b num_classes`, which the conditioner routes to `vector`.

    Condition dropout and `force_uc_zero_embeddings` zero the vector: all zeros is the unconditional label.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels.long(), self.num_classes).float()


def tiny_unet() -> UNetModel:
    """notebook 04's UNet (16x16 -> 8x8 -> 4x4, attention at 4x4), reading the label as the vector `y`."""
    return UNetModel(
        in_channels=3, out_channels=3, model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
        attention_resolutions=(4,), num_head_channels=32,
        num_classes="sequential", adm_in_channels=NUM_CLASSES,  # y: the one-hot label
    )


def build_engine() -> DiffusionEngine:
    """The untrained engine: the label conditioner, the tiny UNet and EDM's preconditioning, with no first stage
    (there is no preset for a pixel-space model)."""
    conditioner = GeneralConditioner([EmbedderEntry(OneHotLabel(NUM_CLASSES), input_key="label")])
    return DiffusionEngine(tiny_unet(), Denoiser(EDMScaling(SIGMA_DATA)), conditioner)


TRAINED = DATA_DIR / "tiny_image.safetensors"  # this recipe's EMA weights


def trained_engine(path: Path = TRAINED) -> DiffusionEngine:
    """The trained model: `build_engine()` filled strictly from the committed EMA weights (the network's)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: train it with `python -m minigen.train tiny_image` and copy "
                                "runs/tiny_image/ema.safetensors there.")
    engine = build_engine()
    engine.load(path)
    return engine.eval().requires_grad_(False)


def dataset(num_images: int = 4096, seed: int = 0) -> torch.utils.data.Dataset:
    """Fixed shape images (notebook 04's large, centred shapes); items are (image `3 h w`, label)."""
    images, labels = sample_shapes(num_images, torch.Generator().manual_seed(seed), image_size=IMAGE_SIZE,
                                   size_range=(0.6, 0.8), jitter=0.5)
    return torch.utils.data.TensorDataset(images, labels)


def make_batch(examples: list[tuple], generator: torch.Generator) -> dict:
    """(image, label) pairs -> the targets ("frames") and the conditioner's "label"; nothing random to draw."""
    images, labels = zip(*examples, strict=True)
    return {"frames": torch.stack(images), "label": torch.stack(labels)}  # b 3 h w, b


def encode(engine: DiffusionEngine, batch: dict) -> torch.Tensor:
    """The training targets: the images themselves, since the model denoises pixels (no first stage)."""
    return batch["frames"]


def loss() -> StandardDiffusionLoss:
    """EDM's training noise levels and loss weighting, matching the EDM preconditioning of build_engine."""
    return StandardDiffusionLoss(EDMSampling(), EDMWeighting(SIGMA_DATA))


@torch.no_grad()
def sample(engine: DiffusionEngine, generator: torch.Generator, image_size: int = IMAGE_SIZE, rows: int = 4,
           cfg: float = 3.0, num_steps: int = 20) -> torch.Tensor:
    """`rows` samples of every shape, `rows classes 3 h w`: each column of the grid is one class.

    Euler steps with classifier-free guidance; the unconditional branch zeroes the label, as dropout did.
    """
    device = next(engine.parameters()).device
    labels = torch.arange(NUM_CLASSES).repeat(rows).to(device)
    c, uc = engine.conditioner.get_unconditional_conditioning({"label": labels}, force_uc_zero_embeddings=["label"])
    sampler = EulerEDMSampler(EDMDiscretization(), num_steps=num_steps, guider=VanillaCFG(cfg), progress=False)
    noise = torch.randn(len(labels), 3, image_size, image_size, generator=generator).to(device)
    images = sampler(engine.denoise, noise, c, uc).clamp(-1, 1)
    return images.reshape(rows, NUM_CLASSES, *images.shape[1:])


def recipe() -> Recipe:
    """tiny_image's training: what `python -m minigen.train tiny_image` runs."""
    return Recipe(
        name="tiny_image",
        preset="tiny_image",  # no preset in minigen.presets: build_engine makes the engine
        description="class-conditional tiny UNet (1.4 M parameters) on 16x16 coloured shapes, pixels, EDM loss, "
                    "label dropout 0.1 for CFG; 800 steps of batch 32: about 3 minutes on one core of a 2-core CPU",
        config=TrainConfig(steps=800, batch_size=32, learning_rate=3e-3, warmup_steps=20, ema_decay=0.995,
                           condition_dropout={"label": 0.1}, log_every=50, sample_every=200, checkpoint_every=200),
        dataset=dataset,
        make_batch=make_batch,
        encode=encode,
        loss=loss,
        sample=sample,
        build_engine=build_engine,
    )
