"""SVD and SV3D pipelines end to end on the tiny presets: every option, reproducibility, loading, bad input.

Runs take a fraction of a second each (tiny networks, 64 x 64 images, 2-3 frames, 2 steps). That they
compute what the reference computes is the golden cases' job (pipe_svd_tiny, pipe_sv3d_p_tiny).
"""

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from minigen.diffusion import LinearPredictionGuider, TrianglePredictionGuider
from minigen.nn.autoencoder import AutoencoderKL
from minigen.pipelines import common
from minigen.pipelines.common import identify_preset
from minigen.pipelines.engine import DiffusionEngine
from minigen.pipelines.sv3d import SV3DPipeline
from minigen.pipelines.svd import SVDPipeline
from minigen.pipelines.video_common import ImageToVideoPipeline
from minigen.preprocess import prepare_object_image
from minigen.presets.conditioners import sv3d, tiny
from minigen.presets.first_stage import TINY_DDCONFIG
from minigen.tests.conformance.cases import Case
from minigen.tests.conformance.pipelines import run_pipeline

FAST = {"num_frames": 3, "num_steps": 2, "progress": False}
SV3D_FAST = {"num_steps": 2, "progress": False}  # the tiny orbit's 5 frames


def picture(size=64, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random((size, size, 3)) * 255).astype(np.uint8)


def object_photo(size=64) -> np.ndarray:
    """RGBA: a red square on a transparent background."""
    image = np.zeros((size, size, 4), np.uint8)
    image[20:40, 16:36] = (200, 40, 40, 255)
    return image


def perturbed(pipe: ImageToVideoPipeline) -> ImageToVideoPipeline:
    """Fresh networks end in zero-initialised layers (the output would ignore every condition): add 0.02 noise
    to every weight, as the golden cases do, so that each input and option shows in the frames."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in pipe.engine.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.02 * torch.randn(tensor.shape, generator=generator).to(tensor.dtype))
    return pipe


def tiny_pipeline(cls, name: str = "tiny_svd", **options) -> ImageToVideoPipeline:
    torch.manual_seed(0)
    return perturbed(cls.from_preset(name, **options))


@pytest.fixture(scope="module")
def svd():
    return tiny_pipeline(SVDPipeline)


@pytest.fixture(scope="module")
def sv3d_p():
    return tiny_pipeline(SV3DPipeline, "tiny_sv3d")


@pytest.fixture(scope="module")
def svd_frames(svd):
    return svd(picture(), **FAST)


# ---------------------------------------------------------------- defaults


def test_defaults_are_the_official_ones():
    expected = {  # (num_frames, num_steps, guider, max, min): sampling script + scripts/sampling/configs/*.yaml
        "svd": (14, 25, LinearPredictionGuider, 2.5, 1.0),
        "svd_image_decoder": (14, 25, LinearPredictionGuider, 2.5, 1.0),
        "svd_xt": (25, 30, LinearPredictionGuider, 3.0, 1.5),
        "svd_xt_1_1": (25, 30, LinearPredictionGuider, 3.0, 1.5),
        "svd_xt_image_decoder": (25, 30, LinearPredictionGuider, 3.0, 1.5),
        "sv3d_u": (21, 50, TrianglePredictionGuider, 2.5, 1.0),
        "sv3d_p": (21, 50, TrianglePredictionGuider, 2.5, 1.0),
    }
    defaults = {**SVDPipeline.DEFAULTS, **SV3DPipeline.DEFAULTS}
    for name, values in expected.items():
        d = defaults[name]
        assert (d.num_frames, d.num_steps, d.guider, d.cfg, d.min_cfg) == values, name
        assert d.sigma_max == 700.0
    assert {d.cond_aug for name, d in defaults.items() if name.startswith("sv3d")} == {1e-5}
    assert SVDPipeline.DEFAULTS["svd"].cond_aug == 0.02 and SVDPipeline.DEFAULTS["svd"].image_size == (576, 1024)
    assert SV3DPipeline.DEFAULTS["sv3d_p"].image_size == (576, 576)


def test_sampler_has_the_configured_guider(svd, sv3d_p):
    sampler = svd.make_sampler(2, num_frames=3, min_cfg=1.2, cfg=2.0, progress=False)
    torch.testing.assert_close(sampler.guider.frame_scales, torch.tensor([1.2, 1.6, 2.0]))
    assert sampler.discretization.sigma_max == 700.0 and sampler.num_steps == 2
    triangle = sv3d_p.make_sampler(2, num_frames=5).guider
    torch.testing.assert_close(triangle.frame_scales, torch.tensor([1.0, 1.75, 2.5, 1.75, 1.0]))


# ---------------------------------------------------------------- SVD end to end


def test_svd_returns_uint8_frames(svd_frames):
    assert svd_frames.shape == (3, 64, 64, 3) and svd_frames.dtype == np.uint8


def test_same_seed_same_video_other_seed_other_video(svd, svd_frames):
    assert np.array_equal(svd(picture(), **FAST), svd_frames)
    assert not np.array_equal(svd(picture(), seed=24, **FAST), svd_frames)


def test_compile_keeps_the_video_and_the_checkpoint_keys(svd_frames):
    """Pipeline.compile compiles the network in place: the same frames, the same state-dict keys. (The "eager"
    backend traces the network as inductor would but skips code generation, which takes minutes on a CPU.)"""
    pipe = tiny_pipeline(SVDPipeline)
    keys = list(pipe.engine.state_dict())
    assert pipe.compile(backend="eager") is pipe
    assert pipe.engine.network._compiled_call_impl is not None  # nn.Module.compile's record of the compiled forward
    assert list(pipe.engine.state_dict()) == keys
    np.testing.assert_array_equal(pipe(picture(), **FAST), svd_frames)


def test_conditions_change_the_video(svd, svd_frames):
    assert not np.array_equal(svd(picture(), motion_bucket_id=30, **FAST), svd_frames)


def test_callback_sees_every_step(svd):
    steps = []
    svd(picture(), callback=lambda x, denoised, sigma, step: steps.append((step, tuple(x.shape))), **FAST)
    assert steps == [(0, (3, 4, 8, 8)), (1, (3, 4, 8, 8))]


def test_progress_bar_runs(svd, capsys):
    svd(picture(), num_frames=2, num_steps=1, progress=True)
    assert "EulerEDMSampler" in capsys.readouterr().err


@pytest.mark.parametrize("sampler", ["DPMPP2MSampler", "EulerAncestralSampler"])
def test_sampler_choice(svd, svd_frames, sampler):
    frames = svd(picture(), sampler=sampler, **FAST)
    assert frames.shape == svd_frames.shape and not np.array_equal(frames, svd_frames)
    assert np.array_equal(svd(picture(), sampler=sampler, **FAST), frames)  # ancestral noise follows the seed


def test_decoding_t_chunks_the_temporal_decoder(svd, svd_frames):
    assert np.array_equal(svd(picture(), decoding_t=3, **FAST), svd_frames)  # one chunk, as the preset's None
    # the temporal decoder mixes frames within a chunk only, so smaller chunks change the video
    assert not np.array_equal(svd(picture(), decoding_t=1, **FAST), svd_frames)


def test_encoding_t_reaches_the_conditioner_encoder(svd, svd_frames, monkeypatch):
    chunk_sizes = []
    original = AutoencoderKL.encode

    def spy(self, x, chunk_size=None, **kwargs):
        chunk_sizes.append(chunk_size)
        return original(self, x, chunk_size=chunk_size, **kwargs)

    monkeypatch.setattr(AutoencoderKL, "encode", spy)
    assert np.array_equal(svd(picture(), encoding_t=1, **FAST), svd_frames)  # the encoder works frame by frame
    assert chunk_sizes == [1, 1]  # c and uc
    encoders = [e for e in svd.engine.conditioner.embedders if hasattr(e, "en_and_decode_n_samples_a_time")]
    assert [e.en_and_decode_n_samples_a_time for e in encoders] == [None]  # restored after the call


def test_offload_on_cpu_gives_the_same_video(svd_frames):
    offloaded = tiny_pipeline(SVDPipeline, offload="model")
    assert offloaded.placement.offload == "model"
    assert np.array_equal(offloaded(picture(), **FAST), svd_frames)


def test_bfloat16_keeps_the_vaes_in_float32():
    pipe = tiny_pipeline(SVDPipeline, dtype=torch.bfloat16)
    assert next(pipe.engine.network.parameters()).dtype == torch.bfloat16
    vaes = [m for m in pipe.engine.modules() if isinstance(m, AutoencoderKL)]
    assert len(vaes) == 2 and all(vae.dtype == torch.float32 for vae in vaes)  # first stage + conditioner encoder
    frames = pipe(picture(), num_frames=2, num_steps=1, progress=False)
    assert frames.shape == (2, 64, 64, 3) and frames.dtype == np.uint8


def test_generate_exposes_latents_and_conditionings(svd):
    image = torch.zeros(1, 3, 64, 64)
    values = svd.conditions(3)
    sample = svd.generate(image, values, 3, svd.make_sampler(2, num_frames=3, progress=False),
                          generator=torch.Generator().manual_seed(0))
    assert sample.latents.shape == (3, 4, 8, 8) and sample.decoded.shape == (3, 3, 64, 64)
    assert sample.c["crossattn"].shape[0] == 3 and sample.c["concat"].shape == (3, 4, 8, 8)
    assert sample.uc["concat"].abs().sum() == 0 and sample.uc["crossattn"].abs().sum() == 0
    assert sample.frames.min() >= 0 and sample.frames.max() <= 1


# ---------------------------------------------------------------- warnings and bad input


def test_unusual_settings_are_warned_about(svd):
    for options, message in (({"fps_id": 3}, "fps_id=3"), ({"fps_id": 31}, "fps_id=31"),
                             ({"motion_bucket_id": 300}, "above 255")):
        with pytest.warns(UserWarning, match=message):
            svd.conditions(3, **options)
    with pytest.warns(UserWarning, match="not 64x64"):
        svd.image_tensor(picture(128))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        svd.conditions(3)
        svd.image_tensor(picture())


@pytest.mark.parametrize("options, message", [
    ({"num_frames": 0}, "num_frames must be an integer >= 1"),
    ({"num_frames": 2.5}, "num_frames must be an integer >= 1"),
    ({"num_steps": 0}, "num_steps must be an integer >= 1"),
    ({"decoding_t": 0}, "decoding_t must be an integer >= 1"),
    ({"encoding_t": -1}, "encoding_t must be an integer >= 1"),
    ({"fps_id": -1}, "fps_id must be a finite number >= 0"),
    ({"motion_bucket_id": float("nan")}, "motion_bucket_id must be a finite number"),
    ({"cond_aug": -0.1}, "cond_aug must be a finite number >= 0"),
    ({"sampler": "NoSuchSampler"}, "Unknown sampler"),
])
def test_bad_options_are_refused(svd, options, message):
    with pytest.raises(ValueError, match=message):
        svd(picture(), **{**FAST, **options})


@pytest.mark.parametrize("image, message", [
    (np.zeros((64, 64), np.uint8), r"RGB image must be uint8 \[H, W, 3\], got uint8 \[64, 64\]; read files with"),
    (np.zeros((64, 64, 3), np.float32), r"RGB image must be uint8 \[H, W, 3\], got float32"),
    (np.zeros((60, 64, 3), np.uint8), "not a multiple of 64"),
])
def test_bad_images_are_refused(svd, image, message):
    with pytest.raises(ValueError, match=message):
        svd(image, **FAST)


def test_generate_wants_one_image_tensor(svd):
    with pytest.raises(ValueError, match=r"\(1, 3, H, W\)"):
        svd.generate(torch.zeros(2, 3, 64, 64), svd.conditions(3), 3, svd.make_sampler(2, num_frames=3))


def test_a_conditioner_reading_other_keys_is_reported(svd):
    pipe = SV3DPipeline(svd.engine, SV3DPipeline.DEFAULTS["tiny_sv3d"])  # an SVD engine in the SV3D pipeline
    with pytest.raises(ValueError, match=r"reads \['fps_id', 'motion_bucket_id'\]"):
        pipe(picture(), **SV3D_FAST)


# ---------------------------------------------------------------- SV3D


def test_sv3d_orbit_ends_on_the_input_view(sv3d_p):
    image = picture(seed=1)
    frames = sv3d_p(image, **SV3D_FAST)
    assert frames.shape == (8, 64, 64, 3)
    # the last decoded frame is replaced by the conditioning image; saving truncates like the reference, so a
    # value can come back one level lower after the trip through [-1, 1]
    difference = frames[-1].astype(int) - image.astype(int)
    assert difference.min() >= -1 and difference.max() == 0


def test_sv3d_default_cameras_are_the_scripts(sv3d_p):
    cameras = sv3d_p.cameras(5)
    torch.testing.assert_close(cameras["polars_rad"], torch.full((5,), math.radians(80.0)))
    torch.testing.assert_close(cameras["azimuths_rad"], torch.deg2rad(torch.tensor([72.0, 144, 216, 288, 0])))
    assert cameras["polars_rad"].dtype == torch.float32


def test_sv3d_cameras_are_relative_to_the_last_view_and_change_the_orbit(sv3d_p):
    cameras = sv3d_p.cameras(3, elevations_deg=[0.0, 30.0, -10.0], azimuths_deg=[100.0, 200.0, 300.0])
    torch.testing.assert_close(cameras["polars_rad"], torch.deg2rad(torch.tensor([90.0, 60.0, 100.0])))
    torch.testing.assert_close(cameras["azimuths_rad"], torch.deg2rad(torch.tensor([160.0, 260.0, 0.0])))
    default = sv3d_p(picture(), **SV3D_FAST)
    assert not np.array_equal(sv3d_p(picture(), elevations_deg=30.0, **SV3D_FAST), default)


@pytest.mark.parametrize("cameras, message", [
    ({"elevations_deg": [10.0, 10.0]}, "elevations_deg has 2 values; expected 8"),
    ({"azimuths_deg": [10.0, 20.0]}, "azimuths_deg has 2 values; expected 8"),
    ({"elevations_deg": 95.0}, r"elevations_deg outside \[-90, 90\]"),
    ({"azimuths_deg": [10.0, 400.0, 20.0, 30.0, 40.0]}, r"outside \[0, 360\]"),
    ({"azimuths_deg": [200.0, 100.0, 300.0, 310.0, 320.0]}, "not sorted as one orbit"),
])
def test_bad_cameras_are_refused(sv3d_p, cameras, message):
    with pytest.raises(ValueError, match=message):
        sv3d_p(picture(), **SV3D_FAST, **cameras)


def test_sv3d_u_takes_no_cameras():
    torch.manual_seed(0)
    engine = DiffusionEngine.from_preset("tiny_sv3d")
    engine.conditioner = tiny(sv3d(False, "minigen-tiny-vit", TINY_DDCONFIG, outdim=8)).build()
    pipe = SV3DPipeline(engine, SV3DPipeline.DEFAULTS["tiny_sv3d"])
    assert not pipe.takes_cameras and pipe.conditions(5) == {"cond_aug": 1e-5}
    with pytest.raises(ValueError, match="takes no cameras"):
        pipe.conditions(5, elevations_deg=10.0)


def test_sv3d_frame_count_other_than_trained_is_warned_about(sv3d_p):
    with pytest.warns(UserWarning, match="trained on 8-frame orbits"):
        sv3d_p(picture(), **FAST)


def test_sv3d_preprocesses_an_object_photo(sv3d_p):
    photo = object_photo()
    frames = sv3d_p(photo, preprocess=True, image_frame_ratio=0.5, **SV3D_FAST)
    prepared = prepare_object_image(photo, size=64, image_frame_ratio=0.5)
    difference = frames[-1].astype(int) - prepared.astype(int)  # within the one level that saving truncates
    assert difference.min() >= -1 and difference.max() == 0
    assert (prepared[0, 0] == 255).all()  # on white
    with pytest.raises(ValueError, match=r"RGB image must be uint8 \[H, W, 3\], got uint8 \[\d+, \d+, 4\]"):
        sv3d_p(photo, preprocess=False, **SV3D_FAST)  # RGBA needs preprocessing


def test_sv3d_preprocesses_by_default_as_the_script(sv3d_p):
    """The official SV3D presets cut out and frame every input, as the script does; the course model, trained on
    renders as they come, does not."""
    assert SV3DPipeline.DEFAULTS["sv3d_u"].preprocess and SV3DPipeline.DEFAULTS["sv3d_p"].preprocess
    assert not SV3DPipeline.DEFAULTS["tiny_sv3d"].preprocess
    scripted = SV3DPipeline(sv3d_p.engine, dataclasses.replace(sv3d_p.defaults, preprocess=True))
    photo = object_photo()
    torch.testing.assert_close(scripted.object_image(photo, None, {}),
                               sv3d_p.object_image(prepare_object_image(photo, size=64), False, {}))


# ---------------------------------------------------------------- checkpoints


def test_from_checkpoint_identifies_and_loads_a_tiny_checkpoint(tmp_path, svd, svd_frames):
    path = tmp_path / "my_video_model.safetensors"  # the official layout, under a name that says nothing
    save_file({key: value.contiguous() for key, value in svd.engine.state_dict().items()}, path)
    assert identify_preset(path, list(SVDPipeline.DEFAULTS)) == "tiny_svd"
    pipe = SVDPipeline.from_checkpoint(path)
    assert pipe.defaults == SVDPipeline.DEFAULTS["tiny_svd"]
    assert np.array_equal(pipe(picture(), **FAST), svd_frames)
    with pytest.raises(ValueError, match="is none of sv3d_u, sv3d_p, tiny_sv3d"):
        SV3DPipeline.from_checkpoint(path)


def test_same_architecture_checkpoints_are_told_apart_by_file_name(tmp_path, monkeypatch):
    class Info:  # what inspect_checkpoint says of any of the three official SVD files
        matches, closest = ["svd", "svd_xt", "svd_xt_1_1"], None

    monkeypatch.setattr(common, "inspect_checkpoint", lambda path: Info)
    candidates = list(SVDPipeline.DEFAULTS)
    assert identify_preset(tmp_path / "svd_xt_1_1.safetensors", candidates) == "svd_xt_1_1"
    assert identify_preset(tmp_path / "svd_xt.safetensors", candidates) == "svd_xt"
    assert identify_preset(tmp_path / "svd.safetensors", candidates) == "svd"
    with pytest.raises(ValueError, match="pass preset= to say which"):
        identify_preset(tmp_path / "model.safetensors", candidates)


def test_shared_flow_is_one_class():
    assert issubclass(SVDPipeline, ImageToVideoPipeline) and issubclass(SV3DPipeline, ImageToVideoPipeline)
    assert SV3DPipeline.replaces_last_frame and not SVDPipeline.replaces_last_frame


# ---------------------------------------------------------------- conformance runner


def test_pipeline_cases_of_unknown_networks_fail_clearly(tmp_path):
    case = Case(folder=tmp_path, spec={"id": "pipe_future", "component": "sgm.models.diffusion.DiffusionEngine",
                                       "kwargs": {"network_config": {"target": "sgm.FutureUNet", "params": {}}}})
    with pytest.raises(pytest.fail.Exception, match=r"not implemented for this network \(FutureUNet\)"):
        run_pipeline(case)
