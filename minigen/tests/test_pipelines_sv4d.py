"""SV4D and SV4D 2.0 pipelines end to end on the tiny presets: the scripts' window flow, options, loading, bad input.

tiny_sv4d runs 3 times x 8 views per pass (7 frames: anchors at times 2, 4, 6, dense windows from 0, 2, 4),
tiny_sv4d2 3 times x 4 views (a 5-frame video: windows from 0 and 2), at 32 x 32 (they are trained at 64 x 64:
smaller is faster, and the flow is the same) with 1-2 steps. Spies on the pipelines' steps check that each pass
reads what the reference scripts give it.
"""

import dataclasses
import itertools

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from minigen.camera import default_trajectory, sv4d2_camera_inputs, sv4d_camera_inputs
from minigen.diffusion import EulerEDMSampler, LinearPredictionGuider, SpatiotemporalPredictionGuider
from minigen.io import to_uint8, write_image
from minigen.pipelines.sv3d import SV3DPipeline
from minigen.pipelines.sv4d import (
    SV4D2Pipeline,
    SV4DPipeline,
    Window,
    WindowNoise,
    sv4d_schedule,
    window_starts,
)
from minigen.preprocess import prepare_object_video
from minigen.tests.test_pipelines_video import perturbed

FAST = {"num_steps": 2, "progress": False}


def video(frames: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def sv4d():
    torch.manual_seed(0)
    return SV4DPipeline.from_preset("tiny_sv4d", sv3d=perturbed(SV3DPipeline.from_preset("tiny_sv3d")))


@pytest.fixture(scope="module")
def sv4d2():
    torch.manual_seed(0)
    return perturbed(SV4D2Pipeline.from_preset("tiny_sv4d2"))


def spy(monkeypatch, pipe, method: str) -> list:
    """Record every call of `pipe.method` as (args, kwargs, result); tensor arguments are copied, since the
    pipelines pass views of their image matrix, which later windows overwrite."""
    calls, original = [], getattr(pipe, method)

    def recorded(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append((tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args), kwargs, result))
        return result

    monkeypatch.setattr(pipe, method, recorded)
    return calls


def as_frames(images: torch.Tensor) -> np.ndarray:
    """Decoded `t v 3 H W` -> uint8 `[v, t, H, W, 3]`, as the pipelines return the novel views."""
    return to_uint8(images.permute(1, 0, 3, 4, 2), mode="truncate")  # v t H W 3


# ---------------------------------------------------------------- defaults and schedules


def test_defaults_are_the_scripts():
    expected = {  # num_steps, guider, max, min, default elevation (simple_video_sample_4d.py / _4d2.py)
        "sv4d": (20, SpatiotemporalPredictionGuider, 2.0, 1.0, 10.0),
        "sv4d2": (50, LinearPredictionGuider, 2.0, 1.0, 0.0),
        "sv4d2_8views": (50, SpatiotemporalPredictionGuider, 2.5, 1.5, 0.0),
    }
    defaults = {**SV4DPipeline.DEFAULTS, **SV4D2Pipeline.DEFAULTS}
    for name, values in expected.items():
        d = defaults[name]
        assert (d.num_steps, d.guider, d.cfg, d.min_cfg, d.elevation_deg) == values, name
        assert d.sigma_max == 700.0 and d.image_size == 576
    assert SV4DPipeline.DEFAULTS["sv4d"].sv3d_preset == "sv3d_u"
    assert (SV4D2Pipeline.DEFAULTS["sv4d2"].window_overlap, SV4D2Pipeline.DEFAULTS["sv4d2_8views"].window_overlap) \
        == (0, 1)


@pytest.mark.parametrize("frames_per_window, stride", [(12, 12), (5, 4), (3, 3), (3, 2)])
def test_windows_are_the_scripts(frames_per_window, stride):
    for n in range(frames_per_window, 60):
        starts = window_starts(n, frames_per_window, stride)
        if stride == frames_per_window and n < 2 * frames_per_window:  # sv4d2 where the script runs:
            # range(0, n, T), the last start clamped to n - T
            assert starts == [min(t0, n - frames_per_window) for t0 in range(0, n, frames_per_window)]
        elif stride < frames_per_window:  # sv4d2_8views: range(0, n - T + 1, T - 1), plus a window for frames
            script = list(range(0, n - frames_per_window + 1, stride))  # it would leave empty
            assert starts[:len(script)] == script and len(starts) - len(script) <= 1
        covered = set().union(*(range(t0, t0 + frames_per_window) for t0 in starts))
        assert covered == set(range(n)) and starts == sorted(set(starts))
        # each window after the first starts on a time an earlier window generated: its cond_view exists
        assert all(later < earlier + frames_per_window for earlier, later in itertools.pairwise(starts))


def test_sv4d2_windows_from_2T_frames_on_start_on_generated_views():
    """The script's sv4d2 rule crashes at 2T frames (its window at time T has no views); minigen's windows then
    start every T - 1 frames, as the 8-view model's do."""
    assert window_starts(24, 12, 12) == [0, 11, 12]
    assert window_starts(6, 3, 3) == window_starts(6, 3, 2) == [0, 2, 3]


@pytest.mark.parametrize("cls, name, guider", [
    (SV4DPipeline, "tiny_sv4d", SpatiotemporalPredictionGuider), (SV4D2Pipeline, "tiny_sv4d2", LinearPredictionGuider)])
def test_sampler_is_the_scripts(cls, name, guider, request):
    pipe = request.getfixturevalue(name.removeprefix("tiny_"))
    sampler = pipe.make_sampler(3, cfg=3.0, progress=False)
    assert type(sampler) is EulerEDMSampler and sampler.num_steps == 3
    assert sampler.discretization.sigma_max == 700.0
    assert isinstance(sampler.guider, guider) and sampler.guider.additional_cond_keys == ["cond_view", "cond_motion"]
    scales = sampler.guider.frame_scales
    assert len(scales) == pipe.frames_per_window * pipe.views and scales.min() == 1.0
    if guider is LinearPredictionGuider:
        assert scales.max() == 3.0
    else:  # the ramp over time reaches 3.0 only half way: the triangle over views adds the other half
        torch.testing.assert_close(scales.reshape(pipe.frames_per_window, pipe.views)[:, 0],
                                   torch.linspace(1.0, 2.0, pipe.frames_per_window))


def test_tiny_presets_have_the_official_view_counts(sv4d, sv4d2):
    assert (sv4d.frames_per_window, sv4d.views, sv4d.num_frames) == (3, 8, 7)
    assert (sv4d2.frames_per_window, sv4d2.views) == (3, 4)
    assert sv4d.size_multiple == sv4d2.size_multiple == 16


# ---------------------------------------------------------------- SV4D: reference views, anchors, dense windows


def test_sv4d_follows_the_anchor_then_dense_flow(sv4d, monkeypatch):
    conditionings = spy(monkeypatch, sv4d, "window_conditioning")
    decoded = spy(monkeypatch, sv4d, "decode")
    references = spy(monkeypatch, sv4d, "reference_views")
    steps = []
    frames = video(7)
    out = sv4d(frames, callback=lambda x, denoised, sigma, step: steps.append(step), **FAST)

    assert out.shape == (8, 7, 32, 32, 3) and out.dtype == np.uint8
    assert steps == [0, 1] * 5  # SV3D, the anchors, three dense windows
    inputs = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    views_t0 = references[0][2][1:]
    anchors, windows = decoded[0][2], [d[2] for d in decoded[1:]]  # each t v 3 H W
    expected = [  # (times of cond_motion, cond_view): the script's schedule
        ([2, 4, 6], views_t0),  # anchors, from SV3D's views of time 0
        ([0, 1, 2], views_t0), ([2, 1, 0], anchors[0]),  # window 0: forward, backward (anchor at time 2)
        ([2, 3, 4], windows[0][2]), ([4, 3, 2], anchors[1]),  # window 2 starts from window 0's time 2
        ([4, 5, 6], windows[1][2]), ([6, 5, 4], anchors[2]),
    ]
    assert len(conditionings) == len(expected)
    for (args, _, _), (times, cond_view) in zip(conditionings, expected, strict=True):
        cond_motion, views, cameras = args[:3]
        torch.testing.assert_close(cond_motion, inputs[times])
        torch.testing.assert_close(views, cond_view)
        assert torch.equal(cameras["azimuth_rad"], sv4d_camera_inputs(default_trajectory("sv4d"), 3)["azimuth_rad"])
    for t0, window in zip((0, 2, 4), windows, strict=True):  # each window overwrites its times, anchors included
        end = 7 if t0 == 4 else t0 + 2  # the next window rewrites this one's last time
        np.testing.assert_array_equal(out[:, t0:end], as_frames(window)[:, :end - t0])


def test_sv4d_reference_views_are_the_subsampled_orbit_input_first(sv4d, monkeypatch):
    orbits = spy(monkeypatch, sv4d.sv3d, "generate")
    frame = torch.from_numpy(video(1)).permute(0, 3, 1, 2).float() / 127.5 - 1
    views = sv4d.reference_views(frame, default_trajectory("sv4d"), {"num_steps": 1, "progress": False},
                               encoding_t=None, decoding_t=None, seed=0, callback=None)
    orbit = orbits[0][2].decoded.clamp(-1, 1)
    assert orbit.shape[0] == 21 and views.shape == (9, 3, 32, 32)
    torch.testing.assert_close(views[0], frame[0])  # SV3D's last frame, the input, comes first
    torch.testing.assert_close(views[1:], orbit[[1, 4, 6, 8, 11, 13, 15, 18]])  # rolled by one, then subsampled


def test_dense_steps_alternate_backward_then_forward_with_reversed_times(sv4d, monkeypatch):
    """Step 0 sees the times reversed with the backward conditioning, step 1 forward: the script's alternation."""
    seen = []

    def denoise(x, sigma, cond, **extra):  # D(x) = x: the latents never move, so their order shows
        seen.append((cond["direction"], x[: len(x) // 2, 0, 0, 0].clone()))  # the unconditional half
        return x

    monkeypatch.setattr(sv4d.engine, "denoise", denoise)
    windows = {name: Window({"direction": name}, {}, {}) for name in ("forward", "backward")}
    tags = torch.arange(24.0)[:, None, None, None].expand(24, 4, 4, 4)  # (t v) rows, 3 times x 8 views
    sampler = sv4d.make_sampler(3, progress=False)
    latents = sv4d.sample_dense_window(sampler, windows["forward"], windows["backward"], tags, None, None)
    scale = torch.sqrt(1 + sampler.discretization(3)[0] ** 2)
    backward_order = torch.arange(24).reshape(3, 8).flip(0).flatten().float()
    assert [direction for direction, _ in seen] == ["backward", "forward", "backward"]
    torch.testing.assert_close(seen[0][1], backward_order * scale)
    torch.testing.assert_close(seen[1][1], torch.arange(24.0) * scale)
    torch.testing.assert_close(latents, tags * scale)


# ---------------------------------------------------------------- SV4D 2.0: autoregressive windows


def test_sv4d2_conditions_each_window_on_the_previous_one(sv4d2, monkeypatch):
    conditionings = spy(monkeypatch, sv4d2, "window_conditioning")
    decoded = spy(monkeypatch, sv4d2, "decode")
    steps = []
    frames = video(5)
    out = sv4d2(frames, callback=lambda x, denoised, sigma, step: steps.append(step), **FAST)

    assert out.shape == (4, 5, 32, 32, 3) and out.dtype == np.uint8
    assert steps == [0, 1, 0, 1]  # windows starting at 0 and at 2 (moved back from 3 to end on the last frame)
    inputs = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    (first, first_options, window0), (second, second_options, window1) = conditionings
    torch.testing.assert_close(first[0], inputs[0:3])
    torch.testing.assert_close(second[0], inputs[2:5])
    assert not first_options["with_views"] and not first[1].any()  # no views yet: zeros, then zeroed
    assert not window0.c["cond_view"].any() and not window0.uc["cond_view"].any()
    assert window0.extra["image_only_indicator"].eq(0).all() and window1.extra["image_only_indicator"].eq(1).all()
    assert second_options["with_views"]
    torch.testing.assert_close(second[1], decoded[0][2][2])  # the first window's views at time 2
    assert window1.c["cond_view"].any() and not window1.uc["cond_view"].any()
    assert torch.equal(first[2]["polar_rad"], sv4d2_camera_inputs(default_trajectory("sv4d2"), 3)["polar_rad"])
    np.testing.assert_array_equal(out[:, :2], as_frames(decoded[0][2])[:, :2])
    np.testing.assert_array_equal(out[:, 2:], as_frames(decoded[1][2]))


def test_generate_replays_given_noise_instead_of_drawing(sv4d2):
    """generate() is the flow on tensors; given WindowNoise (the golden cases replay the script's draws) leaves
    nothing to the generator, and each WindowSample is what the image matrix holds at its times."""
    frames = torch.from_numpy(video(5)).permute(0, 3, 1, 2).float() / 127.5 - 1
    cameras = sv4d2_camera_inputs(default_trajectory("sv4d2"), 3)
    sampler = sv4d2.make_sampler(1, progress=False)
    draw = torch.Generator().manual_seed(1)
    noise = [WindowNoise(start=torch.randn(12, 4, 4, 4, generator=draw),
                         augmentation=tuple({key: torch.randn(n, 3, 32, 32, generator=draw) for key, n in
                                             (("cond_frames", 12), ("cond_view", 4), ("cond_motion", 3))}
                                            for _ in ("c", "uc")))
             for _ in range(2)]  # windows at 0 and 2
    a, b = (sv4d2.generate(frames, cameras, sampler, generator=torch.Generator().manual_seed(seed), noise=noise)
            for seed in (0, 1))
    torch.testing.assert_close(a.images, b.images)
    assert [window.times.tolist() for window in a.windows] == [[0, 1, 2], [2, 3, 4]]
    assert a.windows[1].latents.shape == (3, 4, 4, 4, 4)
    torch.testing.assert_close(a.images[2:, 1:], a.windows[1].images)
    with pytest.raises(ValueError, match="makes 2 passes; noise has 1"):
        sv4d2.generate(frames, cameras, sampler, noise=noise[:1])


def test_given_views_change_only_the_window_that_reads_them(sv4d2):
    """generate(given_views={t0: views}) hands the window at t0 other views than the windows before it made."""
    frames = torch.from_numpy(video(4)).permute(0, 3, 1, 2).float() / 127.5 - 1  # windows at 0 and 1
    cameras = sv4d2_camera_inputs(sv4d2.cameras(None, None, 5), num_times=3)
    sampler = sv4d2.make_sampler(1, progress=False)

    def run(**given):
        return sv4d2.generate(frames, cameras, sampler, generator=torch.Generator().manual_seed(4), **given)

    chained, truth = run(), torch.zeros(4, 3, 32, 32)
    forced = run(given_views={1: truth})
    assert torch.equal(forced.windows[0].images, chained.windows[0].images)
    assert not torch.equal(forced.windows[1].images, chained.windows[1].images)
    with pytest.raises(ValueError, match="the windows read views at \\[1\\]"):
        run(given_views={0: truth})


def test_num_frames_takes_the_start_of_the_video(sv4d2, monkeypatch):
    conditionings = spy(monkeypatch, sv4d2, "window_conditioning")
    out = sv4d2(video(6), num_frames=4, num_steps=1, progress=False)
    assert out.shape == (4, 4, 32, 32, 3)
    assert len(conditionings) == 2  # windows at 0 and 1


# ---------------------------------------------------------------- options


CAMERAS = {"elevations_deg": [0.0, 10.0, 10.0, 10.0, 10.0], "azimuths_deg": [0, 80, 160, 200, 300]}


def test_same_seed_same_videos_with_offload_and_chunks(sv4d2):
    options = {"num_steps": 1, "seed": 5, "progress": False, **CAMERAS}
    first = sv4d2(video(3), **options)
    offloaded = SV4D2Pipeline(sv4d2.engine, sv4d2.defaults, offload="model")  # a no-op on the CPU
    np.testing.assert_array_equal(offloaded(video(3), **options), first)
    # the VAEs work frame by frame, so chunks only change float rounding: at most one level here and there
    chunked = sv4d2(video(3), encoding_t=1, decoding_t=1, **options)
    assert np.abs(chunked.astype(int) - first).max() <= 1 and (chunked == first).mean() > 0.99
    assert not np.array_equal(sv4d2(video(3), **{**options, "seed": 6}), first)
    assert not np.array_equal(sv4d2(video(3), **{**options, "cfg": 4.0}), first)


def test_bfloat16_weights_run(sv4d2):
    pipe = SV4D2Pipeline.from_preset("tiny_sv4d2", dtype=torch.bfloat16)
    pipe.engine.load_state_dict(sv4d2.engine.state_dict())
    assert next(pipe.engine.network.parameters()).dtype == torch.bfloat16
    assert next(pipe.engine.first_stage_model.parameters()).dtype == torch.float32  # VAEs stay float32
    out = pipe(video(3), num_steps=1, progress=False)
    reference = sv4d2(video(3), num_steps=1, progress=False)
    assert out.shape == reference.shape and np.abs(out.astype(int) - reference).mean() < 8


AS_GIVEN = {"preprocess": False}


def test_sv4d_schedule_of_the_official_model_is_the_scripts():
    """simple_video_sample_4d.py with T = 5: anchors at 4, 8, 12, 16, 20; dense windows from 0, 4, 8, 12, 16."""
    assert sv4d_schedule(5) == ([4, 8, 12, 16, 20], [0, 4, 8, 12, 16])
    assert sv4d_schedule(3) == ([2, 4, 6], [0, 2, 4])  # the tiny model's (test_sv4d_follows_the_anchor_then_dense_flow)


def test_video_can_be_a_folder_of_frames(sv4d2, tmp_path):
    frames = video(3)
    for index, frame in enumerate(frames):
        write_image(frame, tmp_path / f"{index:03d}.png")
    torch.testing.assert_close(sv4d2.input_frames(tmp_path, keep=3, needed=3, framing=AS_GIVEN),
                               sv4d2.input_frames(frames, keep=3, needed=3, framing=AS_GIVEN))


def moving_square(frames: int, size: int = 64) -> np.ndarray:
    """A dark square gliding right across white frames, `[frames, size, size, 3]` uint8."""
    video = np.full((frames, size, size, 3), 255, dtype=np.uint8)
    for t in range(frames):
        video[t, 24:36, 8 + 4 * t:20 + 4 * t] = 40
    return video


def test_the_official_presets_frame_the_video_as_the_scripts(sv4d2, monkeypatch):
    """sv4d / sv4d2 frame every input with one box for all the frames they use (0.917 / 0.9 of the frame); the
    course model, trained on renders as they come, takes frames as given."""
    assert SV4DPipeline.DEFAULTS["sv4d"].preprocess and SV4DPipeline.DEFAULTS["sv4d"].image_frame_ratio == 0.917
    assert SV4D2Pipeline.DEFAULTS["sv4d2"].preprocess and SV4D2Pipeline.DEFAULTS["sv4d2"].image_frame_ratio == 0.9
    assert not SV4D2Pipeline.DEFAULTS["tiny_sv4d2"].preprocess
    scripted = SV4D2Pipeline(sv4d2.engine, dataclasses.replace(sv4d2.defaults, preprocess=True, num_frames=4,
                                                                  image_frame_ratio=0.9))
    clip = moving_square(6)
    framed = prepare_object_video(clip[:4], image_size=64, image_frame_ratio=0.9)  # only the frames it uses
    expected = scripted.input_frames(framed, keep=4, needed=3, framing=AS_GIVEN)
    given = spy(monkeypatch, scripted, "generate")
    scripted(clip, num_steps=1, progress=False)
    torch.testing.assert_close(given[0][0][0], expected)
    assert not torch.equal(expected, scripted.input_frames(clip, keep=4, needed=3, framing=AS_GIVEN))


def test_sv4d2_reads_the_scripts_21_frames_by_default(sv4d2, monkeypatch):
    given = spy(monkeypatch, sv4d2, "generate")
    with pytest.warns(UserWarning, match="The video has 23 frames; SV4D2Pipeline uses the first 21"):
        out = sv4d2(video(23), num_steps=1, progress=False)
    assert out.shape[1] == 21 and len(given[0][0][0]) == 21


def test_checkpoints_load_strictly_and_are_identified(sv4d, sv4d2, tmp_path):
    save_file(sv4d2.engine.state_dict(), tmp_path / "course.safetensors")
    loaded = SV4D2Pipeline.from_checkpoint(tmp_path / "course.safetensors")
    assert loaded.defaults == SV4D2Pipeline.DEFAULTS["tiny_sv4d2"]
    torch.testing.assert_close(loaded.engine.state_dict(), sv4d2.engine.state_dict())
    save_file(sv4d.engine.state_dict(), tmp_path / "sv4d_course.safetensors")
    save_file(sv4d.sv3d.engine.state_dict(), tmp_path / "sv3d_course.safetensors")
    loaded = SV4DPipeline.from_checkpoint(tmp_path / "sv4d_course.safetensors",
                                          sv3d=tmp_path / "sv3d_course.safetensors")
    assert loaded.defaults == SV4DPipeline.DEFAULTS["tiny_sv4d"] and loaded.sv3d.takes_cameras
    torch.testing.assert_close(loaded.sv3d.engine.state_dict(), sv4d.sv3d.engine.state_dict())


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("cameras, message", [
    ({"azimuths_deg": [0, 60, 120, 180]}, "azimuths_deg has 4 values; expected 5"),
    ({"elevations_deg": [0, 0, 95, 0, 0]}, r"elevations_deg outside \[-90, 90\] at frames 2"),
    ({"azimuths_deg": [0, 120, 60, 180, 240]}, "not sorted as one orbit"),
    ({"azimuths_deg": [0, 60, float("nan"), 180, 240]}, "not finite"),
    ({"azimuths_deg": [0, 60, 120, 180, 400]}, r"outside \[0, 360\]"),
])
def test_sv4d2_cameras_are_checked_before_sampling(sv4d2, cameras, message):
    with pytest.raises(ValueError, match=message):
        sv4d2(video(3), **cameras, **FAST)


@pytest.mark.parametrize("cameras, message", [
    ({"azimuths_deg": list(range(0, 360, 18))}, "azimuths_deg has 20 values; expected 21"),
    ({"azimuths_deg": list(range(0, 360, 17))[::-1][:21]}, "not sorted as one orbit"),
    ({"elevations_deg": -100.0}, r"elevations_deg outside \[-90, 90\]"),
])
def test_sv4d_cameras_are_checked_before_sampling(sv4d, cameras, message):
    with pytest.raises(ValueError, match=message):
        sv4d(video(7), **cameras, **FAST)


@pytest.mark.filterwarnings("ignore:Frames are 24x24")
@pytest.mark.parametrize("frames, options, message", [
    (video(2), {}, "The video has 2 frames; SV4D2Pipeline needs 3"),
    (video(4), {"num_frames": 5}, "The video has 4 frames; SV4D2Pipeline needs 5"),
    (video(4), {"num_frames": 2}, "at least 3 are needed"),
    (video(3, size=24), {}, "not a multiple of 16"),
    (video(3)[:, :, :16], {}, "square frames"),
    (video(3).astype(np.float32), {}, r"video must be uint8 frames \[T, H, W, C\] with C in 3, 4, got float32"),
    (video(3)[..., 0], {}, r"video must be uint8 frames \[T, H, W, C\] with C in 3, 4, got uint8 \[3, 32, 32\]"),
    (video(3), {"encoding_t": 0}, "encoding_t must be an integer >= 1"),
    (video(3), {"decoding_t": 2.5}, "decoding_t must be an integer >= 1"),
    (video(3), {"num_steps": 0}, "num_steps must be an integer >= 1"),
])
def test_sv4d2_bad_input_is_explained(sv4d2, frames, options, message):
    with pytest.raises(ValueError, match=message):
        sv4d2(frames, **{**FAST, **options})


def test_sv4d_needs_its_21_frames_and_says_when_it_drops_some(sv4d):
    with pytest.raises(ValueError, match="The video has 5 frames; SV4DPipeline needs 7"):
        sv4d(video(5), **FAST)
    with pytest.warns(UserWarning, match="uses the first 7"), pytest.raises(ValueError, match="orbit"):
        sv4d(video(9), azimuths_deg=[0.0] * 21, **FAST)  # stops at the cameras, after the frame check


def test_frames_at_another_size_than_trained_are_warned_about(sv4d2):
    with pytest.warns(UserWarning, match="trained at 64x64"):
        sv4d2.video_frames(video(3, size=48))


def test_unknown_presets_and_mismatched_engines_are_refused(sv4d2):
    with pytest.raises(ValueError, match="SV4D2Pipeline runs sv4d2, sv4d2_8views, tiny_sv4d2"):
        SV4D2Pipeline.from_preset("tiny_sv4d")
    with pytest.raises(ValueError, match="it is an SV4D 2.0 model; run it with SV4D2Pipeline"):
        SV4DPipeline(sv4d2.engine, SV4DPipeline.DEFAULTS["tiny_sv4d"], sv3d=None)
    with pytest.raises(ValueError, match="offload must be None or 'model'"):
        SV4D2Pipeline(sv4d2.engine, sv4d2.defaults, offload="disk")
    eight_views = dataclasses.replace(SV4D2Pipeline.DEFAULTS["sv4d2_8views"], image_size=32)
    with pytest.raises(ValueError, match="azimuths_deg has 9 values; expected 5"):  # 8-view cameras, 4-view model
        SV4D2Pipeline(sv4d2.engine, eight_views)(video(3), **FAST)
