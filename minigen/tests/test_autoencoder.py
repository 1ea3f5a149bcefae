"""The first stage: official layouts, bad input, chunking semantics and CPU offload."""


import pytest
import torch

from minigen.nn.autoencoder import AutoencoderKL, DiagonalGaussian, VideoDecoder
from minigen.nn.codec import SCALE_FACTORS, frame_chunks
from minigen.presets import get_preset, official_preset_names, state_dict_table
from minigen.tests.official import manifest

OFFICIAL_FIRST_STAGES = [
    "sd_2_1", "sd_2_1_768", "sd_xl_base", "sd_xl_refiner", "sd_xl_turbo", "svd", "svd_xt", "svd_xt_1_1",
    "svd_image_decoder", "sv3d_u", "sv3d_p", "sv4d", "sv4d2", "sv4d2_8views",
]


def first_stage_tensors(table: dict) -> dict:
    return {key: (tuple(entry["shape"]), entry["dtype"]) for key, entry in table.items()
            if key.startswith("first_stage_model.")}


@pytest.mark.parametrize("name", OFFICIAL_FIRST_STAGES)
def test_official_first_stage_matches_its_manifest(name):
    assert name in official_preset_names()
    expected = first_stage_tensors(manifest(name)["tensors"])
    actual = first_stage_tensors(state_dict_table(name))
    assert sorted(set(expected) - set(actual)) == [], "missing keys"
    assert sorted(set(actual) - set(expected)) == [], "unexpected keys"
    assert actual == expected


def test_scale_factors_come_from_one_table():
    assert get_preset("sd_xl_base").first_stage_model.scale_factor == SCALE_FACTORS["sdxl"] == 0.13025
    for name in ("sd_2_1", "svd", "sv3d_p", "sv4d2"):
        assert get_preset(name).first_stage_model.scale_factor == SCALE_FACTORS["sd"] == 0.18215


@pytest.fixture(scope="module")
def tiny_svd() -> AutoencoderKL:
    torch.manual_seed(0)
    return get_preset("tiny_svd").first_stage_model.build().eval()


@pytest.fixture(scope="module")
def tiny_sd() -> AutoencoderKL:
    torch.manual_seed(0)
    return get_preset("tiny_sd").first_stage_model.build().eval()


def test_round_trip_shapes(tiny_sd):
    x = torch.rand(3, 3, 16, 24) * 2 - 1
    with torch.no_grad():
        z = tiny_sd.encode(x)
        assert z.shape == (3, 4, 2, 3)
        assert tiny_sd.decode(z).shape == x.shape


@pytest.mark.parametrize(("shape", "message"), [
    ((1, 3, 20, 16), r"20x16 .*divisible by 8.*16x16 or 24x16"),
    ((1, 4, 16, 16), r"3 channels, got 4"),
    ((3, 16, 16), r"flatten videos first"),
])
def test_bad_images_are_explained(tiny_sd, shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_sd.encode(torch.zeros(shape))


def test_bad_latents_and_options_are_explained(tiny_svd):
    z = torch.zeros(6, 4, 2, 2)
    with pytest.raises(ValueError, match="4 channels, got 3"):
        tiny_svd.decode(torch.zeros(6, 3, 2, 2))
    for chunk_size in (0, -1, 1.5):
        with pytest.raises(ValueError, match="chunk_size must be a whole number >= 1"):
            tiny_svd.decode(z, chunk_size=chunk_size)
    with pytest.raises(ValueError, match="num_frames=4 does not divide the batch of 6 frames"):
        tiny_svd.decode(z, num_frames=4)
    with pytest.raises(ValueError, match="whole number of clips"):
        tiny_svd.decoder(z, num_video_frames=4)


def test_decoder_only_first_stage_refuses_to_encode():
    first_stage = get_preset("tiny_sv3d").first_stage_model.build()
    with pytest.raises(ValueError, match="only a decoder"):
        first_stage.encode(torch.zeros(1, 3, 16, 16))


def test_frame_chunks_cut_each_video_from_its_start():
    assert frame_chunks(25, 14) == [slice(0, 14), slice(14, 25)]  # svd_xt with decoding_t = 14
    assert frame_chunks(5, None) == [slice(0, 5)]
    assert frame_chunks(6, 2, num_frames=3) == [slice(0, 2), slice(2, 3), slice(3, 5), slice(5, 6)]


def reference_chunked_decode(first_stage: AutoencoderKL, z: torch.Tensor, n: int) -> torch.Tensor:
    """The reference engine's loop, written out: slices of n frames, num_video_frames = slice length."""
    z = z / first_stage.scale_factor
    chunks = [z[start:start + n] for start in range(0, len(z), n)]
    return torch.cat([first_stage.decoder(chunk, num_video_frames=len(chunk)) for chunk in chunks])


def test_temporal_decode_depends_on_chunk_size_exactly_as_the_reference(tiny_svd):
    z = torch.randn(5, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        decoded = {n: tiny_svd.decode(z, chunk_size=n) for n in (1, 2, 5)}
        for n, images in decoded.items():
            torch.testing.assert_close(images, reference_chunked_decode(tiny_svd, z, n))
    assert not torch.allclose(decoded[2], decoded[5], atol=1e-4)  # frames only mix inside a chunk
    # frames 0-1 decoded together with chunk 2 equal a standalone decode of those two frames
    torch.testing.assert_close(decoded[2][:2], tiny_svd.decode(z[:2]))


def test_image_decode_and_encode_do_not_depend_on_chunk_size(tiny_sd):
    generator = torch.Generator().manual_seed(1)
    z, x = torch.randn(5, 4, 2, 2, generator=generator), torch.rand(5, 3, 16, 16, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(tiny_sd.decode(z, chunk_size=2), tiny_sd.decode(z), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(tiny_sd.encode(x, chunk_size=3), tiny_sd.encode(x), rtol=1e-4, atol=1e-5)


def test_videos_in_one_batch_are_decoded_separately(tiny_svd):
    z = torch.randn(6, 4, 2, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        together = tiny_svd.decode(z, num_frames=3)
        torch.testing.assert_close(together, torch.cat([tiny_svd.decode(z[:3]), tiny_svd.decode(z[3:])]))


def test_posterior_sample_follows_the_generator_and_kl_is_zero_for_the_prior():
    moments = torch.randn(2, 8, 3, 3)
    posterior = DiagonalGaussian(moments)
    first = posterior.sample(torch.Generator().manual_seed(3))
    torch.testing.assert_close(first, posterior.sample(torch.Generator().manual_seed(3)))
    assert not torch.equal(first, posterior.sample(torch.Generator().manual_seed(4)))
    torch.testing.assert_close(DiagonalGaussian(torch.zeros(2, 8, 3, 3)).kl(), torch.zeros(2))
    assert (posterior.kl() > 0).all()


def test_encode_can_sample_with_a_generator(tiny_sd):
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        one = tiny_sd.encode(x, sample=True, generator=torch.Generator().manual_seed(5))
        two = tiny_sd.encode(x, sample=True, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(one, two)
        assert not torch.allclose(one, tiny_sd.encode(x))


class MoveRecorder:
    """Wraps `module.to` to record where the codec is sent."""

    def __init__(self, module, monkeypatch):
        self.calls, original = [], module.to

        def recording_to(device, *args, **kwargs):
            self.calls.append(str(device))
            return original(device, *args, **kwargs)

        monkeypatch.setattr(module, "to", recording_to)


def test_offload_moves_the_codec_to_the_input_device_and_back(monkeypatch):
    first_stage = get_preset("tiny_sd").first_stage_model.build().eval()
    first_stage.offload = True
    recorder = MoveRecorder(first_stage, monkeypatch)
    with torch.no_grad():
        first_stage.decode(first_stage.encode(torch.zeros(1, 3, 16, 16)))
    assert recorder.calls == ["cpu", "cpu", "cpu", "cpu"]  # to the input's device, then back, twice


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_offload_keeps_the_codec_off_the_gpu_between_calls():
    first_stage = get_preset("tiny_svd").first_stage_model.build().eval()
    assert isinstance(first_stage.decoder, VideoDecoder)
    first_stage.offload = True
    with torch.no_grad():
        images = first_stage.decode(torch.zeros(4, 4, 2, 2, device="cuda"), chunk_size=2)
    assert images.device.type == "cuda"
    assert all(parameter.device.type == "cpu" for parameter in first_stage.parameters())
