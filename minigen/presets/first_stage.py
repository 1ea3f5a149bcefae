"""First-stage presets: the VAE of every official model and of the tiny course models, as data.

`FirstStageConfig` holds the official constructor arguments (the configs' `ddconfig`, `embed_dim`,
the encoder / decoder targets, the engine's `scale_factor` and `en_and_decode_n_samples_a_time`);
`build()` returns a `minigen.nn.autoencoder.AutoencoderKL`. Taught in notebook 05_latent_space.
Reference: `first_stage_config` in configs/inference/*.yaml and scripts/sampling/configs/*.yaml.
"""

from dataclasses import asdict, dataclass, field, replace

from minigen.nn.autoencoder import AutoencoderKL, Decoder, Encoder, VideoDecoder
from minigen.nn.codec import SCALE_FACTORS


@dataclass
class DDConfig:
    """The configs' `ddconfig`: keyword arguments shared by Encoder and Decoder."""

    ch: int = 128  # channels of the full-resolution level
    ch_mult: tuple = (1, 2, 4, 4)  # 4 levels: images are 2^3 = 8 times larger than latents
    num_res_blocks: int = 2
    attn_resolutions: tuple = ()  # no attention except in the middle block
    dropout: float = 0.0
    z_channels: int = 4
    double_z: bool = True
    resolution: int = 256
    in_channels: int = 3
    out_ch: int = 3
    attn_type: str = "vanilla"  # the configs' "vanilla-xformers" is the same maths


@dataclass
class FirstStageConfig:
    """The configs' `first_stage_config` and the engine's codec options: which VAE, and how it is called."""

    ddconfig: DDConfig = field(default_factory=DDConfig)
    embed_dim: int | None = 4  # AutoencoderKL's quant convs; None for AutoencodingEngine (SVD, SV3D, SV4D)
    encoder_target: str | None = "Encoder"  # None where the config says torch.nn.Identity (decoder only)
    decoder_target: str = "Decoder"  # or "VideoDecoder", SVD's temporal decoder
    video_kernel_size: tuple = (3, 1, 1)  # VideoDecoder only
    scale_factor: float = SCALE_FACTORS["sd"]
    en_and_decode_n_samples_a_time: int | None = None  # frames per codec call; None: all at once

    def build(self) -> AutoencoderKL:
        """The `first_stage_model.` part: encoder (or none), image or temporal decoder, quant convs when embed_dim
        is set, with the engine's scale factor and chunk size."""
        ddconfig = asdict(self.ddconfig)
        encoder = Encoder(**ddconfig) if self.encoder_target == "Encoder" else None
        if self.decoder_target == "VideoDecoder":
            decoder = VideoDecoder(**ddconfig, video_kernel_size=self.video_kernel_size)
        elif self.decoder_target == "Decoder":
            decoder = Decoder(**ddconfig)
        else:
            raise ValueError(f"decoder_target {self.decoder_target!r} is neither Decoder nor VideoDecoder.")
        return AutoencoderKL(encoder, decoder, embed_dim=self.embed_dim, scale_factor=self.scale_factor,
                             chunk_size=self.en_and_decode_n_samples_a_time)

    @classmethod
    def from_reference(cls, first_stage_config: dict, scale_factor: float = SCALE_FACTORS["sd"],
                       en_and_decode_n_samples_a_time: int | None = None) -> "FirstStageConfig":
        """Read a reference `first_stage_config` ({"target": ..., "params": ...}) and the engine's options."""
        target, params = first_stage_config["target"].rsplit(".", 1)[-1], first_stage_config.get("params", {})
        engine = {"scale_factor": scale_factor}
        engine["en_and_decode_n_samples_a_time"] = en_and_decode_n_samples_a_time
        if target in ("AutoencoderKL", "AutoencodingEngineLegacy", "AutoencoderKLInferenceWrapper"):
            return cls(ddconfig=_ddconfig(params["ddconfig"]), embed_dim=params["embed_dim"], **engine)
        if target != "AutoencodingEngine":
            raise ValueError(f"Unsupported first stage {first_stage_config['target']!r}.")
        encoder, decoder = params["encoder_config"], params["decoder_config"]
        decoder_params = dict(decoder["params"])
        video_kernel_size = decoder_params.pop("video_kernel_size", (3, 1, 1))
        if isinstance(video_kernel_size, list):
            video_kernel_size = tuple(video_kernel_size)
        return cls(
            ddconfig=_ddconfig(decoder_params),
            embed_dim=None,
            encoder_target=None if encoder["target"] == "torch.nn.Identity" else "Encoder",
            decoder_target=decoder["target"].rsplit(".", 1)[-1],
            video_kernel_size=video_kernel_size,
            **engine,
        )


def _ddconfig(params: dict) -> DDConfig:
    known = DDConfig.__dataclass_fields__
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"ddconfig keys {unknown} are not supported; known keys: {sorted(known)}.")
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in params.items()}
    return DDConfig(**values)


# --- official first stages ---------------------------------------------------------------------------

def sd_vae() -> FirstStageConfig:
    """SD 2.1 (and svd_image_decoder, svd_xt_image_decoder): AutoencoderKL, encoder + image decoder + quant convs,
    83.7 M."""
    return FirstStageConfig()


def sdxl_vae() -> FirstStageConfig:
    """SDXL: the same architecture, retrained, with its own scale factor."""
    return replace(sd_vae(), scale_factor=SCALE_FACTORS["sdxl"])


def svd_vae() -> FirstStageConfig:
    """SVD / SVD-XT: encoder + temporal VideoDecoder, no quant convs, 97.7 M.

    decoding_t = 14 frames per decoder call is the sampling script's default.
    """
    return FirstStageConfig(embed_dim=None, decoder_target="VideoDecoder", en_and_decode_n_samples_a_time=14)


def decoder_only_vae(en_and_decode_n_samples_a_time: int | None) -> FirstStageConfig:
    """SV3D / SV4D / SV4D 2.0: the checkpoints hold only the image decoder (49.5 M); images are
    encoded by the conditioner's own encoder."""
    return FirstStageConfig(embed_dim=None, encoder_target=None,
                            en_and_decode_n_samples_a_time=en_and_decode_n_samples_a_time)


# --- tiny course versions: same layouts, 8x downsampling, a few hundred thousand parameters ----------

TINY_DDCONFIG = DDConfig(ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1, resolution=64)


def tiny(official: FirstStageConfig, **changes) -> FirstStageConfig:
    """`official`'s layout with the tiny ddconfig (and `changes`)."""
    return replace(official, ddconfig=replace(TINY_DDCONFIG), **changes)


# The video, 3D and 4D course models use the worlds VAE (data/tiny_worlds_vae.safetensors, made by
# `python -m minigen.recipes.worlds`): its latents of rendered objects on white have a standard deviation of
# 2.136, so 1 / 2.136 gives the diffusion model unit-variance latents, as 0.18215 does for the SD VAE.
WORLDS_SCALE_FACTOR = 0.468


def tiny_sd_vae() -> FirstStageConfig:
    """tiny_sd's VAE: SD's layout."""
    return tiny(sd_vae())


def tiny_sdxl_vae() -> FirstStageConfig:
    """tiny_sdxl's VAE: SDXL's layout and scale factor."""
    return tiny(sdxl_vae())


def tiny_svd_vae() -> FirstStageConfig:
    """tiny_svd's VAE: the worlds VAE with SVD's temporal decoder, decoding all frames at once."""
    return tiny(svd_vae(), en_and_decode_n_samples_a_time=None, scale_factor=WORLDS_SCALE_FACTOR)


def tiny_decoder_only_vae(en_and_decode_n_samples_a_time: int | None) -> FirstStageConfig:
    """tiny_sv3d's and tiny_sv4d*'s VAE: the worlds VAE's image decoder, as their official models have."""
    return tiny(decoder_only_vae(en_and_decode_n_samples_a_time), scale_factor=WORLDS_SCALE_FACTOR)
