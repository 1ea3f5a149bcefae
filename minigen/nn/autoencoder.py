"""The first stage: the KL autoencoder (VAE) between images and the latents diffusion works on.

Encoder and Decoder are stacks of GroupNorm/SiLU ResNet blocks that halve (double) the image
size once per level, with single-head attention in the middle; the encoder's output is a
diagonal Gaussian over latents. SVD's VideoDecoder adds temporal mixing to every decoder block.
AutoencoderKL wires them up with the scale factor, chunked encode/decode and CPU offload.
Taught in notebook 05_latent_space. Reference: sgm/modules/diffusionmodules/model.py,
sgm/modules/autoencoding/temporal_ae.py, sgm/models/autoencoder.py,
sgm/modules/distributions/distributions.py.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .attention import AttentionLayer
from .codec import SCALE_FACTORS, check_frames, frame_chunks, placed_on
from .resnet import ResBlock
from .video import add_mix_factor, blend_weight


def group_norm(channels: int) -> nn.GroupNorm:
    """The autoencoder's normalisation: 32 groups, eps 1e-6 (the UNet's GroupNorm32 uses PyTorch's 1e-5)."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6)


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 3x3 convolution that keeps the size (padding 1)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


class ResnetBlock(nn.Module):
    """norm -> SiLU -> conv, twice, plus a shortcut (a 1x1 conv when the channel count changes)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        shortcut = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return shortcut + h


class AttnBlock(AttentionLayer):
    """Single-head self-attention between all pixels of one frame, added to the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = x.shape[2]
        h = self.norm(x)
        q, k, v = (rearrange(conv(h), "b c h w -> b 1 (h w) c") for conv in (self.q, self.k, self.v))
        h = self.attend(q, k, v)  # softmax(q k^T / sqrt(c)) v
        return x + self.proj_out(rearrange(h, "b 1 (h w) c -> b c h w", h=height))


def make_attn(channels: int, attn_type: str) -> nn.Module:
    """The configs' attention types; the xformers one is the same maths as "vanilla"."""
    if attn_type in ("vanilla", "vanilla-xformers"):
        return AttnBlock(channels)
    if attn_type == "none":
        return nn.Identity()
    raise ValueError(f"attn_type {attn_type!r} is not supported: use vanilla, vanilla-xformers or none.")


class Downsample(nn.Module):
    """Halve height and width: a stride-2 conv after padding right and bottom (or 2x2 average pooling)."""

    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2) if with_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is None:
            return F.avg_pool2d(x, kernel_size=2)
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Double height and width: nearest-neighbour upsampling, then a 3x3 conv."""

    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        self.conv = conv3x3(channels, channels) if with_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x if self.conv is None else self.conv(x)


class Middle(nn.Module):
    """ResNet block, attention, ResNet block at the lowest resolution (keys `mid.block_1`, ...)."""

    def __init__(self, block_1: nn.Module, attn_1: nn.Module, block_2: nn.Module):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = block_1, attn_1, block_2

    def forward(self, h: torch.Tensor, **frames) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h, **frames)), **frames)


def make_level(blocks: list[nn.Module], attns: list[nn.Module], **resample: nn.Module | None) -> nn.Module:
    """One resolution level: `block.N`, `attn.N` and its `downsample` / `upsample` (None where there is none)."""
    level = nn.Module()
    level.block, level.attn = nn.ModuleList(blocks), nn.ModuleList(attns)
    for name, module in resample.items():
        setattr(level, name, module)
    return level


def run_level(level: nn.Module, h: torch.Tensor, **frames) -> torch.Tensor:
    """The level's blocks, each followed by its attention when the level has attention."""
    for i, block in enumerate(level.block):
        h = block(h, **frames)
        if len(level.attn):
            h = level.attn[i](h)
    return h


class Encoder(nn.Module):
    """Image `(b t) in_channels H W` -> moments `(b t) 2*z_channels H/f W/f`, f = 2^(len(ch_mult)-1).

    Keyword arguments are the configs' `ddconfig`; `out_ch` belongs to the decoder and is ignored.
    """

    def __init__(
        self,
        *,
        ch: int,  # channels of the first level; level i has ch * ch_mult[i]
        ch_mult: tuple = (1, 2, 4, 8),
        num_res_blocks: int,  # ResNet blocks per level
        attn_resolutions: tuple,  # feature-map sizes (relative to `resolution`) that get attention
        in_channels: int,  # 3 for RGB
        resolution: int,  # nominal image size; only used to place attention
        z_channels: int,  # latent channels (4 for every official model)
        double_z: bool = True,  # output mean and log-variance (2 * z_channels)
        dropout: float = 0.0,
        resamp_with_conv: bool = True,
        attn_type: str = "vanilla",
        out_ch: int | None = None,
    ):
        super().__init__()
        self.in_channels, self.z_channels = in_channels, z_channels
        self.downsampling_factor = 2 ** (len(ch_mult) - 1)
        self.conv_in = conv3x3(in_channels, ch)
        block_in, size = ch, resolution
        self.down = nn.ModuleList()
        for i, mult in enumerate(ch_mult):
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(block_in, ch * mult, dropout))
                block_in = ch * mult
                if size in attn_resolutions:
                    attns.append(make_attn(block_in, attn_type))
            downsample = None
            if i != len(ch_mult) - 1:  # the last level keeps its size
                downsample = Downsample(block_in, resamp_with_conv)
                size //= 2
            self.down.append(make_level(blocks, attns, downsample=downsample))
        self.mid = Middle(
            ResnetBlock(block_in, block_in, dropout),
            make_attn(block_in, attn_type),
            ResnetBlock(block_in, block_in, dropout),
        )
        self.norm_out = group_norm(block_in)
        self.conv_out = conv3x3(block_in, 2 * z_channels if double_z else z_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = run_level(level, h)
            if level.downsample is not None:
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latents `(b t) z_channels h w` -> image `(b t) out_ch h*f w*f`, the encoder in reverse.

    Keyword arguments are the configs' `ddconfig`; `in_channels` and `double_z` belong to the
    encoder and are ignored. Subclasses change the blocks through `resnet_block` / `output_conv`.
    """

    def __init__(
        self,
        *,
        ch: int,
        out_ch: int,  # 3 for RGB
        ch_mult: tuple = (1, 2, 4, 8),
        num_res_blocks: int,  # the decoder has num_res_blocks + 1 blocks per level
        attn_resolutions: tuple,
        resolution: int,
        z_channels: int,
        dropout: float = 0.0,
        resamp_with_conv: bool = True,
        attn_type: str = "vanilla",
        in_channels: int | None = None,
        double_z: bool | None = None,
    ):
        super().__init__()
        self.z_channels = z_channels
        block_in, size = ch * ch_mult[-1], resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = conv3x3(z_channels, block_in)
        self.mid = Middle(
            self.resnet_block(block_in, block_in, dropout),
            make_attn(block_in, attn_type),
            self.resnet_block(block_in, block_in, dropout),
        )
        levels = []
        for i in reversed(range(len(ch_mult))):
            blocks, attns = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(self.resnet_block(block_in, ch * ch_mult[i], dropout))
                block_in = ch * ch_mult[i]
                if size in attn_resolutions:
                    attns.append(make_attn(block_in, attn_type))
            upsample = None
            if i != 0:  # the full-resolution level keeps its size
                upsample = Upsample(block_in, resamp_with_conv)
                size *= 2
            levels.insert(0, make_level(blocks, attns, upsample=upsample))
        self.up = nn.ModuleList(levels)  # up.0 is the full-resolution level, as in the checkpoints
        self.norm_out = group_norm(block_in)
        self.conv_out = self.output_conv(block_in, out_ch)

    def resnet_block(self, in_channels: int, out_channels: int, dropout: float) -> nn.Module:
        """The decoder's ResNet block; VideoDecoder's mixes frames."""
        return ResnetBlock(in_channels, out_channels, dropout)

    def output_conv(self, in_channels: int, out_channels: int) -> nn.Module:
        """The last convolution, to out_ch channels; VideoDecoder's mixes frames."""
        return conv3x3(in_channels, out_channels)

    def forward(self, z: torch.Tensor, **frames) -> torch.Tensor:
        """`frames` (the temporal decoder's `num_video_frames`) goes to every ResNet block and the output conv."""
        h = self.mid(self.conv_in(z), **frames)
        for level in reversed(self.up):
            h = run_level(level, h, **frames)
            if level.upsample is not None:
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)), **frames)


class VideoResnetBlock(ResnetBlock):
    """The temporal decoder's block (the reference's temporal_ae.VideoResBlock): a ResnetBlock on
    every frame, then a 3D ResBlock (`time_stack`) that mixes neighbouring frames, blended by alpha
    from `blend_weight` ("fixed" or "learned": the decoder has no still-image frames).
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float, video_kernel_size, alpha: float,
                 merge_strategy: str):
        super().__init__(in_channels, out_channels, dropout)
        self.time_stack = ResBlock(out_channels, emb_channels=0, dropout=dropout, dims=3,
                                   kernel_size=video_kernel_size, skip_t_emb=True)
        # quirk: the blend logit sits on the block itself (key `<block>.mix_factor`), not in a time_mixer
        add_mix_factor(self, merge_strategy, alpha, strategies=("fixed", "learned"))

    def forward(self, x: torch.Tensor, num_video_frames: int) -> torch.Tensor:
        x = rearrange(super().forward(x), "(b t) c h w -> b c t h w", t=num_video_frames)
        alpha = blend_weight(self.mix_factor, self.merge_strategy)
        # quirk: alpha weights the temporal result here (the UNet's blocks give it to the spatial one), as trained
        x = alpha * self.time_stack(x) + (1.0 - alpha) * x
        return rearrange(x, "b c t h w -> (b t) c h w")


class AE3DConv(nn.Conv2d):
    """The temporal decoder's output conv: a 2D conv on every frame, then a 3D conv (`time_mix_conv`)."""

    def __init__(self, in_channels: int, out_channels: int, video_kernel_size):
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1)
        kernel = video_kernel_size if isinstance(video_kernel_size, list | tuple) else [video_kernel_size] * 3
        self.time_mix_conv = nn.Conv3d(out_channels, out_channels, kernel, padding=[k // 2 for k in kernel])

    def forward(self, x: torch.Tensor, num_video_frames: int) -> torch.Tensor:
        x = rearrange(super().forward(x), "(b t) c h w -> b c t h w", t=num_video_frames)
        return rearrange(self.time_mix_conv(x), "b c t h w -> (b t) c h w")


class VideoDecoder(Decoder):
    """SVD's temporal decoder: the Decoder with every ResNet block and the output conv mixing frames.

    `forward(z, num_video_frames)` decodes `(b t)` latents as b clips of t = `num_video_frames` frames; frames
    of different clips never mix. Only the official `time_mode="conv-only"` (no temporal
    attention) is implemented.
    """

    def __init__(self, *, video_kernel_size=3, alpha: float = 0.0, merge_strategy: str = "learned",
                 time_mode: str = "conv-only", **ddconfig):
        if time_mode != "conv-only":
            raise ValueError(f"time_mode {time_mode!r} is not implemented (official weights: conv-only).")
        # read by resnet_block / output_conv, which Decoder.__init__ calls
        self.video_kernel_size, self.alpha, self.merge_strategy = video_kernel_size, alpha, merge_strategy
        super().__init__(**ddconfig)

    def resnet_block(self, in_channels: int, out_channels: int, dropout: float) -> nn.Module:
        return VideoResnetBlock(in_channels, out_channels, dropout, self.video_kernel_size, self.alpha,
                                self.merge_strategy)

    def output_conv(self, in_channels: int, out_channels: int) -> nn.Module:
        return AE3DConv(in_channels, out_channels, self.video_kernel_size)

    def forward(self, z: torch.Tensor, num_video_frames: int) -> torch.Tensor:
        if num_video_frames < 1 or len(z) % num_video_frames:
            raise ValueError(f"VideoDecoder: {len(z)} latent frames are not a whole number of clips of "
                             f"num_video_frames={num_video_frames} frames.")
        return super().forward(z, num_video_frames=num_video_frames)


class DiagonalGaussian:
    """The posterior q(z | x) = N(mean, diag(exp(logvar))) read from the encoder's moments."""

    def __init__(self, moments: torch.Tensor):
        self.mean, logvar = moments.chunk(2, dim=1)  # (b t) 2z h w -> two (b t) z h w
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * noise; the same generator state gives the same sample."""
        mean = self.mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        """The most likely latents: the mean."""
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per sample, summed over channels and pixels: shape (b t,)."""
        return 0.5 * (self.mean**2 + self.std**2 - 1.0 - self.logvar).sum(dim=(1, 2, 3))


class AutoencoderKL(nn.Module):
    """The first stage as the diffusion engine uses it: images in [-1, 1] <-> scaled latents.

    `encode` returns latents already multiplied by `scale_factor` and `decode` divides by it, so
    callers only ever see the standardised latents the diffusion model works on. The official
    layouts differ in what they hold: SD / SDXL / svd_image_decoder have `quant_conv` and
    `post_quant_conv` (1x1 convs, `embed_dim` given); SVD has an encoder and the temporal
    VideoDecoder and no quant convs; SV3D / SV4D checkpoints hold only a decoder (`encoder=None`).
    """

    def __init__(
        self,
        encoder: Encoder | None,
        decoder: Decoder,
        embed_dim: int | None = None,  # latent channels after quant_conv; None: no quant convs
        scale_factor: float = SCALE_FACTORS["sd"],
        chunk_size: int | None = None,  # default frames per codec call (en_and_decode_n_samples_a_time)
        offload: bool = False,  # keep the weights on the CPU between calls
    ):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.quant_conv = self.post_quant_conv = None
        if embed_dim is not None:
            self.quant_conv = nn.Conv2d(2 * decoder.z_channels, 2 * embed_dim, kernel_size=1)
            self.post_quant_conv = nn.Conv2d(embed_dim, decoder.z_channels, kernel_size=1)
        self.latent_channels = decoder.z_channels if embed_dim is None else embed_dim
        self.scale_factor, self.chunk_size, self.offload = scale_factor, chunk_size, offload

    def posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """q(z | x) for images `(b t) c H W` in [-1, 1], unscaled, in one pass."""
        if self.encoder is None:
            raise ValueError("This first stage holds only a decoder (as the SV3D / SV4D checkpoints do).")
        check_frames(x, self.encoder.in_channels, "images", self.encoder.downsampling_factor)
        moments = self.encoder(x.to(self.dtype))
        return DiagonalGaussian(moments if self.quant_conv is None else self.quant_conv(moments))

    def encode(
        self,
        x: torch.Tensor,
        chunk_size: int | None = None,
        sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Images `(b t) c H W` -> scaled latents `(b t) 4 H/8 W/8`, at most `chunk_size` frames per pass.

        The posterior's mode by default (what the video models' conditioning uses); `sample=True`
        draws from it instead. The encoder works frame by frame, so chunking only saves memory.
        """
        chunk_size = self.chunk_size if chunk_size is None else chunk_size
        with placed_on(self, x.device, self.offload):
            latents = []
            for chunk in frame_chunks(len(x), chunk_size):
                posterior = self.posterior(x[chunk])
                latents.append(posterior.sample(generator) if sample else posterior.mode())
        return self.scale_factor * torch.cat(latents)

    def decode(
        self, z: torch.Tensor, chunk_size: int | None = None, num_frames: int | None = None
    ) -> torch.Tensor:
        """Scaled latents `(b t) 4 h w` -> images `(b t) 3 8h 8w`, at most `chunk_size` frames per pass.

        With the temporal VideoDecoder the chunk size changes the result, not only the memory:
        the decoder mixes frames within the chunk it is given (`num_video_frames` = the chunk's length),
        so frames in different chunks never see each other. This is what the reference engine
        does and what the official SVD samples were made with (decoding_t=14 for 25 frames means
        chunks of 14 and 11). `chunk_size=None` uses the preset's `en_and_decode_n_samples_a_time`
        (None there too: all frames at once).

        `num_frames` is the length of each video in the batch (default: the batch is one video).
        The reference slices the flat batch, so with several videos and a chunk size that does not
        divide their length one chunk would straddle two videos and blend them; minigen chunks each
        video on its own, which is identical whenever the batch holds one video (every official
        sampling script) or the chunk size divides num_frames.
        """
        check_frames(z, self.latent_channels, "latents")
        chunk_size = self.chunk_size if chunk_size is None else chunk_size
        z = z.to(self.dtype) / self.scale_factor
        chunks = frame_chunks(len(z), chunk_size, num_frames)
        with placed_on(self, z.device, self.offload):
            return torch.cat([self._decode_chunk(z[chunk]) for chunk in chunks])

    def _decode_chunk(self, z: torch.Tensor) -> torch.Tensor:
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        if isinstance(self.decoder, VideoDecoder):
            return self.decoder(z, num_video_frames=len(z))
        return self.decoder(z)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights, which inputs are cast to."""
        return next(self.parameters()).dtype
