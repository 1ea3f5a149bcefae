"""Every pipeline speaks one vocabulary: the same name for the same idea, keyword-only after the main input.

A student who learned `pipe(image, num_steps=..., seed=..., cfg=...)` on SVD can call SV4D or SDXL the same way;
`make_sampler(num_steps, *, cfg=..., sampler=..., ...)` builds each family's sampler with the same words.
"""

import inspect
import re

import pytest

from minigen.diffusion import HeunEDMSampler
from minigen.pipelines import (
    SV3DPipeline,
    SV4D2Pipeline,
    SV4DPipeline,
    SVDPipeline,
    TextToImagePipeline,
    TurboPipeline,
)

pytestmark = pytest.mark.usefixtures("one_thread")

EVERY = ("num_steps", "seed", "callback", "progress")  # every pipeline
GUIDED = ("cfg", "sampler", "sampler_options")  # every pipeline with guidance and a choice of sampler
VIDEO = ("min_cfg", "encoding_t", "decoding_t")  # the per-frame guiders and the chunked VAE
# names of the same ideas that drifted in before, or that other libraries use: none may come back
RETIRED = ("max_cfg", "steps", "guidance_scale", "num_inference_steps", "refiner_strength", "generator",
           "n_frames", "img_size", "version")

# pipeline -> (main input, the names it must take)
PIPELINES = {
    TextToImagePipeline: ("prompt", EVERY + GUIDED),
    TurboPipeline: ("prompt", EVERY),  # the turbo script: no guidance, its own 1-4 step schedule and sampler
    SVDPipeline: ("image", EVERY + GUIDED + VIDEO + ("num_frames",)),
    SV3DPipeline: ("image", EVERY + GUIDED + VIDEO + ("num_frames",)),
    SV4DPipeline: ("video", EVERY + GUIDED + VIDEO),  # always the script's 21 frames
    SV4D2Pipeline: ("video", EVERY + GUIDED + VIDEO + ("num_frames",)),
}
NAMES = [pipeline.__name__ for pipeline in PIPELINES]


def call_parameters(pipeline) -> list[inspect.Parameter]:
    return list(inspect.signature(pipeline.__call__).parameters.values())[1:]  # without self


@pytest.mark.parametrize("pipeline", PIPELINES, ids=NAMES)
def test_the_main_input_is_the_only_positional_argument(pipeline):
    main, *rest = call_parameters(pipeline)
    assert main.name == PIPELINES[pipeline][0]
    positional = [p.name for p in rest if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert not positional, f"{pipeline.__name__}: {positional} should be keyword-only (put them after `*`)"


@pytest.mark.parametrize("pipeline", PIPELINES, ids=NAMES)
def test_the_shared_ideas_have_the_shared_names(pipeline):
    names = {p.name for p in call_parameters(pipeline)}
    missing = [name for name in PIPELINES[pipeline][1] if name not in names]
    assert not missing, f"{pipeline.__name__} lacks {missing}"
    assert not names & set(RETIRED), f"{pipeline.__name__} uses retired names {sorted(names & set(RETIRED))}"


@pytest.mark.parametrize("pipeline", PIPELINES, ids=NAMES)
def test_shared_options_default_alike(pipeline):
    """Defaults that mean "the model's own" are None; the seed is a number, so a call repeats itself."""
    parameters = {p.name: p for p in call_parameters(pipeline)}
    assert isinstance(parameters["seed"].default, int)
    assert parameters["progress"].default is True and parameters["callback"].default is None
    for name in ("num_steps", "cfg", "min_cfg", "sampler", "sampler_options", "num_frames"):
        if name in parameters:
            assert parameters[name].default is None, f"{pipeline.__name__}.{name} should default to None"


@pytest.mark.parametrize("pipeline", [p for p in PIPELINES if "cfg" in PIPELINES[p][1]],
                         ids=[n for p, n in zip(PIPELINES, NAMES, strict=True) if "cfg" in PIPELINES[p][1]])
def test_make_sampler_takes_the_same_words(pipeline):
    parameters = list(inspect.signature(pipeline.make_sampler).parameters.values())[1:]
    assert parameters[0].name == "num_steps"
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters[1:])
    assert {"cfg", "sampler", "sampler_options", "progress"} <= {p.name for p in parameters}


def tiny_pipelines():
    """One small pipeline of each guided family, random weights, and the keywords make_sampler needs besides."""
    sv3d = SV3DPipeline.from_preset("tiny_sv3d", weights="random")
    return [
        (TextToImagePipeline.from_preset("tiny_sdxl", weights="random"), {}),
        (SVDPipeline.from_preset("tiny_svd", weights="random"), {"num_frames": 4}),
        (sv3d, {"num_frames": 4}),
        (SV4DPipeline.from_preset("tiny_sv4d", weights="random", sv3d=sv3d), {}),
        (SV4D2Pipeline.from_preset("tiny_sv4d2", weights="random"), {}),
    ]


def test_the_words_reach_the_sampler_and_guider():
    for pipe, needed in tiny_pipelines():
        sampler = pipe.make_sampler(3, cfg=4.5, sampler="HeunEDMSampler", sampler_options={"s_churn": 0.5},
                                    progress=False, **needed)
        name = type(pipe).__name__
        assert isinstance(sampler, HeunEDMSampler) and sampler.s_churn == 0.5, name
        assert sampler.num_steps == 3 and not sampler.progress, name
        guider = sampler.guider  # VanillaCFG's one scale, or the per-frame guiders' largest
        assert getattr(guider, "scale", None) == 4.5 or guider.max_scale == 4.5, name


# a preset each pipeline does not run (another pipeline's, or an official one of its own family's neighbour)
FOREIGN = {TextToImagePipeline: "tiny_svd", TurboPipeline: "sd_xl_refiner", SVDPipeline: "tiny_sv3d",
           SV3DPipeline: "svd", SV4DPipeline: "tiny_sv4d2", SV4D2Pipeline: "tiny_sv4d"}


@pytest.mark.parametrize("pipeline", PIPELINES, ids=NAMES)
def test_a_preset_it_does_not_run_is_refused_naming_those_it_runs(pipeline):
    runs = re.escape(f"{pipeline.__name__} runs {', '.join(pipeline.DEFAULTS)}; got '{FOREIGN[pipeline]}'")
    with pytest.raises(ValueError, match=runs):
        pipeline.from_preset(FOREIGN[pipeline])
