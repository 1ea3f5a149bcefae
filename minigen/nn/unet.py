"""The UNet of Stable Diffusion 2.1 and SDXL: ResBlocks and SpatialTransformers around skip connections.

The input goes down through `input_blocks` (halving the size between levels), through the
`middle_block`, and back up through `output_blocks`, each of which also receives the matching
input-block output (the skip connection). Every block sees the timestep embedding (plus, for SDXL,
the embedded vector `y`) and the cross-attention `context`. Taught in notebook 04; corresponds to
`UNetModel` in the reference's `sgm/modules/diffusionmodules/openaimodel.py`.
`UNetLayers` and `UNetBackbone` are shared with the video UNet (`video_unet.py`).
"""

from dataclasses import dataclass

import torch
from torch import nn

from ..embeddings import timestep_embedding
from .attention import check_attention_type
from .resnet import (
    Downsample,
    ResBlock,
    TimestepEmbedSequential,
    Upsample,
    conv_nd,
    normalization,
    zero_module,
)
from .transformer import SpatialTransformer


@dataclass
class UNetLayers:
    """How a UNet makes its layers; the video UNet swaps in video versions (`VideoLayers`)."""

    time_embed_dim: int
    dropout: float
    dims: int
    use_checkpoint: bool
    use_scale_shift_norm: bool
    conv_resample: bool  # learned convolutions (True) or plain pooling / interpolation to resample
    resblock_updown: bool  # resample with ResBlock(up/down) instead of Downsample / Upsample
    context_dim: int | list[int] | None
    use_linear_in_transformer: bool
    spatial_transformer_attn_type: str
    time_downup: bool = False  # video UNets with dims=3: also halve / double the number of frames

    def resblock(self, channels: int, out_channels: int | None = None, up: bool = False,
                 down: bool = False) -> nn.Module:
        return ResBlock(channels, self.time_embed_dim, self.dropout, out_channels=out_channels,
                        dims=self.dims, use_checkpoint=self.use_checkpoint,
                        use_scale_shift_norm=self.use_scale_shift_norm, up=up, down=down)

    def transformer(self, channels: int, num_heads: int, dim_head: int, depth: int,
                    disable_self_attn: bool = False) -> nn.Module:
        return SpatialTransformer(channels, num_heads, dim_head, depth=depth, context_dim=self.context_dim,
                                  disable_self_attn=disable_self_attn,
                                  use_linear=self.use_linear_in_transformer,
                                  attn_type=self.spatial_transformer_attn_type,
                                  use_checkpoint=self.use_checkpoint)

    def downsample(self, channels: int) -> nn.Module:
        if self.resblock_updown:
            return self.resblock(channels, channels, down=True)
        return Downsample(channels, self.conv_resample, dims=self.dims, out_channels=channels,
                          third_down=self.time_downup)

    def upsample(self, channels: int) -> nn.Module:
        if self.resblock_updown:
            return self.resblock(channels, channels, up=True)
        return Upsample(channels, self.conv_resample, dims=self.dims, out_channels=channels,
                        third_up=self.time_downup)


class Timestep(nn.Module):
    """The sinusoidal embedding of a batch of scalars, as a module (for num_classes="timestep")."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return timestep_embedding(t, self.dim)


def mlp(in_features: int, time_embed_dim: int) -> nn.Sequential:
    """Linear, SiLU, Linear: how the UNet embeds its timestep and vector conditionings."""
    return nn.Sequential(
        nn.Linear(in_features, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim),
    )


def label_embedding(num_classes, adm_in_channels: int | None, model_channels: int) -> nn.Module:
    """The embedding of the extra conditioning `y`, added to the timestep embedding.

    num_classes: an int: `y` holds class labels; "continuous": `y` is one number per sample (`b 1`);
    "timestep": `y` is a scalar embedded like the timestep; "sequential": `y` is a vector of
    `adm_in_channels` numbers (SDXL's pooled text + size embeddings, SVD's fps / motion / noise
    augmentation embeddings), wrapped in one more Sequential so the keys read `label_emb.0.0.weight`.
    """
    time_embed_dim = 4 * model_channels
    if isinstance(num_classes, int):
        return nn.Embedding(num_classes, time_embed_dim)
    if num_classes == "continuous":
        return nn.Linear(1, time_embed_dim)
    if num_classes == "timestep":
        return nn.Sequential(Timestep(model_channels), mlp(model_channels, time_embed_dim))
    if num_classes == "sequential":
        if adm_in_channels is None:
            raise ValueError("num_classes='sequential' needs adm_in_channels, the size of the vector y.")
        return nn.Sequential(mlp(adm_in_channels, time_embed_dim))
    raise ValueError("num_classes must be None, a number of classes, 'continuous', 'timestep' or "
                     f"'sequential'; got {num_classes!r}.")


class UNetBackbone(nn.Module):
    """The UNet's module tree and its pass through the blocks, whatever the layers (image or video).

    Levels: one per entry of `channel_mult` (channels = model_channels * mult), each with
    `num_res_blocks[level]` ResBlocks, followed by a transformer when the level's downsampling factor
    `ds` is in `attention_resolutions`. Subclasses compute the embedding and call `run_blocks`.
    """

    def __init__(self, layers: UNetLayers, in_channels: int, model_channels: int, out_channels: int,
                 num_res_blocks: int | list[int], attention_resolutions, channel_mult, num_classes,
                 adm_in_channels: int | None, num_heads: int, num_head_channels: int,
                 transformer_depth: int | list[int], transformer_depth_middle: int | None = None,
                 disable_self_attentions: list[bool] | None = None,
                 num_attention_blocks: list[int] | None = None,
                 disable_middle_self_attn: bool = False, disable_middle_transformer: bool = False):
        super().__init__()
        if (num_heads == -1) == (num_head_channels == -1):
            raise ValueError("Set exactly one of num_heads (heads per attention layer) and num_head_channels "
                             f"(channels per head); got num_heads={num_heads}, "
                             f"num_head_channels={num_head_channels}.")
        check_attention_type(layers.spatial_transformer_attn_type)
        levels = len(channel_mult)
        num_res_blocks = per_level(num_res_blocks, levels, "num_res_blocks")
        transformer_depth = per_level(transformer_depth, levels, "transformer_depth")
        transformer_depth_middle = transformer_depth_middle or transformer_depth[-1]
        disable_self_attentions = disable_self_attentions or [False] * levels
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_classes = num_classes
        self.context_dim = layers.context_dim
        self.downsampling_factor = 2 ** (levels - 1)
        self.use_checkpoint = layers.use_checkpoint

        def heads(channels: int) -> tuple[int, int]:  # (number of heads, channels per head)
            if num_head_channels == -1:
                return num_heads, channels // num_heads
            return channels // num_head_channels, num_head_channels

        def has_transformer(ds: int, level: int, block: int) -> bool:
            # num_attention_blocks, when given, limits how many blocks of a level get one
            limited = num_attention_blocks is not None and block >= num_attention_blocks[level]
            return ds in attention_resolutions and not limited

        self.time_embed = mlp(model_channels, layers.time_embed_dim)
        if num_classes is not None:
            self.label_emb = label_embedding(num_classes, adm_in_channels, model_channels)

        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(conv_nd(layers.dims, in_channels,
                                                                           model_channels, 3, padding=1))])
        skip_channels, ch, ds = [model_channels], model_channels, 1
        for level, mult in enumerate(channel_mult):
            for block in range(num_res_blocks[level]):
                blocks = [layers.resblock(ch, mult * model_channels)]
                ch = mult * model_channels
                if has_transformer(ds, level, block):
                    blocks.append(layers.transformer(ch, *heads(ch), transformer_depth[level],
                                                     disable_self_attentions[level]))
                self.input_blocks.append(TimestepEmbedSequential(*blocks))
                skip_channels.append(ch)
            if level != levels - 1:
                self.input_blocks.append(TimestepEmbedSequential(layers.downsample(ch)))
                skip_channels.append(ch)
                ds *= 2

        middle_transformer = layers.transformer(ch, *heads(ch), transformer_depth_middle,
                                                disable_middle_self_attn)
        self.middle_block = TimestepEmbedSequential(
            layers.resblock(ch, ch),
            nn.Identity() if disable_middle_transformer else middle_transformer,
            layers.resblock(ch, ch),
        )

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for block in range(num_res_blocks[level] + 1):  # one more: it also takes the downsampler's skip
                blocks = [layers.resblock(ch + skip_channels.pop(), model_channels * mult)]
                ch = model_channels * mult
                if has_transformer(ds, level, block):
                    blocks.append(layers.transformer(ch, *heads(ch), transformer_depth[level],
                                                     disable_self_attentions[level]))
                if level and block == num_res_blocks[level]:
                    blocks.append(layers.upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*blocks))

        self.out = nn.Sequential(
            normalization(ch), nn.SiLU(), zero_module(conv_nd(layers.dims, ch, out_channels, 3, padding=1)),
        )

    def check_inputs(self, x: torch.Tensor, timesteps, context, y) -> None:
        """Clear errors for the usual mistakes, before they surface as shape errors deep in the network."""
        name = type(self).__name__
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{name} expects x of shape (batch, {self.in_channels}, height, width), got "
                             f"{tuple(x.shape)}. in_channels counts the noisy latent plus any concatenated "
                             "conditioning (e.g. 4 + 4 for the video models).")
        height, width = x.shape[2:]
        if height % self.downsampling_factor or width % self.downsampling_factor:
            halvings = self.downsampling_factor.bit_length() - 1
            raise ValueError(f"{name}: the spatial size {height}x{width} must be divisible by "
                             f"{self.downsampling_factor} (the UNet halves it {halvings} times); resize or "
                             "crop the input (latent) to a multiple of it.")
        if timesteps is None or timesteps.shape != (x.shape[0],):
            got = None if timesteps is None else tuple(timesteps.shape)
            raise ValueError(f"{name} needs timesteps of shape ({x.shape[0]},), one noise level per sample; "
                             f"got {got}.")
        if self.context_dim is not None and context is None:
            raise ValueError(f"{name} was built with context_dim={self.context_dim}: pass context, the "
                             "cross-attention conditioning of shape (batch, tokens, context_dim).")
        if y is None and self.num_classes is not None:
            raise ValueError(f"{name} needs the vector conditioning y (num_classes={self.num_classes!r}): "
                             "pass y of shape (batch, adm_in_channels).")
        if y is not None and self.num_classes is None:
            raise ValueError(f"{name} was built without num_classes, so it takes no y: drop y, or build it "
                             "with num_classes='sequential' and adm_in_channels.")
        if y is not None and y.shape[0] != x.shape[0]:
            raise ValueError(f"{name}: y has {y.shape[0]} rows for a batch of {x.shape[0]}.")

    def embedding(self, timesteps: torch.Tensor, y: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        """The vector every ResBlock receives: embedded noise level (+ embedded `y`): `b time_embed_dim`."""
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(dtype))
        return emb if y is None else emb + self.label_emb(y)

    def run_blocks(self, x: torch.Tensor, emb: torch.Tensor, **conditioning) -> torch.Tensor:
        """Down, middle, up (concatenating each skip on the channel axis), then the output layers."""
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb, **conditioning)
            skips.append(h)
        h = self.middle_block(h, emb, **conditioning)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, **conditioning)
        return self.out(h.type(x.dtype))


def per_level(value: int | list[int], levels: int, name: str) -> list[int]:
    """An int for every level, or a list with one entry per level of channel_mult."""
    if isinstance(value, int):
        return [value] * levels
    if len(value) != levels:
        raise ValueError(f"{name} has {len(value)} entries for {levels} levels (len(channel_mult)): "
                         "give one per level, or a single int.")
    return list(value)


def set_gradient_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Switch gradient checkpointing on or off in every block of `model` (ResBlocks and transformers)."""
    for module in model.modules():
        if hasattr(module, "use_checkpoint"):
            module.use_checkpoint = enabled
        if isinstance(getattr(module, "checkpoint", None), bool):  # transformer blocks, as in the reference
            module.checkpoint = enabled


class UNetModel(UNetBackbone):
    """The image UNet (SD 2.1: text `context`; SDXL: also the vector `y` via num_classes='sequential').

    forward(x `b c h w`, timesteps `b`, context `b m context_dim`, y `b adm_in_channels`)
    -> `b out_channels h w`.
    """

    def __init__(
        self,
        in_channels: int,
        model_channels: int,  # channels of the first level; the time embedding has 4x this
        out_channels: int,
        num_res_blocks: int | list[int],  # ResBlocks per level (the up path has one more)
        attention_resolutions,  # downsampling factors (1, 2, 4, ...) whose levels get transformers
        dropout: float = 0.0,
        channel_mult=(1, 2, 4, 8),  # channels of each level, in units of model_channels
        conv_resample: bool = True,
        dims: int = 2,
        num_classes: int | str | None = None,  # "sequential": a vector y (SDXL); see label_embedding
        use_checkpoint: bool = False,  # gradient checkpointing in every block
        num_heads: int = -1,
        num_head_channels: int = -1,  # channels per attention head (the official configs use 64)
        num_heads_upsample: int = -1,  # accepted for old configs; the reference ignores it too
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        transformer_depth: int | list[int] = 1,  # transformer blocks per SpatialTransformer, per level
        context_dim: int | list[int] | None = None,
        disable_self_attentions: list[bool] | None = None,
        num_attention_blocks: list[int] | None = None,
        disable_middle_self_attn: bool = False,
        disable_middle_transformer: bool = False,
        use_linear_in_transformer: bool = False,
        spatial_transformer_attn_type: str = "softmax",
        adm_in_channels: int | None = None,  # size of y with num_classes="sequential"
    ):
        layers = UNetLayers(
            time_embed_dim=4 * model_channels, dropout=dropout, dims=dims, use_checkpoint=use_checkpoint,
            use_scale_shift_norm=use_scale_shift_norm, conv_resample=conv_resample,
            resblock_updown=resblock_updown, context_dim=context_dim,
            use_linear_in_transformer=use_linear_in_transformer,
            spatial_transformer_attn_type=spatial_transformer_attn_type,
        )
        super().__init__(
            layers, in_channels, model_channels, out_channels, num_res_blocks, attention_resolutions,
            channel_mult, num_classes, adm_in_channels, num_heads, num_head_channels, transformer_depth,
            disable_self_attentions=disable_self_attentions, num_attention_blocks=num_attention_blocks,
            disable_middle_self_attn=disable_middle_self_attn,
            disable_middle_transformer=disable_middle_transformer,
        )

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | None = None,
                context: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_inputs(x, timesteps, context, y)
        return self.run_blocks(x, self.embedding(timesteps, y, x.dtype), context=context)
