"""Notebook 09's grid tools: schedules from the pipelines' own functions, the mixers' reach on a token grid, blends
switched off, windows sampled from given views, longer clips, and the grid player."""

import ipywidgets as widgets
import pytest
import torch
from matplotlib.figure import Figure

from minigen import grid_widgets as gw
from minigen.camera import Trajectory, sv4d2_camera_inputs
from minigen.pipelines.sv4d import SV4D2Pipeline, sv4d_schedule, window_starts
from minigen.recipes import tiny_sv4d2

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 2  # the flow is what is tested, not the pictures


@pytest.fixture(scope="module")
def pipe():
    return SV4D2Pipeline.from_preset("tiny_sv4d2")


@pytest.fixture(scope="module")
def held_out():
    return tiny_sv4d2.dataset(tiny_sv4d2.HELD_OUT_SEED, length=2)


def camera_inputs(example):
    return sv4d2_camera_inputs(Trajectory(*tiny_sv4d2.novel_view_cameras(example)), num_times=3)


# ---------------------------------------------------------------------------------------------- schedules


def test_window_shapes_come_from_the_presets():
    assert gw.window_shape("sv4d") == (5, 8)
    assert gw.window_shape("sv4d2") == (12, 4)
    assert gw.window_shape("sv4d2_8views") == (5, 8)
    assert gw.window_shape("tiny_sv4d2") == (3, 4)
    with pytest.raises(ValueError, match="not an SV4D model"):
        gw.window_shape("svd")


def test_sv4d_schedule_is_sv4d_schedules():
    passes = gw.schedule("sv4d")
    anchors, starts = sv4d_schedule(5)
    assert [p.name for p in passes[:2]] == ["SV3D orbit", "anchors"]
    assert passes[1].times == tuple(anchors) and passes[1].views_from == (0,)
    assert [p.times[0] for p in passes[2:]] == starts
    assert all(p.views_from == (p.times[0], p.times[-1]) for p in passes[2:])  # forward and backward references
    with pytest.raises(ValueError, match="always makes 21 frames"):
        gw.schedule("sv4d", 30)


@pytest.mark.parametrize(("model", "frames"), [("sv4d2", 21), ("sv4d2", 24), ("sv4d2_8views", 21),
                                               ("sv4d2_8views", 23), ("tiny_sv4d2", 5), ("tiny_sv4d2", 9)])
def test_sv4d2_schedule_is_window_starts(model, frames):
    T, _ = gw.window_shape(model)
    stride = T - SV4D2Pipeline.DEFAULTS[model].window_overlap
    passes = gw.schedule(model, frames)
    assert [p.times[0] for p in passes] == window_starts(frames, T, stride)
    assert passes[0].views_from == () and all(p.views_from == (p.times[0],) for p in passes[1:])
    assert sorted({t for p in passes for t in p.times}) == list(range(frames))


def test_schedule_errors():
    with pytest.raises(ValueError, match="at least 12 frames"):
        gw.schedule("sv4d2", 8)
    with pytest.raises(ValueError, match="not an SV4D model"):
        gw.schedule("sv3d_p")


def test_schedule_counts():
    assert gw.schedule_counts("sv4d2") == {"passes": 2, "guided forwards": 100, "images generated": 96,
                                           "images kept": 84, "frames": 21, "T x V": "12 x 4", "steps": 50}
    sv4d = gw.schedule_counts("sv4d", num_steps=10)
    assert sv4d["passes"] == 7 and sv4d["guided forwards"] == 70 and sv4d["images generated"] == 21 + 6 * 40
    assert gw.schedule_counts("tiny_sv4d2", 5)["guided forwards"] == 2 * 16


def test_schedule_figure_and_explorer():
    figure = gw.schedule_figure("sv4d2_8views")
    assert isinstance(figure, Figure) and len(figure.axes) == 5
    explorer = gw.schedule_explorer({"sv4d2": 1.5})
    assert "100 guided forwards" in explorer.numbers.value and "150 s" in explorer.numbers.value
    first = explorer.image.value
    explorer.frames.value = 30
    assert "3 passes" in explorer.numbers.value and explorer.image.value != first
    explorer.model.value = "sv4d"
    assert "fixed" in explorer.numbers.value and explorer.steps.value == 20 and explorer.frames.disabled
    explorer.model.value = "sv4d2"
    explorer.frames.value = 5
    assert "at least 12 frames" in explorer.numbers.value  # an impossible setting is said, never raised


# ------------------------------------------------------------------------------------ the mixers' reach


@pytest.fixture(scope="module")
def layers(pipe):
    return pipe.engine.network.middle_block[1], pipe.engine.network.middle_block[0]


GRID = {"times": 3, "views": 4, "height": 4, "width": 4}
PROBE = (1, 2, 1, 2)


def changed(reach):
    return {tuple(index) for index in (reach > 0).nonzero().tolist()}


def test_spatial_attention_stays_in_its_image(layers):
    reach = gw.mixer_reach(layers[0], "spatial", **GRID, probe=PROBE)
    assert changed(reach) == {(1, 2, row, column) for row in range(4) for column in range(4)}


def test_view_attention_of_sv4d_crosses_the_views(layers):
    reach = gw.mixer_reach(layers[0], "view", **GRID, probe=PROBE, use_3d_attention=False)
    assert changed(reach) == {(1, view, 1, 2) for view in range(4)}
    assert layers[0].use_3d_attention  # the override is undone


def test_view_attention_of_sv4d2_stays_in_one_view(layers):
    # the reference's 3D layout: v consecutive tokens of one image attend to each other (one row of 4 here)
    reach = gw.mixer_reach(layers[0], "view", **GRID, probe=PROBE)
    assert changed(reach) == {(1, 2, 1, column) for column in range(4)}


def test_motion_attention_crosses_time(layers):
    reach = gw.mixer_reach(layers[0], "motion", **GRID, probe=PROBE)
    assert changed(reach) == {(time, 2, 1, 2) for time in range(3)}


def test_resblock_temporal_conv_reaches_neighbours_in_t_v_order(layers):
    per_image = gw.resblock_reach(layers[1], **GRID, probe=PROBE).mean((2, 3)).flatten()  # (t v) order
    probe = 1 * 4 + 2
    near = per_image[[probe - 2, probe - 1, probe + 1, probe + 2]]
    far = torch.cat([per_image[:probe - 2], per_image[probe + 3:]])
    assert per_image.argmax() == probe
    assert near.min() > 3 * far.max()  # two convs of kernel 3: two images either way; GroupNorm reaches all, faintly
    with pytest.raises(ValueError, match="Unknown mixer"):
        gw.mixer_reach(layers[0], "camera", **GRID, probe=PROBE)


def test_reach_figure(layers):
    reaches = {name: gw.mixer_reach(layers[0], name, **GRID, probe=PROBE) for name in gw.MIXERS}
    assert len(gw.reach_figure(reaches, PROBE).axes) == 3


# --------------------------------------------------------------------------------------------- ablations


def test_blend_off_switches_a_mixer_off_and_restores_it(pipe):
    network = pipe.engine.network
    before = {kind: gw.blend_weights(network, kind) for kind in ("view", "motion", "temporal conv")}
    assert len(before["view"]) == len(before["motion"]) == 7 and len(before["temporal conv"]) == 8
    with gw.blend_off(network, "motion", "temporal conv"):
        assert gw.blend_weights(network, "motion") == [1.0] * 7
        assert gw.blend_weights(network, "temporal conv") == [1.0] * 8
        assert gw.blend_weights(network, "view") == before["view"]
    assert {kind: gw.blend_weights(network, kind) for kind in before} == before
    with pytest.raises(ValueError, match="Unknown blend"):
        gw.blenders(network, "camera")


def test_blend_off_makes_a_mixer_add_nothing(layers):
    layer = layers[0]
    tokens = torch.randn(12, 16, layer.transformer_blocks[0].attn1.to_q.in_features)
    sizes = dict(b=1, t=3, v=4, s=16)
    context = torch.randn(4 * 16, 1, layer.motion_blocks[0].attn2.to_k.in_features)
    with gw.blend_off(layer, "motion"), torch.no_grad():
        out = layer.motion_attention(layer.motion_blocks[0], tokens, torch.zeros(3, 1, tokens.shape[-1]), context,
                                     sizes, torch.zeros(1, 12))
    torch.testing.assert_close(out, tokens)


def test_without_motion_attention_the_views_given_are_not_read(pipe, held_out):
    example = held_out[0]
    sampler = pipe.make_sampler(STEPS, progress=False)

    def window_1(views):
        window = pipe.window_conditioning(example["frames"][2:5, 0], views, camera_inputs(example),
                                          torch.Generator().manual_seed(0), None)
        noisy = 10 * pipe.start_noise(64, 64, torch.Generator().manual_seed(1))
        with torch.no_grad():
            return sampler.denoise(noisy, pipe.denoiser(window), torch.full((12,), 10.0), window.c, window.uc)

    truth, blank = example["frames"][2, 1:], torch.ones(4, 3, 64, 64)
    assert not torch.equal(window_1(truth), window_1(blank))
    with gw.blend_off(pipe.engine.network, "motion"):
        assert torch.equal(window_1(truth), window_1(blank))


# ------------------------------------------------------------------------------------------ sampling


def test_window_images_rebuild_the_matrix_generate_returns(pipe, held_out):
    example = held_out[0]
    sampler = pipe.make_sampler(STEPS, progress=False)
    result = pipe.generate(example["frames"][:, 0], camera_inputs(example), sampler,
                           generator=torch.Generator().manual_seed(4))
    assert [w.times.tolist() for w in result.windows] == [[0, 1, 2], [2, 3, 4]]
    torch.testing.assert_close(gw.window_images(result.windows, 5), result.images[:, 1:], rtol=0, atol=0)


def test_a_longer_video_starts_with_the_short_videos_windows(pipe, held_out):
    long = gw.longer_clip(held_out, 1, 9)
    assert torch.equal(long["frames"][:5], held_out[1]["frames"])  # the same object, cameras and motion
    assert long["frames"].shape == (9, 5, 3, 64, 64) and not torch.equal(long["frames"][5], long["frames"][4])
    sampler = pipe.make_sampler(STEPS, progress=False)
    cameras = camera_inputs(held_out[1])
    short = pipe.generate(held_out[1]["frames"][:, 0], cameras, sampler, generator=torch.Generator().manual_seed(2))
    longer = pipe.generate(long["frames"][:, 0], cameras, sampler, generator=torch.Generator().manual_seed(2))
    assert [w.times[0].item() for w in longer.windows] == [0, 2, 4, 6]
    assert torch.equal(gw.window_images(longer.windows[:2], 5), short.images[:, 1:])
    with pytest.raises(ValueError, match="do not cover times"):
        gw.window_images(longer.windows[:1], 5)


# ------------------------------------------------------------------------------------------ the player


def test_grid_frames_lays_rows_over_views():
    truth = torch.zeros(5, 3, 3, 8, 8)
    frames = gw.grid_frames({"truth": truth, "model": truth.clone().fill_(1.0)}, gap=2)
    assert frames.shape == (5, 2 * 8 + 2, 3 * 8 + 2 * 2, 3)
    assert frames[0, 0, 0].tolist() == [128, 128, 128] and frames[0, -1, -1].tolist() == [255, 255, 255]


def test_grid_player_plays_and_steps():
    entries = {"a": {"truth": torch.zeros(3, 2, 3, 8, 8)}, "b": {"truth": torch.ones(3, 2, 3, 8, 8) * 0.5}}
    player = gw.grid_player(entries, caption="rows: truth")
    assert player.image.format == "gif" and player.time.disabled
    player.play.value = False
    assert player.image.format == "png" and not player.time.disabled
    still = player.image.value
    player.entry.value = "b"
    assert player.image.value != still
    player.time.value = 2
    assert set(player.cache) == {("a", None), ("a", 0), ("b", 0), ("b", 2)} and isinstance(player, widgets.VBox)
    assert gw.grid_player(entries, play=False).image.format == "png"
    with pytest.raises(ValueError, match="at least one entry"):
        gw.grid_player({})
    with pytest.raises(ValueError, match="same number of times"):
        gw.grid_player({"a": {"x": torch.zeros(3, 2, 3, 8, 8)}, "b": {"x": torch.zeros(4, 2, 3, 8, 8)}})
