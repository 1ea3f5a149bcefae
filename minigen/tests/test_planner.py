"""The SVD memory planner (minigen.planner): read off the H100 rows, it reproduces them, predicts the rows it never
read within a few per cent, behaves sensibly away from them, and its widget redraws."""

import pytest

from minigen import planner
from minigen.presets import build_on_meta, get_preset, parameter_count


@pytest.fixture(scope="module")
def fitted():
    return planner.fit()


def test_parameter_counts_are_the_presets():
    parts = build_on_meta(get_preset("svd"))
    assert {part: parameter_count(parts[part]) for part in planner.SVD_PARAMETERS} == planner.SVD_PARAMETERS


def test_reproduces_the_rows_it_was_read_from_and_predicts_the_others(fitted):
    checks = {check["row"]: check for check in planner.check_against_rows(fitted)}
    for row in ("svd, defaults", "svd, decoding_t 2"):  # the peaks the fit read
        assert checks[row]["predicted_gib"] == pytest.approx(checks[row]["measured_gib"], rel=1e-9)
    for row in ("svd, decoding_t 2", "svd, decoding_t 2 + offload"):  # the times it read
        assert checks[row]["predicted_seconds"] == pytest.approx(checks[row]["measured_seconds"], rel=1e-9)
    offload, sv3d = checks["svd, decoding_t 2 + offload"], checks["sv3d_p, defaults (not fitted)"]
    assert offload["predicted_gib"] == pytest.approx(offload["measured_gib"], rel=0.05)  # 7.7 against 7.5
    assert sv3d["predicted_gib"] == pytest.approx(sv3d["measured_gib"], rel=0.08)  # 24.9 against 23.5
    assert sv3d["predicted_seconds"] == pytest.approx(sv3d["measured_seconds"], rel=0.08)  # 19.5 against 18.8


def test_the_network_row_is_the_sampling_phase(fitted):
    # with offload and a small decoding_t the peak is the UNet's: its weights and its measured activations
    plan = fitted.plan(decoding_t=1, offload=True)
    assert plan.phase == "sampling"
    assert plan.peak_gib - fitted.overhead_gib == pytest.approx(7.41, abs=0.05)  # the svd float16 network row


def test_memory_grows_with_every_setting_and_shrinks_with_every_lever(fitted):
    base = fitted.plan()
    assert fitted.plan(frames=25).peak_gib >= base.peak_gib
    assert fitted.plan(height=768, width=1344).peak_gib > base.peak_gib
    assert fitted.plan(dtype="float32").peak_gib > base.peak_gib
    assert fitted.plan(dtype="bfloat16") == base
    assert fitted.plan(decoding_t=2).peak_gib < base.peak_gib
    assert fitted.plan(decoding_t=2, offload=True).peak_gib < fitted.plan(decoding_t=2).peak_gib
    assert fitted.plan(decoding_t=50).peak_gib == base.peak_gib  # a chunk is at most the whole clip
    assert fitted.plan(steps=50).seconds > base.seconds and fitted.plan(steps=50).peak_gib == base.peak_gib
    assert fitted.plan(decoding_t=2, offload=True).seconds > fitted.plan(decoding_t=2).seconds


def test_largest_frames(fitted):
    frames = fitted.largest_frames(24, decoding_t=2, offload=True)
    assert fitted.plan(frames, decoding_t=2, offload=True).peak_gib <= 24 < fitted.plan(
        frames + 1, decoding_t=2, offload=True).peak_gib
    assert fitted.largest_frames(24, decoding_t=2) <= frames
    assert fitted.largest_frames(1.0) == 0  # not even the weights fit


def test_clear_errors(fitted):
    with pytest.raises(ValueError, match="dtype must be one of"):
        fitted.plan(dtype="float64")
    with pytest.raises(ValueError, match="multiples of 64"):
        fitted.plan(height=500)
    with pytest.raises(ValueError, match="frames, steps, decoding_t >= 1"):
        fitted.plan(frames=0)


def test_widget_redraws_when_a_control_moves(fitted):
    widget = planner.planner_widget(fitted)
    image, text = widget.children[2], widget.children[3]
    first = bytes(image.value)
    assert first.startswith(b"\x89PNG") and "40.3 GiB" in text.value
    widget.controls["decoding_t"].value = 2
    assert bytes(image.value) != first and "10.1 GiB" in text.value
    widget.controls["offload"].value = True
    assert "7.7 GiB" in text.value
