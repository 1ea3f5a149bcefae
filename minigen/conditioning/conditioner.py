"""GeneralConditioner: turns a batch of raw conditions into the UNet's `vector`, `crossattn` and `concat` inputs.

Each embedder reads one batch entry (its `input_key`, e.g. "txt", "fps_id", "cond_frames") and
its outputs are routed by their number of dimensions: `b d` -> "vector", `b n d` -> "crossattn",
`b c h w` -> "concat" (SV4D's "cond_view" / "cond_motion" embedders keep their own key). Outputs
that land on the same key are concatenated in embedder order. Classifier-free guidance needs an
unconditional twin: `get_unconditional_conditioning` zeroes the embeddings named in
`force_uc_zero_embeddings`. Training drops conditions at random (`ucg_rate`) so that the model
learns both. Taught in notebook 06. Reference: `GeneralConditioner` in sgm/modules/encoders/modules.py.
"""

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from minigen.diffusion.denoiser import append_dims

OUTPUT_DIM2KEYS = {2: "vector", 3: "crossattn", 4: "concat", 5: "concat"}  # output ndim -> conditioning key
KEY2CATDIM = {"vector": 1, "crossattn": 2, "concat": 1, "cond_view": 1, "cond_motion": 1}  # concatenated along
SPECIAL_KEYS = ("cond_view", "cond_motion")  # SV4D: these embedders' outputs keep their input key


@dataclass
class EmbedderEntry:
    """One row of the configs' `emb_models`: an embedder and how the conditioner feeds and uses it."""

    embedder: nn.Module
    input_key: str | None = None  # the batch entry the embedder reads
    input_keys: Sequence[str] = ()  # or several entries, passed positionally
    is_trainable: bool = False  # False: frozen, run without gradients and kept in eval mode
    ucg_rate: float = 0.0  # probability of dropping this condition for a sample (training)
    legacy_ucg_value: Any = None  # if set, dropping replaces the raw input by this value (e.g. "") instead

    def __post_init__(self):
        if (self.input_key is None) == (not self.input_keys):
            raise ValueError(f"{type(self.embedder).__name__}: give exactly one of input_key or input_keys.")
        if not 0.0 <= self.ucg_rate <= 1.0:
            raise ValueError(f"ucg_rate is a probability in [0, 1], got {self.ucg_rate}.")

    @property
    def keys(self) -> list[str]:
        """The batch entries the embedder reads, in the order it takes them."""
        return [self.input_key] if self.input_key is not None else list(self.input_keys)

    @property
    def drops_embedding(self) -> bool:
        """Condition dropout zeroes this embedder's output (the usual way: no legacy_ucg_value)."""
        return self.ucg_rate > 0.0 and self.legacy_ucg_value is None

    @property
    def drops_input(self) -> bool:
        """Condition dropout replaces the raw input by legacy_ucg_value (SDXL's text: the empty prompt) before
        the embedder runs, so the dropped sample gets the embedding of that value, not zeros."""
        return self.ucg_rate > 0.0 and self.legacy_ucg_value is not None


class GeneralConditioner(nn.Module):
    """Embedders in config order; their weights live under `embedders.N.` as in the official checkpoints."""

    def __init__(self, emb_models: Sequence[EmbedderEntry]):
        super().__init__()
        self.entries = list(emb_models)
        self.embedders = nn.ModuleList(entry.embedder for entry in self.entries)
        for entry in self.entries:
            if not entry.is_trainable:
                entry.embedder.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "GeneralConditioner":
        """Frozen embedders stay in eval mode (the reference replaces their `train` method to the same end)."""
        super().train(mode)
        for entry in self.entries:
            if not entry.is_trainable:
                entry.embedder.eval()
        return self

    def forward(self, batch: dict, force_zero_embeddings: Sequence[str] = (),
                generator: torch.Generator | None = None,
                augmentation_noise: dict | None = None) -> dict[str, torch.Tensor]:
        """{"vector", "crossattn", "concat", ...} for `batch`, with random condition dropout (`ucg_rate`).

        `force_zero_embeddings` lists input keys whose embeddings are replaced by zeros. All randomness
        (dropout, noise augmentation) is drawn from `generator`, except the augmentation noise given in
        `augmentation_noise` ({input key: unit noise shaped like that input}, e.g. a recorded run's).
        """
        return self.embed(batch, force_zero_embeddings, generator, dropout=True, augmentation_noise=augmentation_noise)

    def get_unconditional_conditioning(
        self,
        batch_c: dict,
        batch_uc: dict | None = None,
        force_uc_zero_embeddings: Sequence[str] | None = None,
        force_cond_zero_embeddings: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
        augmentation_noise: tuple[dict, dict] | None = None,
    ) -> tuple[dict, dict]:
        """The conditional and unconditional conditionings for classifier-free guidance, without dropout.

        The unconditional one embeds `batch_uc` (default: `batch_c`) with the embeddings of
        `force_uc_zero_embeddings` zeroed (SVD: ["cond_frames", "cond_frames_without_noise"]).
        Each pass draws its own augmentation noise, unless `augmentation_noise` gives it: (for c, for uc),
        each {input key: unit noise}, as `forward` takes it.
        """
        noise_c, noise_uc = augmentation_noise or (None, None)
        c = self.embed(batch_c, force_cond_zero_embeddings or (), generator, dropout=False, augmentation_noise=noise_c)
        uc_batch = batch_c if batch_uc is None else batch_uc
        uc = self.embed(uc_batch, force_uc_zero_embeddings or (), generator, dropout=False, augmentation_noise=noise_uc)
        return c, uc

    def embed(self, batch: dict, force_zero_embeddings: Sequence[str], generator: torch.Generator | None,
              dropout: bool, augmentation_noise: dict | None = None,
              known_latents: dict | None = None) -> dict[str, torch.Tensor]:
        """What `forward` and `get_unconditional_conditioning` both do, with condition dropout switched by
        `dropout`. Each embedder, in config order, reads its inputs, runs, and each of its outputs is routed to a
        conditioning key, dropped or zeroed as asked, and joined to what that key holds so far.
        `known_latents` ({input key: latents}): the VAE encodings of those frames when already known (training
        from cached latents), which the frame embedders return instead of encoding the frames again."""
        output = {}
        for index, entry in enumerate(self.entries):
            inputs = self.inputs_of(index, entry, batch, generator, dropout)
            given = {name: values[entry.input_key] for name, values in
                     (("noise", augmentation_noise), ("latents", known_latents)) if entry.input_key in (values or {})}
            for embedding in self.run_embedder(index, entry, inputs, generator, **given):
                key = self.route(index, entry, embedding)
                if dropout and entry.drops_embedding:  # condition dropout (training)
                    embedding = drop_samples(embedding, entry.ucg_rate, generator)
                if entry.input_key in force_zero_embeddings:  # the unconditional side of guidance
                    embedding = torch.zeros_like(embedding)
                output[key] = embedding if key not in output else concatenate(output[key], embedding, key, index)
        return output

    def inputs_of(self, index: int, entry: EmbedderEntry, batch: dict, generator, dropout: bool) -> list:
        """The batch entries the embedder reads; with legacy_ucg_value some are replaced by that value."""
        missing = [key for key in entry.keys if key not in batch]
        if missing:
            raise KeyError(f"The batch has no {missing[0]!r}, which embedder {index} "
                           f"({type(entry.embedder).__name__}) needs; the batch has {sorted(batch)}.")
        inputs = [batch[key] for key in entry.keys]
        if dropout and entry.drops_input:
            inputs = [replace_samples(values, entry.legacy_ucg_value, entry.ucg_rate, generator) for values in inputs]
        return inputs

    def run_embedder(self, index: int, entry: EmbedderEntry, inputs: list, generator,
                     **given: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The embedder's outputs as a tuple, without gradients unless it is trainable. An embedder that adds
        noise (`draws_noise`: the latent video conditioning) draws it from `generator`, or takes it as given
        (`noise`), and may be given its frames' `latents`; its errors are re-raised with which embedder failed."""
        draws_noise = getattr(entry.embedder, "draws_noise", False)
        if given and not draws_noise:
            raise ValueError(f"{' and '.join(given).capitalize()} given for {entry.input_key!r}, but embedder "
                             f"{index} ({type(entry.embedder).__name__}) adds no noise and encodes no frames.")
        extra = {"generator": generator, **given} if draws_noise else {}
        with nullcontext() if entry.is_trainable else torch.no_grad():
            try:
                outputs = entry.embedder(*inputs, **extra)
            except ValueError as error:
                raise ValueError(f"Embedder {index} ({type(entry.embedder).__name__}, reading "
                                 f"{', '.join(entry.keys)}): {error}") from error
        return tuple(outputs) if isinstance(outputs, (list, tuple)) else (outputs,)

    @staticmethod
    def route(index: int, entry: EmbedderEntry, embedding: torch.Tensor) -> str:
        """The conditioning key an output joins: SV4D's cond_view / cond_motion embedders keep their input key,
        every other output goes by its number of dimensions (OUTPUT_DIM2KEYS)."""
        if entry.input_key in SPECIAL_KEYS:
            return entry.input_key
        if embedding.ndim not in OUTPUT_DIM2KEYS:
            raise ValueError(f"Embedder {index} returned a {embedding.ndim}-d tensor {tuple(embedding.shape)}; "
                             "outputs must be b d (vector), b n d (crossattn) or b c h w (concat).")
        return OUTPUT_DIM2KEYS[embedding.ndim]


def drop_samples(embedding: torch.Tensor, rate: float, generator: torch.Generator | None) -> torch.Tensor:
    """Zero each sample's embedding with probability `rate` (classifier-free guidance training)."""
    keep = torch.bernoulli(torch.full((embedding.shape[0],), 1.0 - rate), generator=generator)  # b
    return append_dims(keep.to(embedding), embedding.ndim) * embedding


def replace_samples(values, value, rate: float, generator: torch.Generator | None):
    """A copy of `values` (a list or tensor, one entry per sample) with each entry replaced by `value`
    with probability `rate`; the caller's batch is left untouched."""
    drop = torch.rand(len(values), generator=generator) < rate
    values = values.clone() if isinstance(values, torch.Tensor) else list(values)
    for sample in drop.nonzero().flatten().tolist():
        values[sample] = value
    return values


def concatenate(existing: torch.Tensor, embedding: torch.Tensor, key: str, index: int) -> torch.Tensor:
    """`existing` and embedder `index`'s output joined along the key's dimension (KEY2CATDIM: features for
    vector and crossattn, channels for concat), or an error naming the embedder if the other sizes differ."""
    dim = KEY2CATDIM[key]
    other_sizes = [shape[:dim] + shape[dim + 1:] for shape in (existing.shape, embedding.shape)]
    if other_sizes[0] != other_sizes[1]:
        raise ValueError(f"Embedder {index}'s {key} output {tuple(embedding.shape)} cannot be concatenated to the "
                         f"{key} so far {tuple(existing.shape)} along dimension {dim}: the other sizes must match.")
    return torch.cat((existing, embedding), dim)
