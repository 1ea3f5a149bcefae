"""The UNet's convolutional pieces: ResBlock, Downsample, Upsample and the sequential that feeds them.

A ResBlock is two 3x3 convolutions with a skip connection, with the timestep embedding added (or
applied as scale and shift) between them. Taught in notebook 04; corresponds to `ResBlock`,
`Downsample`, `Upsample` and `TimestepEmbedSequential` in the reference's
`sgm/modules/diffusionmodules/openaimodel.py` and to the helpers in `.../diffusionmodules/util.py`.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    """A 1D, 2D or 3D convolution: the same UNet code builds image (2) and video-time (3) layers."""
    convolutions = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
    if dims not in convolutions:
        raise ValueError(f"dims must be 1, 2 or 3, got {dims}.")
    return convolutions[dims](*args, **kwargs)


def avg_pool_nd(dims: int, *args, **kwargs) -> nn.Module:
    """A 1D, 2D or 3D average pooling: Downsample's resampling without a convolution."""
    pools = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
    if dims not in pools:
        raise ValueError(f"dims must be 1, 2 or 3, got {dims}.")
    return pools[dims](*args, **kwargs)


def zero_module(module: nn.Module) -> nn.Module:
    """Set every parameter of `module` to zero and return it.

    Used on the last layer of each residual branch, so that a freshly initialised block is the identity.
    """
    for parameter in module.parameters():
        parameter.detach().zero_()
    return module


class GroupNorm32(nn.GroupNorm):
    """GroupNorm that always normalises in float32 (and returns the input dtype): stable under fp16.

    Its affine parameters are used in float32 too, so a network whose weights were cast to fp16 / bf16
    (rather than run under autocast, as the reference does) still mixes no dtypes. On the CPU, PyTorch's kernel
    takes a bf16 / fp16 input with float32 parameters and normalises it in float32 itself: the same arithmetic
    without a float32 copy of the activations (4x faster on bf16, and no extra memory).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16):
            return F.group_norm(x, self.num_groups, weight, bias, self.eps)
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).type(x.dtype)


def normalization(channels: int) -> GroupNorm32:
    """The UNet's normalisation layer: 32 groups."""
    return GroupNorm32(32, channels)


def maybe_checkpoint(function, *args, enabled: bool):
    """`function(*args)`; when `enabled` and gradients are recorded, recomputed in backward, not stored.

    Gradient checkpointing trades compute for memory: only the inputs are kept for backward.
    """
    if enabled and torch.is_grad_enabled():
        return checkpoint(function, *args, use_reentrant=False)
    return function(*args)


class TimestepEmbedSequential(nn.Sequential):
    """nn.Sequential whose layers receive the conditioning they ask for, by name.

    A layer lists the inputs it reads in a class attribute `conditioning_inputs`, a tuple of its forward's
    keyword names, which are the UNets' own names for them; layers without it (convolutions, Downsample,
    Upsample) get `x` alone. The routing table of every UNet (`unet.py`, `video_unet.py`, `sv4d_unet.py`):

    | layer                   | reads (besides x)                                              |
    |-------------------------|----------------------------------------------------------------|
    | ResBlock                | emb                                                            |
    | VideoResBlock           | emb, num_video_frames, image_only_indicator                    |
    | ResBlockWithTime        | emb, num_video_frames                                          |
    | SpatialTransformer      | context                                                        |
    | SpatialVideoTransformer | context, time_context, num_video_frames, image_only_indicator  |
    | MultiviewTransformer    | context, cond_view, emb, image_only_indicator                  |

    `emb` is the embedding of the noise level plus the vector conditioning y (per frame in the video
    UNets; MultiviewTransformer reads the camera angles from it), `context` the cross-attention tokens,
    `time_context` what SVD's temporal blocks may attend to, `num_video_frames` the frames per video of
    the `(b t)` batch, `image_only_indicator` (b t) which frames are still images, and `cond_view` the
    latents of SV4D's reference views (passed on as an extra keyword).
    """

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None,
                image_only_indicator: torch.Tensor | None = None, time_context: torch.Tensor | None = None,
                num_video_frames: int | None = None, **extra_conditioning) -> torch.Tensor:
        conditioning = dict(emb=emb, context=context, image_only_indicator=image_only_indicator,
                            time_context=time_context, num_video_frames=num_video_frames, **extra_conditioning)
        for layer in self:
            wanted = getattr(layer, "conditioning_inputs", ())
            x = layer(x, **{name: conditioning[name] for name in wanted})
        return x


def check_channels(x: torch.Tensor, channels: int, layer: str) -> None:
    """Fail with a message naming `layer` when x does not have `channels` channels in dim 1."""
    if x.shape[1] != channels:
        raise ValueError(f"{layer} expects {channels} channels in dim 1, got shape {tuple(x.shape)}.")


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by `scale_factor`, then (if `use_conv`) a convolution.

    With dims=3 the tensor is `b c t h w`: only h and w grow, unless `third_up` also grows t.
    """

    def __init__(self, channels: int, use_conv: bool, dims: int = 2, out_channels: int | None = None,
                 padding: int = 1, third_up: bool = False, kernel_size: int = 3, scale_factor: int = 2):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.dims = dims
        self.third_up = third_up
        self.scale_factor = scale_factor
        if use_conv:
            self.conv = conv_nd(dims, channels, self.out_channels, kernel_size, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_channels(x, self.channels, "Upsample")
        if self.dims == 3:
            time_factor = self.scale_factor if self.third_up else 1
            scale = (time_factor, self.scale_factor, self.scale_factor)
        else:
            scale = self.scale_factor
        x = F.interpolate(x, scale_factor=scale, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """Halve the spatial size with a stride-2 3x3 convolution (`use_conv`) or 2x2 average pooling.

    With dims=3 the tensor is `b c t h w`: only h and w shrink, unless `third_down` also halves t.
    """

    def __init__(self, channels: int, use_conv: bool, dims: int = 2, out_channels: int | None = None,
                 padding: int = 1, third_down: bool = False):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        stride = 2 if dims != 3 else ((2, 2, 2) if third_down else (1, 2, 2))
        if use_conv:
            self.op = conv_nd(dims, channels, self.out_channels, 3, stride=stride, padding=padding)
        elif self.out_channels != channels:
            raise ValueError(f"Downsample without a convolution cannot change channels ({channels} -> "
                             f"{self.out_channels}); pass use_conv=True or out_channels={channels}.")
        else:
            self.op = avg_pool_nd(dims, kernel_size=stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_channels(x, self.channels, "Downsample")
        return self.op(x)


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding `emb`.

    out = skip(x) + out_layers(in_layers(x) + emb_layers(emb)), where in_layers and out_layers are
    GroupNorm, SiLU, (dropout,) convolution. With `use_scale_shift_norm` the embedding instead gives a
    scale and a shift applied right after the second GroupNorm. `up` / `down` resample inside the block.
    """

    conditioning_inputs = ("emb",)

    def __init__(
        self,
        channels: int,  # input channels
        emb_channels: int,  # size of the timestep embedding
        dropout: float,
        out_channels: int | None = None,  # defaults to `channels`
        use_conv: bool = False,  # when channels change: a kernel_size skip convolution instead of 1x1
        use_scale_shift_norm: bool = False,
        dims: int = 2,  # 2 for images `b c h w`, 3 for video `b c t h w`
        use_checkpoint: bool = False,
        up: bool = False,
        down: bool = False,
        kernel_size: int | Sequence[int] = 3,  # e.g. (3, 1, 1) mixes along t only
        exchange_temb_dims: bool = False,  # emb is `b t c` per frame for a `b c t h w` input
        skip_t_emb: bool = False,  # no timestep embedding at all (the autoencoder's temporal blocks)
    ):
        super().__init__()
        if skip_t_emb and use_scale_shift_norm:
            raise ValueError("ResBlock: use_scale_shift_norm needs the timestep embedding; "
                             "it cannot be combined with skip_t_emb=True.")
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_checkpoint = use_checkpoint
        self.use_scale_shift_norm = use_scale_shift_norm
        self.exchange_temb_dims = exchange_temb_dims
        self.skip_t_emb = skip_t_emb
        padding = [k // 2 for k in kernel_size] if isinstance(kernel_size, Sequence) else kernel_size // 2

        self.in_layers = nn.Sequential(
            normalization(channels), nn.SiLU(),
            conv_nd(dims, channels, self.out_channels, kernel_size, padding=padding),
        )
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False, dims), Upsample(channels, False, dims)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False, dims), Downsample(channels, False, dims)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        if not skip_t_emb:
            emb_out_channels = 2 * self.out_channels if use_scale_shift_norm else self.out_channels
            self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out_channels))
        self.out_layers = nn.Sequential(
            normalization(self.out_channels), nn.SiLU(), nn.Dropout(p=dropout),
            zero_module(conv_nd(dims, self.out_channels, self.out_channels, kernel_size, padding=padding)),
        )
        if self.out_channels == channels:
            self.skip_connection = nn.Identity()
        elif use_conv:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, kernel_size, padding=padding)
        else:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        check_channels(x, self.channels, "ResBlock")
        return maybe_checkpoint(self._forward, x, emb, enabled=self.use_checkpoint)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        if self.updown:  # resample between the first SiLU and the first convolution
            h = self.h_upd(self.in_layers[:-1](x))
            h = self.in_layers[-1](h)
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        if self.skip_t_emb:
            return self.skip_connection(x) + self.out_layers(h)
        emb_out = self.emb_layers(emb).type(h.dtype)  # b c, or b t c with exchange_temb_dims
        emb_out = emb_out.reshape(*emb_out.shape, *([1] * (h.ndim - emb_out.ndim)))  # broadcast over space
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            if self.exchange_temb_dims:
                emb_out = rearrange(emb_out, "b t c ... -> b c t ...")
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h
