"""The UNet of Stable Diffusion 2.1 and SDXL: ResBlocks and SpatialTransformers around skip connections.

The input goes down through `input_blocks` (halving the size between levels), through the
`middle_block`, and back up through `output_blocks`, each of which also receives the matching
input-block output (the skip connection). Every block sees the timestep embedding (plus, for SDXL,
the embedded vector `y`) and the cross-attention `context`. Taught in notebook 04; corresponds to
`UNetModel` in the reference's `sgm/modules/diffusionmodules/openaimodel.py`.
`UNetBackbone` builds the module tree for all three UNets: this one, the video UNet (`video_unet.py`) and
SV4D's (`sv4d_unet.py`), which differ only in the ResBlock and transformer they hand it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from ..embeddings import timestep_embedding
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


# ---- the plan: one Level per entry of channel_mult, and the layers each UNet makes its blocks of ----

@dataclass(frozen=True)
class Level:
    """One resolution of the UNet: what its blocks on the way down and on the way up are made of."""

    channels: int  # model_channels x this level's channel_mult
    num_res_blocks: int  # ResBlocks on the way down; the way up has one more, for the downsampler's skip
    downsampling: int  # how many times smaller than the input its feature maps are: 1, 2, 4, ...
    attention_blocks: int  # how many of its blocks end with a transformer (0: not in attention_resolutions)
    transformer_depth: int  # transformer blocks per transformer
    disable_self_attn: bool  # its transformers' first attention attends to the context instead of the tokens
    num_heads: int  # attention heads of its transformers, or -1: channels // num_head_channels
    num_head_channels: int  # channels per head, or -1: channels // num_heads

    def heads(self) -> tuple[int, int]:
        """(number of heads, channels per head) of the level's transformers."""
        if self.num_head_channels == -1:
            return self.num_heads, self.channels // self.num_heads
        return self.channels // self.num_head_channels, self.num_head_channels


def unet_levels(*, model_channels: int, channel_mult, num_res_blocks: int | list[int], attention_resolutions,
                num_heads: int, num_head_channels: int, transformer_depth: int | list[int],
                num_attention_blocks: list[int] | None, disable_self_attentions: list[bool] | None) -> list[Level]:
    """The levels the reference's arguments describe, outermost (full size) first."""
    if (num_heads == -1) == (num_head_channels == -1):
        raise ValueError("Set exactly one of num_heads (heads per attention layer) and num_head_channels "
                         f"(channels per head; -1 to set num_heads instead); got num_heads={num_heads}, "
                         f"num_head_channels={num_head_channels}.")
    count = len(channel_mult)
    num_res_blocks = per_level(num_res_blocks, count, "num_res_blocks")
    transformer_depth = per_level(transformer_depth, count, "transformer_depth")
    disable_self_attentions = disable_self_attentions or [False] * count
    levels = []
    for index, mult in enumerate(channel_mult):
        channels, downsampling = mult * model_channels, 2 ** index
        attention_blocks = 0
        if downsampling in attention_resolutions:  # all its blocks, or the first num_attention_blocks[index]
            attention_blocks = num_res_blocks[index] + 1
            if num_attention_blocks is not None:
                attention_blocks = num_attention_blocks[index]
        levels.append(Level(channels=channels, num_res_blocks=num_res_blocks[index], downsampling=downsampling,
                            attention_blocks=attention_blocks, transformer_depth=transformer_depth[index],
                            disable_self_attn=disable_self_attentions[index], num_heads=num_heads,
                            num_head_channels=num_head_channels))
    return levels


def per_level(value: int | list[int], levels: int, name: str) -> list[int]:
    """An int for every level, or a list with one entry per level of channel_mult."""
    if isinstance(value, int):
        return [value] * levels
    if len(value) != levels:
        raise ValueError(f"{name} has {len(value)} entries for {levels} levels (len(channel_mult)): "
                         "give one per level, or a single int.")
    return list(value)


@dataclass(frozen=True)
class UNetLayers:
    """The layer makers of one UNet, each a constructor with the UNet's layer options already bound."""

    resblock: Callable[..., nn.Module]  # (channels, out_channels=None, up=False, down=False)
    transformer: Callable[..., nn.Module]  # (channels, num_heads, dim_head, depth=..., disable_self_attn=...)
    downsample: Callable[[int], nn.Module]  # (channels): halves the size between two levels on the way down
    upsample: Callable[[int], nn.Module]  # (channels): doubles it on the way up

    def level_block(self, level: Level, in_channels: int, block: int) -> list[nn.Module]:
        """A ResBlock to the level's channels, then the level's transformer if block `block` has one."""
        modules = [self.resblock(in_channels, out_channels=level.channels)]
        if block < level.attention_blocks:
            modules.append(self.transformer(level.channels, *level.heads(), depth=level.transformer_depth,
                                            disable_self_attn=level.disable_self_attn))
        return modules


# ---- the builders, in the order the blocks run ----

def input_blocks(first_conv: nn.Module, levels: list[Level], layers: UNetLayers) -> tuple[nn.ModuleList, list[int]]:
    """The way down: the first convolution, then each level's blocks, with a downsampler between levels.

    Also returns the channels of every block's output, which the way up takes back as skip connections.
    """
    blocks = [TimestepEmbedSequential(first_conv)]
    channels = first_conv.out_channels
    skip_channels = [channels]
    for level in levels:
        for block in range(level.num_res_blocks):
            blocks.append(TimestepEmbedSequential(*layers.level_block(level, channels, block)))
            channels = level.channels
            skip_channels.append(channels)
        if level is not levels[-1]:
            blocks.append(TimestepEmbedSequential(layers.downsample(channels)))
            skip_channels.append(channels)
    return nn.ModuleList(blocks), skip_channels


def middle_block(level: Level, layers: UNetLayers, depth: int, disable_self_attn: bool,
                 with_transformer: bool) -> TimestepEmbedSequential:
    """At the innermost level: ResBlock, transformer (or nothing, with_transformer=False), ResBlock."""
    channels = level.channels
    # the transformer is made before the ResBlocks: the order modules are made in decides their seeded random weights
    transformer = nn.Identity()
    if with_transformer:
        transformer = layers.transformer(channels, *level.heads(), depth=depth, disable_self_attn=disable_self_attn)
    return TimestepEmbedSequential(layers.resblock(channels, out_channels=channels), transformer,
                                   layers.resblock(channels, out_channels=channels))


def output_blocks(levels: list[Level], skip_channels: list[int], layers: UNetLayers) -> nn.ModuleList:
    """The way up, innermost level first: each block concatenates one skip (the last one taken first) to its input,
    and an upsampler closes every level but the outermost."""
    skip_channels = list(skip_channels)
    channels = levels[-1].channels
    blocks = []
    for level in reversed(levels):
        for block in range(level.num_res_blocks + 1):
            modules = layers.level_block(level, channels + skip_channels.pop(), block)
            channels = level.channels
            if level.downsampling > 1 and block == level.num_res_blocks:
                modules.append(layers.upsample(channels))
            blocks.append(TimestepEmbedSequential(*modules))
    return nn.ModuleList(blocks)


class UNetBackbone(nn.Module):
    """The UNet's module tree and its pass through the blocks, whatever the layers (image, video, multi-view).

    `resblock` and `transformer` make the layers (see UNetLayers); the other arguments are the reference's
    (see UNetModel). Levels: one per entry of `channel_mult`, each with `num_res_blocks[level]` ResBlocks,
    each followed by a transformer when the level's downsampling factor is in `attention_resolutions`.
    Subclasses compute the embedding and call `run_blocks`.
    """

    def __init__(self, *, resblock: Callable[..., nn.Module], transformer: Callable[..., nn.Module],
                 in_channels: int, model_channels: int, out_channels: int, num_res_blocks: int | list[int],
                 attention_resolutions, channel_mult, num_heads: int, num_head_channels: int,
                 transformer_depth: int | list[int], transformer_depth_middle: int | None = None,
                 num_classes: int | str | None, adm_in_channels: int | None, context_dim, dims: int,
                 conv_resample: bool, resblock_updown: bool, time_downup: bool = False,
                 disable_self_attentions: list[bool] | None = None, num_attention_blocks: list[int] | None = None,
                 disable_middle_self_attn: bool = False, disable_middle_transformer: bool = False):
        super().__init__()
        levels = unet_levels(model_channels=model_channels, channel_mult=channel_mult, num_res_blocks=num_res_blocks,
                             attention_resolutions=attention_resolutions, num_heads=num_heads,
                             num_head_channels=num_head_channels, transformer_depth=transformer_depth,
                             num_attention_blocks=num_attention_blocks, disable_self_attentions=disable_self_attentions)
        if resblock_updown:  # resample with a ResBlock(down / up) instead of Downsample / Upsample
            downsample, upsample = partial(resblock, down=True), partial(resblock, up=True)
        else:  # time_downup: video UNets with dims=3 also halve / double the number of frames
            downsample = partial(Downsample, use_conv=conv_resample, dims=dims, third_down=time_downup)
            upsample = partial(Upsample, use_conv=conv_resample, dims=dims, third_up=time_downup)
        layers = UNetLayers(resblock, transformer, downsample, upsample)
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_classes = num_classes
        self.context_dim = context_dim
        self.downsampling_factor = levels[-1].downsampling

        self.time_embed = mlp(model_channels, 4 * model_channels)
        if num_classes is not None:
            self.label_emb = label_embedding(num_classes, adm_in_channels, model_channels)
        first_conv = conv_nd(dims, in_channels, model_channels, 3, padding=1)
        self.input_blocks, skip_channels = input_blocks(first_conv, levels, layers)
        self.middle_block = middle_block(levels[-1], layers, transformer_depth_middle or levels[-1].transformer_depth,
                                         disable_middle_self_attn, with_transformer=not disable_middle_transformer)
        self.output_blocks = output_blocks(levels, skip_channels, layers)
        channels = levels[0].channels
        self.out = nn.Sequential(
            normalization(channels), nn.SiLU(), zero_module(conv_nd(dims, channels, out_channels, 3, padding=1)),
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


def set_gradient_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Switch gradient checkpointing on or off in every block of `model` (ResBlocks and transformers)."""
    for module in model.modules():
        if hasattr(module, "use_checkpoint"):
            module.use_checkpoint = enabled


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
        conv_resample: bool = True,  # learned convolutions (True) or plain pooling / interpolation to resample
        dims: int = 2,  # 2: images `b c h w`; 3: volumes `b c t h w`
        num_classes: int | str | None = None,  # "sequential": a vector y (SDXL); see label_embedding
        use_checkpoint: bool = False,  # gradient checkpointing in every block
        num_heads: int = -1,  # heads per attention layer, with num_head_channels=-1
        num_head_channels: int = 64,  # channels per attention head (every official config: 64), or -1
        use_scale_shift_norm: bool = False,  # the embedding scales and shifts the ResBlocks' second norm
        resblock_updown: bool = False,  # resample with ResBlock(up / down) instead of Downsample / Upsample
        transformer_depth: int | list[int] = 1,  # transformer blocks per SpatialTransformer, per level
        context_dim: int | list[int] | None = None,  # size of the cross-attention tokens; None: no context
        disable_self_attentions: list[bool] | None = None,  # per level: attn1 attends to the context instead
        num_attention_blocks: list[int] | None = None,  # per level: how many blocks get a transformer
        disable_middle_self_attn: bool = False,
        disable_middle_transformer: bool = False,  # the middle block without its transformer
        use_linear_in_transformer: bool = False,  # project in and out of the transformers with Linear, not 1x1 conv
        spatial_transformer_attn_type: str = "softmax",  # any of the reference's four: one attention kernel
        adm_in_channels: int | None = None,  # size of y with num_classes="sequential"
    ):
        resblock = partial(ResBlock, emb_channels=4 * model_channels, dropout=dropout, dims=dims,
                           use_checkpoint=use_checkpoint, use_scale_shift_norm=use_scale_shift_norm)
        transformer = partial(SpatialTransformer, context_dim=context_dim, use_linear=use_linear_in_transformer,
                              attn_type=spatial_transformer_attn_type, use_checkpoint=use_checkpoint)
        super().__init__(
            resblock=resblock, transformer=transformer, in_channels=in_channels, model_channels=model_channels,
            out_channels=out_channels, num_res_blocks=num_res_blocks, attention_resolutions=attention_resolutions,
            channel_mult=channel_mult, num_heads=num_heads, num_head_channels=num_head_channels,
            transformer_depth=transformer_depth, num_classes=num_classes, adm_in_channels=adm_in_channels,
            context_dim=context_dim, dims=dims, conv_resample=conv_resample, resblock_updown=resblock_updown,
            disable_self_attentions=disable_self_attentions, num_attention_blocks=num_attention_blocks,
            disable_middle_self_attn=disable_middle_self_attn, disable_middle_transformer=disable_middle_transformer,
        )

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | None = None,
                context: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_inputs(x, timesteps, context, y)
        return self.run_blocks(x, self.embedding(timesteps, y, x.dtype), context=context)
