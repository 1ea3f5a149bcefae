"""Sampler accuracy against cost: error versus network function evaluations (NFE), minigen beside its peers.

Two problems. The spiral Gaussian mixture of `minigen.data.toy2d` has an exact denoiser, so every error measured
there is the sampler's own discretisation error; samplers are compared with a 1000-step Heun solution of the
same ODE from the same start noise, and with the exact mixture through a sliced Wasserstein-2 distance. The
trained tiny image model (`minigen.recipes.tiny_image`, with classifier-free guidance) is compared with a
500-step Heun solution of the same model from the same noise. Peers, on the same denoiser, start noise, sigma
range and NFE budgets: k-diffusion's samplers and diffusers' schedulers, each driven through its own loop.
minigen's tuned schedule (TunedEDMDiscretization, rho = 15) is chosen by the rho scan at the end, which runs on
other start noise than the tables.

Run `python benchmarks/samplers.py` (about 5 minutes on one core). Without the peers it reports them as not
installed; `bash benchmarks/peers_env.sh` makes `.bench-venv` with them, then run
`.bench-venv/bin/python benchmarks/samplers.py`. It rewrites the `samplers` section of docs/benchmarks.md and
docs/figures/samplers_error_vs_nfe.png.
"""

import importlib.util
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from minigen.data.toy2d import spiral  # noqa: E402
from minigen.diffusion import (  # noqa: E402
    DEISSampler,
    EDMDiscretization,
    ExponentialDiscretization,
    HeunEDMSampler,
    VanillaCFG,
    by_name,
)
from minigen.diffusion.discretization import TunedEDMDiscretization  # noqa: E402

FIGURE = Path(__file__).resolve().parent.parent / "docs" / "figures" / "samplers_error_vs_nfe.png"
PEER_STUBS = Path(__file__).resolve().parent / "_peer_stubs"  # a stand-in `clip` module for k_diffusion's import
NFE_BUDGETS = (5, 10, 25)
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0  # every sampler, minigen's and the peers', walks this range
NUM_POINTS = 20_000  # mixture samples per run: the sliced W2 noise floor shrinks only like NUM_POINTS^(-1/4)
REFERENCE_STEPS = 1000  # Heun steps of the mixture's reference ODE solution
TINY_REFERENCE_STEPS = 500  # Heun steps of the tiny model's reference solution
TINY_IMAGES_PER_CLASS = 2  # 4 classes: 8 images of 3x16x16, each NFE a batch of 16 through the UNet (CFG)
TINY_CFG = 3.0  # the recipe's guidance scale
NUM_DIRECTIONS = 64  # projections of the sliced Wasserstein distance, evenly spaced in angle
REFERENCE_CHECK_POINTS = 2000  # points on which the mixture reference's own error is estimated
SCAN_POINTS, SCAN_SEED = 5000, 1234  # the rho scan's start noise: not the tables'
SCAN_RHOS = (5, 7, 10, 15, 20, 30, 50)
ORDER_STEPS, ORDER_POINTS, ORDER_REFERENCE_STEPS = (80, 160, 320), 256, 4000  # the order-of-accuracy table
ORDER_LABELS = ("LMS, order 4", "DPM++2M", "DPM++3M", "UniPC, order 2", "UniPC, order 3", "DEIS, order 2",
                "DEIS, order 3")
TIMING_BATCHES = (256, 4096)
TIMING_REPEATS = 5
NOISE_SEED, SAMPLER_SEED, EXACT_SEED = 0, 1, 2
REGENERATE = "bash benchmarks/peers_env.sh && .bench-venv/bin/python benchmarks/samplers.py"
LIBRARIES = ("minigen", "k-diffusion", "diffusers")


class EDMDiscretization64(EDMDiscretization):
    """The EDM schedule in float64, so that the 1000-step reference is not limited by float32 sigmas."""

    def get_sigmas(self, n: int, device="cpu") -> torch.Tensor:
        ramp = torch.linspace(0, 1, n, dtype=torch.float64, device=device)
        max_inv_rho, min_inv_rho = self.sigma_max ** (1 / self.rho), self.sigma_min ** (1 / self.rho)
        return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** self.rho


class ExponentialDiscretization64(ExponentialDiscretization):
    def get_sigmas(self, n: int, device="cpu") -> torch.Tensor:
        return torch.linspace(math.log(self.sigma_max), math.log(self.sigma_min), n, dtype=torch.float64).exp()


# The schedules compared, and the flag with which diffusers' schedulers make the same one from their own config.
SCHEDULES = {
    "rho 7": (EDMDiscretization64(SIGMA_MIN, SIGMA_MAX, rho=7.0), "use_karras_sigmas"),
    "rho 15": (EDMDiscretization64(SIGMA_MIN, SIGMA_MAX, rho=TunedEDMDiscretization().rho), None),
    "log-uniform": (ExponentialDiscretization64(SIGMA_MIN, SIGMA_MAX), "use_exponential_sigmas"),
}


@dataclass
class Algorithm:
    """One method as each library spells it (None: the library does not have it); `two_nfe`: 2 NFE per step
    except the last (Heun-like), so a budget of B NFE buys (B + 1) // 2 steps."""

    label: str
    minigen: tuple | None
    kdiffusion: tuple | None
    diffusers: tuple | None
    two_nfe: bool = False
    schedules: tuple = ("rho 7",)


MULTISTEP = ("rho 7", "rho 15", "log-uniform")
ALGORITHMS = [
    Algorithm("Euler", ("EulerEDMSampler", {}), ("sample_euler", {}), ("EulerDiscreteScheduler", {})),
    Algorithm("Heun", ("HeunEDMSampler", {}), ("sample_heun", {}), ("HeunDiscreteScheduler", {}), two_nfe=True),
    Algorithm("DPM-Solver-2", None, ("sample_dpm_2", {}), None, two_nfe=True),
    Algorithm("DPM++2S (eta 0)", ("DPMPP2SAncestralSampler", {"eta": 0.0}), ("sample_dpmpp_2s_ancestral", {"eta": 0.0}),
              None, two_nfe=True),
    Algorithm("LMS, order 4", ("LinearMultistepSampler", {}), ("sample_lms", {}), ("LMSDiscreteScheduler", {}),
              schedules=MULTISTEP),
    Algorithm("DPM++2M", ("DPMPP2MSampler", {}), ("sample_dpmpp_2m", {}),
              ("DPMSolverMultistepScheduler", {"solver_order": 2}), schedules=MULTISTEP),
    Algorithm("DPM++3M", ("DPMPP3MSampler", {}), ("sample_dpmpp_3m_sde", {"eta": 0.0}),
              ("DPMSolverMultistepScheduler", {"solver_order": 3}), schedules=MULTISTEP),
    Algorithm("UniPC, order 2", ("UniPCSampler", {}), None, ("UniPCMultistepScheduler", {"solver_order": 2}),
              schedules=MULTISTEP),
    Algorithm("UniPC, order 3", ("UniPCSampler", {"order": 3}), None, ("UniPCMultistepScheduler", {"solver_order": 3}),
              schedules=MULTISTEP),
    Algorithm("DEIS, order 2", ("DEISSampler", {"order": 2}), None, ("DEISMultistepScheduler", {"solver_order": 2}),
              schedules=MULTISTEP),
    Algorithm("DEIS, order 3", ("DEISSampler", {}), None, ("DEISMultistepScheduler", {"solver_order": 3}),
              schedules=MULTISTEP),
    Algorithm("DPM-Solver-fast (own steps)", None, ("sample_dpm_fast", {}), None),
]
ANCESTRAL = [
    Algorithm("Euler ancestral", ("EulerAncestralSampler", {}), ("sample_euler_ancestral", {}), None),
    Algorithm("DPM++2S ancestral", ("DPMPP2SAncestralSampler", {}), ("sample_dpmpp_2s_ancestral", {}), None,
              two_nfe=True),
]


# ---------------------------------------------------------------- the peers, when installed


def load_peers() -> dict:
    """{"k-diffusion": module or None, "diffusers": module or None, "versions": {...}, "missing": {...}}."""
    peers = {"versions": {}, "missing": {}}
    if importlib.util.find_spec("clip") is None:
        sys.path.insert(0, str(PEER_STUBS))  # k_diffusion imports OpenAI's clip at module level; never called here
    for library, module_name, distribution in (("k-diffusion", "k_diffusion.sampling", "k-diffusion"),
                                               ("diffusers", "diffusers", "diffusers")):
        try:
            peers[library] = importlib.import_module(module_name)
            peers["versions"][library] = metadata.version(distribution)
        except Exception as error:  # noqa: BLE001 - any failure means: report the peer as not installed
            peers[library] = None
            peers["missing"][library] = f"{type(error).__name__}: {error}"
    return peers


class CountingDenoiser:
    """D(x, sigma) for every library's calling convention, counting the calls (the NFE actually spent)."""

    def __init__(self, denoise):
        self.denoise = denoise  # (x, sigma: b tensor) -> D
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        self.calls += 1
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1).expand(x.shape[0])  # b
        return self.denoise(x, sigma)


def steps_for_budget(algorithm: Algorithm, budget: int) -> int:
    return (budget + 1) // 2 if algorithm.two_nfe else budget


def run_minigen(algorithm, schedule, denoise, noise, budget, seed=SAMPLER_SEED):
    name, options = algorithm.minigen
    sampler = by_name("sampler", name)(SCHEDULES[schedule][0], progress=False, **options)
    steps = steps_for_budget(algorithm, budget)
    assert sampler.network_calls(steps) <= budget
    counted = CountingDenoiser(denoise)
    samples = sampler(lambda x, sigma, cond: counted(x, sigma), noise, {}, num_steps=steps,
                      generator=torch.Generator().manual_seed(seed))
    return samples, counted.calls


def run_kdiffusion(sampling, algorithm, schedule, denoise, noise, budget, seed=SAMPLER_SEED):
    """k-diffusion's sampler on the same sigmas (plus its final 0) from the same start state as minigen's."""
    name, options = algorithm.kdiffusion
    counted = CountingDenoiser(denoise)
    model = lambda x, sigma: counted(x, sigma)  # noqa: E731 - k-diffusion's model(x, sigma * s_in) convention
    if name == "sample_dpm_fast":  # fixed NFE, its own steps evenly spaced in log(sigma), ends at sigma_min
        x = noise * math.sqrt(1 + SIGMA_MAX**2)
        return sampling.sample_dpm_fast(model, x, SIGMA_MIN, SIGMA_MAX, budget, disable=True), counted.calls
    sigmas = SCHEDULES[schedule][0](steps_for_budget(algorithm, budget))
    x = noise * torch.sqrt(1 + sigmas[0] ** 2)
    generator = torch.Generator().manual_seed(seed)
    if "eta" in options or name in ("sample_euler_ancestral", "sample_dpmpp_2s_ancestral"):
        def noise_sampler(sigma, sigma_next):  # eta = 0: never used, and no Brownian tree is built
            return torch.randn(x.shape, generator=generator, dtype=x.dtype)
        options = {**options, "noise_sampler": noise_sampler}
    return getattr(sampling, name)(model, x, sigmas, disable=True, **options), counted.calls


def vp_betas(num_timesteps: int = 1000) -> np.ndarray:
    """DDPM betas whose noise levels sqrt((1 - alpha_bar) / alpha_bar) run evenly in log from SIGMA_MIN to SIGMA_MAX,
    so that diffusers' `use_karras_sigmas` / `use_exponential_sigmas` build their schedule over the same range."""
    sigmas = np.exp(np.linspace(math.log(SIGMA_MIN), math.log(SIGMA_MAX), num_timesteps))
    alphas_cumprod = 1 / (1 + sigmas**2)
    return 1 - alphas_cumprod / np.concatenate([[1.0], alphas_cumprod[:-1]])


def run_diffusers(diffusers, algorithm, schedule, denoise, noise, budget):
    """A diffusers scheduler in its own loop; the model predicts the clean sample ("sample" prediction).

    Euler, Heun and LMS keep x at the EDM scale and expect the network input divided by sqrt(1 + sigma^2)
    (`scale_model_input`); the multistep (DPM-Solver, UniPC, DEIS) ones keep the VP-scaled x / sqrt(1 + sigma^2).
    """
    class_name, options = algorithm.diffusers
    flag = SCHEDULES[schedule][1]
    scheduler = getattr(diffusers, class_name)(trained_betas=vp_betas(), prediction_type="sample", **{flag: True},
                                               **options)
    scheduler.set_timesteps(steps_for_budget(algorithm, budget))
    counted = CountingDenoiser(denoise)
    edm_scale = class_name in ("EulerDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler")
    sample = noise * math.sqrt(1 + float(scheduler.sigmas[0]) ** 2) if edm_scale else noise
    for i, timestep in enumerate(scheduler.timesteps):
        if edm_scale:
            scheduler.scale_model_input(sample, timestep)  # sets the step index; the input scaling is undone below
            sigma = float(scheduler.sigmas[scheduler.step_index])
            denoised = counted(sample, sigma)
        else:
            sigma = float(scheduler.sigmas[i])
            denoised = counted(sample * math.sqrt(1 + sigma**2), sigma)
        sample = scheduler.step(denoised, timestep, sample).prev_sample
    return sample, counted.calls


def run(library, peers, algorithm, schedule, denoise, noise, budget):
    """(samples, NFE) or None when the library lacks the algorithm or schedule; a string when a peer failed."""
    spelled = {"minigen": algorithm.minigen, "k-diffusion": algorithm.kdiffusion,
               "diffusers": algorithm.diffusers}[library]
    if spelled is None or (library == "diffusers" and SCHEDULES[schedule][1] is None):
        return None
    if library == "minigen":
        return run_minigen(algorithm, schedule, denoise, noise, budget)
    if peers[library] is None:
        return "not installed"
    try:
        if library == "k-diffusion":
            return run_kdiffusion(peers[library], algorithm, schedule, denoise, noise, budget)
        return run_diffusers(peers[library], algorithm, schedule, denoise, noise, budget)
    except Exception as error:  # noqa: BLE001 - a peer's failure is reported in its cell, not fatal
        return f"failed ({type(error).__name__})"


# ---------------------------------------------------------------- the two problems


def float64_spiral():
    """minigen's spiral mixture (12 modes of unequal size and weight), in float64."""
    mixture = spiral()
    mixture.means, mixture.stds, mixture.weights = (t.double() for t in (mixture.means, mixture.stds,
                                                                          mixture.weights))
    return mixture


def unit_noise(n: int, seed: int = NOISE_SEED) -> torch.Tensor:
    """The start noise, n 2, the same for every sampler."""
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def mean_l2(samples: torch.Tensor, target: torch.Tensor) -> float:
    return float((samples - target).flatten(1).norm(dim=1).mean())


def mean_rms(samples: torch.Tensor, target: torch.Tensor) -> float:
    """Per-image root mean square pixel difference ([-1, 1] pixels), averaged over the images."""
    return float((samples - target).flatten(1).pow(2).mean(1).sqrt().mean())


def heun_solution(denoise, noise, steps) -> torch.Tensor:
    sampler = HeunEDMSampler(SCHEDULES["rho 7"][0], progress=False)
    return sampler(lambda x, sigma, cond: denoise(x, sigma), noise, {}, num_steps=steps)


def reference_solution(denoise, noise, steps, error, check=slice(None)) -> tuple[torch.Tensor, float]:
    """The `steps`-step Heun endpoint, and its own error estimated from a run with half the steps (second order:
    err(n/2) ~ 4 err(n), so |x(n/2) - x(n)| ~ 3 err(n)), on the `check` part of the batch."""
    reference = heun_solution(denoise, noise, steps)
    half = heun_solution(denoise, noise[check], steps // 2)
    return reference, error(half, reference[check]) / 3


def tiny_model_problem():
    """The trained tiny_image model with CFG 3, as `denoise(x, sigma)`, and its start noise (float64 states)."""
    from minigen.recipes.tiny_image import IMAGE_SIZE, NUM_CLASSES, trained_engine

    engine = trained_engine()
    labels = torch.arange(NUM_CLASSES).repeat(TINY_IMAGES_PER_CLASS)
    cond, uncond = engine.conditioner.get_unconditional_conditioning({"label": labels},
                                                                     force_uc_zero_embeddings=["label"])
    guider = VanillaCFG(TINY_CFG)

    @torch.no_grad()
    def denoise(x, sigma):
        sigma = sigma.float()
        return guider(engine.denoise(*guider.prepare_inputs(x.float(), sigma, cond, uncond)), sigma).to(x.dtype)

    noise = torch.randn(len(labels), 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(NOISE_SEED))
    return denoise, noise.double()


# ---------------------------------------------------------------- sliced Wasserstein distance (mixture)


def directions() -> torch.Tensor:
    angles = torch.arange(NUM_DIRECTIONS, dtype=torch.float64) * math.pi / NUM_DIRECTIONS
    return torch.stack([angles.cos(), angles.sin()], dim=1)  # j 2


def exact_projected_quantiles(mixture, n: int) -> torch.Tensor:
    """Quantiles (i - 1/2) / n of the mixture projected on each direction, by bisection on its CDF (n j)."""
    levels = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    columns = []
    for direction in directions():
        means = mixture.means @ direction  # k: the projection of an isotropic mixture is a 1D mixture
        low = torch.full_like(levels, float(means.min() - 10 * mixture.stds.max()))
        high = torch.full_like(levels, float(means.max() + 10 * mixture.stds.max()))
        for _ in range(60):
            middle = (low + high) / 2
            cdf = (mixture.weights * torch.special.ndtr((middle[:, None] - means) / mixture.stds)).sum(1)
            below = cdf < levels
            low, high = torch.where(below, middle, low), torch.where(below, high, middle)
        columns.append((low + high) / 2)
    return torch.stack(columns, dim=1)


def sliced_wasserstein(samples: torch.Tensor, exact_quantiles: torch.Tensor) -> float:
    """Sliced W2 to the exact mixture: sorted projections against its exact quantiles, RMS over directions."""
    projected, _ = (samples @ directions().T).sort(dim=0)  # n j
    return float(((projected - exact_quantiles) ** 2).mean().sqrt())


def noise_floor(mixture, exact_quantiles: torch.Tensor, repeats: int = 5) -> tuple[float, float]:
    """What a perfect sampler would score with NUM_POINTS samples: sliced W2 (mean, std over draws)."""
    generator = torch.Generator().manual_seed(EXACT_SEED)
    scores = [sliced_wasserstein(mixture.sample(NUM_POINTS, generator=generator), exact_quantiles)
              for _ in range(repeats)]
    return statistics.mean(scores), statistics.stdev(scores)


# ---------------------------------------------------------------- measuring


def measure(peers, denoise, noise, reference, error, algorithms, extra=None) -> list[dict]:
    """One row per (algorithm, schedule, library, budget): the error, the NFE counted, and `extra(samples)`."""
    rows = []
    for algorithm in algorithms:
        for schedule in algorithm.schedules:
            for library in LIBRARIES:
                for budget in NFE_BUDGETS:
                    result = run(library, peers, algorithm, schedule, denoise, noise, budget)
                    if result is None:
                        continue  # the library has no such sampler or schedule: a dash in the tables
                    row = dict(label=algorithm.label, schedule=schedule, library=library, budget=budget)
                    if isinstance(result, tuple):
                        samples, nfe = result
                        assert nfe <= budget, (algorithm.label, library, nfe, budget)
                        row.update(nfe=nfe, error=error(samples, reference) if reference is not None else None,
                                   **(extra(samples) if extra else {}))
                    else:
                        row.update(missing=result)
                    rows.append(row)
    return rows


def rho_scan(mixture) -> list[dict]:
    """DEIS (order 3) on EDM schedules of several rho, on other start noise than the tables (the tuning set)."""
    noise = unit_noise(SCAN_POINTS, seed=SCAN_SEED)
    denoise = CountingDenoiser(lambda x, sigma: mixture.denoise(x, sigma))
    reference = heun_solution(denoise, noise, REFERENCE_STEPS)
    rows = []
    for rho in SCAN_RHOS:
        for budget in NFE_BUDGETS:
            sampler = DEISSampler(EDMDiscretization64(SIGMA_MIN, SIGMA_MAX, rho=rho), progress=False)
            samples = sampler(lambda x, sigma, cond: denoise(x, sigma), noise, {}, num_steps=budget)
            rows.append(dict(rho=rho, budget=budget, error=mean_l2(samples, reference)))
    return rows


def order_of_accuracy(peers, mixture) -> tuple[list[dict], float]:
    """Each library's multistep samplers with many steps (rho 7): median L2 to a 4000-step DEIS solution, and the
    slope log2(err(80) / err(320)) / 2, the order of accuracy (halving the steps multiplies the error by 2^order).
    Also returns how far the reference is from a 4000-step Heun solution (an independent check of it)."""
    noise = unit_noise(ORDER_POINTS)
    deis = next(algorithm for algorithm in ALGORITHMS if algorithm.label == "DEIS, order 3")
    reference, _ = run_minigen(deis, "rho 7", mixture.denoise, noise, ORDER_REFERENCE_STEPS)
    agreement = median_l2(heun_solution(mixture.denoise, noise, ORDER_REFERENCE_STEPS), reference)
    rows = []
    for algorithm in ALGORITHMS:
        if algorithm.label not in ORDER_LABELS:
            continue
        for library in LIBRARIES:
            results = [run(library, peers, algorithm, "rho 7", mixture.denoise, noise, steps) for steps in ORDER_STEPS]
            if all(isinstance(result, tuple) for result in results):
                errors = [median_l2(samples, reference) for samples, _ in results]
                rows.append(dict(label=algorithm.label, library=library, errors=errors,
                                 order=math.log2(errors[0] / errors[-1]) / math.log2(ORDER_STEPS[-1] / ORDER_STEPS[0])))
    return rows, agreement


def median_l2(samples: torch.Tensor, target: torch.Tensor) -> float:
    """The typical point's error (a point near the border of two modes may switch mode and dominate a mean)."""
    return float((samples - target).norm(dim=1).median())


def seconds(function) -> float:
    """CPU seconds of this process (with one thread, other users of a shared machine barely change it)."""
    start = time.process_time()
    function()
    return time.process_time() - start


def time_samplers(peers, mixture, budget: int = 25) -> list[dict]:
    """Seconds per batch at ~`budget` NFE for each library's version of each algorithm (rho 7), and for the same
    number of bare denoiser calls; fastest of TIMING_REPEATS, the contenders alternated so all see the same load."""
    rows = []
    for batch in TIMING_BATCHES:
        noise = unit_noise(batch)
        sigma = torch.full((batch,), 1.0, dtype=torch.float64)
        for algorithm in ALGORITHMS + ANCESTRAL:
            if algorithm.minigen is None:
                continue
            nfe = by_name("sampler", algorithm.minigen[0]).network_calls(steps_for_budget(algorithm, budget))
            contenders = {"bare calls": lambda nfe=nfe, noise=noise, sigma=sigma: [
                mixture.denoise(noise, sigma) for _ in range(nfe)]}
            for library in LIBRARIES:
                if isinstance(run(library, peers, algorithm, "rho 7", mixture.denoise, noise[:4], budget), tuple):
                    contenders[library] = lambda library=library, algorithm=algorithm, noise=noise: run(
                        library, peers, algorithm, "rho 7", mixture.denoise, noise, budget)
            times = {name: [] for name in contenders}
            for _ in range(TIMING_REPEATS):
                for name, function in contenders.items():
                    times[name].append(seconds(function))
            rows.append(dict(label=algorithm.label, batch=batch, nfe=nfe, **{name: min(t) for name, t in
                                                                              times.items()}))
    return rows


# ---------------------------------------------------------------- reporting


def value(rows, label, schedule, library, budget):
    for row in rows:
        if (row["label"], row["schedule"], row["library"], row["budget"]) == (label, schedule, library, budget):
            return row
    return None


def cell(row, metric="error") -> str:
    if row is None:
        return "—"
    if "missing" in row:
        return row["missing"]
    text = f"{row[metric]:.3g}"
    if row["nfe"] != row["budget"]:
        text += f" ({row['nfe']})"
    return text


def best(rows, library, budget, schedules=None, metric="error"):
    """The library's most accurate (algorithm, schedule) at this budget, among `schedules` (default: all)."""
    candidates = [row for row in rows if row["library"] == library and row["budget"] == budget
                  and "missing" not in row and row.get(metric) is not None
                  and (schedules is None or row["schedule"] in schedules)]
    return min(candidates, key=lambda row: row[metric]) if candidates else None


def describe(row, metric="error") -> str:
    if row is None:
        return "—"
    return f"**{row[metric]:.3g}** {row['label']}, {row['schedule']}"


def detail_table(rows, metric="error", algorithms=ALGORITHMS, schedules=tuple(SCHEDULES)) -> str:
    """Rows: algorithm and schedule; columns: each budget's minigen | k-diffusion | diffusers, side by side."""
    header = "| Algorithm | schedule | " + " | ".join(
        f"{library} {budget}" for budget in NFE_BUDGETS for library in LIBRARIES) + " |"
    lines = [header, "|---|---|" + "---:|" * (len(NFE_BUDGETS) * len(LIBRARIES))]
    for schedule in schedules:
        for algorithm in algorithms:
            if schedule not in algorithm.schedules:
                continue
            cells = [cell(value(rows, algorithm.label, schedule, library, budget), metric)
                     for budget in NFE_BUDGETS for library in LIBRARIES]
            lines.append(f"| {algorithm.label} | {schedule} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def headline_table(problems: dict, peers) -> str:
    """For each problem and budget: minigen's best beside each peer's best, on rho 7 and on any schedule."""
    lines = ["| problem | NFE | minigen's best | k-diffusion's best, rho 7 | diffusers' best, rho 7 "
             "| k-diffusion's best, any schedule | diffusers' best, any schedule |",
             "|---|---:|---|---|---|---|---|"]
    for name, rows in problems.items():
        for budget in NFE_BUDGETS:
            cells = [describe(best(rows, "minigen", budget))]
            for schedules in (("rho 7",), None):
                cells += [describe(best(rows, library, budget, schedules)) if peers[library] is not None
                          else "not installed" for library in LIBRARIES[1:]]
            lines.append(f"| {name} | {budget} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(problems: dict, budget: int = 10) -> str:
    """One sentence per problem: does minigen's best beat every peer's best at `budget` NFE, and by how much."""
    sentences = []
    for name, rows in problems.items():
        mine = best(rows, "minigen", budget)
        for scope, schedules in (("on the peers' default Karras schedule (rho 7)", ("rho 7",)),
                                 ("on any schedule a peer offers", None)):
            peer_best = [row for row in (best(rows, library, budget, schedules) for library in LIBRARIES[1:]) if row]
            if not peer_best:
                sentences.append(f"{name}: no peer measured.")
                continue
            strongest = min(peer_best, key=lambda row: row["error"])
            ratio = mine["error"] / strongest["error"]
            outcome = "lower than" if ratio < 1 else "not lower than"
            sentences.append(f"{name}, {scope}: minigen's best ({mine['label']}, {mine['schedule']}: "
                             f"{mine['error']:.3g}) is {outcome} the best peer's ({strongest['library']} "
                             f"{strongest['label']}, {strongest['schedule']}: {strongest['error']:.3g}), "
                             f"ratio {ratio:.2f}.")
    return "\n".join(f"- {sentence}" for sentence in sentences)


def scan_table(scan: list[dict]) -> str:
    lines = ["| rho | " + " | ".join(f"{budget} NFE" for budget in NFE_BUDGETS) + " |",
             "|---:|" + "---:|" * len(NFE_BUDGETS)]
    minima = {budget: min((row for row in scan if row["budget"] == budget), key=lambda row: row["error"])["rho"]
              for budget in NFE_BUDGETS}
    for rho in SCAN_RHOS:
        cells = [f"{row['error']:.3g}" for row in scan if row["rho"] == rho]
        cells = [f"**{text}**" if minima[budget] == rho else text for text, budget in zip(cells, NFE_BUDGETS,
                                                                                            strict=True)]
        lines.append(f"| {rho} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def order_table(orders: list[dict]) -> str:
    lines = ["| Algorithm | " + " | ".join(LIBRARIES) + " |", "|---|" + "---:|" * len(LIBRARIES)]
    for label in dict.fromkeys(row["label"] for row in orders):
        cells = []
        for library in LIBRARIES:
            row = next((row for row in orders if (row["label"], row["library"]) == (label, library)), None)
            cells.append("—" if row is None else f"{row['order']:.2f} ({row['errors'][-1]:.1e})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def timing_cell(row: dict, name: str) -> str:
    """ms per batch; for a peer, also minigen's time divided by the peer's (below 1: minigen is faster)."""
    if name not in row:
        return "—"
    text = f"{1000 * row[name]:.1f}"
    return text if name == "minigen" else f"{text} ({row['minigen'] / row[name]:.2f})"


def timing_table(timings: list[dict]) -> str:
    names = ("bare calls",) + LIBRARIES
    lines = ["| Algorithm | NFE | " + " | ".join(f"{name}, batch {batch}" for batch in TIMING_BATCHES
                                                for name in names) + " |",
             "|---|---:|" + "---:|" * (len(names) * len(TIMING_BATCHES))]
    for label in dict.fromkeys(row["label"] for row in timings):
        mine = [row for row in timings if row["label"] == label]
        cells = [timing_cell(row, name) for row in mine for name in names]
        lines.append(f"| {label} | {mine[0]['nfe']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(problems: dict) -> None:
    """Log-log error vs NFE per problem: minigen's DPM++2M (the reference's algorithm), minigen's best at 10 NFE,
    and each peer's best at 10 NFE, on rho 7 and on any schedule, each followed across the budgets."""
    figure, axes = plt.subplots(1, len(problems), figsize=(5 * len(problems), 3.8))
    colours = {"minigen": "tab:blue", "k-diffusion": "tab:orange", "diffusers": "tab:green"}
    for ax, (name, rows) in zip(np.atleast_1d(axes), problems.items(), strict=True):
        picks = [("minigen", "DPM++2M", "rho 7", ":")]
        mine = best(rows, "minigen", 10)
        picks.append(("minigen", mine["label"], mine["schedule"], "-"))
        for library in LIBRARIES[1:]:
            for schedules, style in ((("rho 7",), "--"), (None, "-.")):
                peer = best(rows, library, 10, schedules)
                if peer and (library, peer["label"], peer["schedule"], "--") not in picks:
                    picks.append((library, peer["label"], peer["schedule"], style))
        for library, label, schedule, style in picks:
            points = [value(rows, label, schedule, library, budget) for budget in NFE_BUDGETS]
            points = [row for row in points if row and "missing" not in row]
            ax.loglog([row["nfe"] for row in points], [row["error"] for row in points], style, marker="o", ms=4,
                      color=colours[library], label=f"{library}: {label}, {schedule}")
        ax.set_xticks(NFE_BUDGETS, [str(budget) for budget in NFE_BUDGETS])
        ax.minorticks_off()
        ax.set(title=name, xlabel="NFE", ylabel="error to the reference solution")
        ax.legend(fontsize=6)
    figure.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(FIGURE, dpi=80)
    plt.close(figure)


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    return (f"{model}, {os.cpu_count()} cores (shared), {platform.system()} {platform.machine()}, Python "
            f"{platform.python_version()}, torch {torch.__version__} on CPU with {torch.get_num_threads()} thread")


def peers_line(peers) -> str:
    parts = [f"{library} {peers['versions'][library]}" if peers.get(library) is not None
             else f"{library}: not installed ({peers['missing'][library]})" for library in LIBRARIES[1:]]
    return "; ".join(parts)


def report(mixture_rows, ancestral_rows, tiny_rows, scan, orders, timings, peers, facts) -> str:
    problems = {"spiral mixture": mixture_rows, "tiny image model": tiny_rows}
    floor, floor_std = facts["floor"], facts["floor_std"]
    scan_best = {budget: min((row for row in scan if row["budget"] == budget), key=lambda row: row["error"])["rho"]
                 for budget in NFE_BUDGETS}
    return f"""## Samplers: error vs NFE, minigen beside k-diffusion and diffusers

Two problems, each sampler started from the **same noise** and walking the **same sigma range**
(sigma_max = {SIGMA_MAX:g} down to sigma_min = {SIGMA_MIN:g}, then 0) with the **same NFE budget** (5, 10, 25):

- **Spiral mixture** (`minigen.data.toy2d.spiral()`, 12 modes of unequal size and weight) with its **exact**
  denoiser, in float64, {NUM_POINTS} start points (seed {NOISE_SEED}): the errors are the samplers' own. Error:
  mean L2 distance to the endpoint of a {REFERENCE_STEPS}-step Heun solution from the same noise (its own error,
  estimated from a {REFERENCE_STEPS // 2}-step run on {REFERENCE_CHECK_POINTS} points: {facts["mixture_ref"]:.1e}).
- **Tiny image model** (`minigen.recipes.tiny_image`, the committed `data/tiny_image.safetensors`, 16x16 RGB
  shapes), classifier-free guidance {TINY_CFG:g}, {TINY_IMAGES_PER_CLASS} images of each of the 4 classes, states
  in float64 and the network in float32. Error: per-image RMS pixel difference ([-1, 1] pixels), averaged, to a
  {TINY_REFERENCE_STEPS}-step Heun solution of the same model from the same noise (its own error, from a
  {TINY_REFERENCE_STEPS // 2}-step run: {facts["tiny_ref"]:.1e}).

**Peers**: {peers_line(peers)}. k-diffusion's samplers get the very sigmas minigen's do (they accept any
schedule) and the same start state; `sample_dpmpp_3m_sde` and `sample_dpmpp_2s_ancestral` run with eta = 0
(deterministic), `sample_dpm_fast` places its own steps (evenly in log sigma, ending at sigma_min) for exactly
the budget. diffusers' schedulers run in their own `set_timesteps` / `scale_model_input` / `step` loop with
`prediction_type="sample"` (the model returns the denoised image) and their defaults otherwise
(`lower_order_final`, UniPC's `bh2`, DEIS's `logrho`); they are built on DDPM betas whose noise levels span
exactly [{SIGMA_MIN:g}, {SIGMA_MAX:g}], so their `use_karras_sigmas` schedule is minigen's rho = 7 schedule and
`use_exponential_sigmas` its log-uniform one; they cannot take rho = 15. **NFE** are counted by wrapping the
denoiser: every call is one NFE (CFG's doubled batch counts once); the count is shown in parentheses only where a
sampler spends fewer than the budget (Heun-like samplers spend 2 per step except the last, so 5/9/25).

Schedules: **rho 7** is EDM's and the reference's (`EDMDiscretization`, the official default, unchanged);
**rho 15** is `TunedEDMDiscretization`, new (its choice: the scan below); **log-uniform** is
`ExponentialDiscretization`. New samplers: `DPMPP3MSampler` (DPM-Solver++(3M)), `DEISSampler` (DEIS, order 3)
and `UniPCSampler` (UniPC, varying-coefficient variant, order 2 + corrector); all three pipelines-selectable by
name (`sampler="DEISSampler"`).

**Headline: each library's most accurate choice** (error, algorithm, schedule; "any schedule" includes rho 15
for k-diffusion, which takes any sigmas):

{headline_table(problems, peers)}

At 10 NFE:

{verdict(problems)}

![Error vs NFE, log-log: minigen and its peers on both problems](figures/samplers_error_vs_nfe.png)

**Spiral mixture, mean L2 to the reference endpoint**, each budget's minigen | k-diffusion | diffusers side by
side (— the library has no such sampler or schedule):

{detail_table(mixture_rows)}

**Tiny image model, RMS pixel error to the {TINY_REFERENCE_STEPS}-step solution**, laid out the same way:

{detail_table(tiny_rows)}

**Spiral mixture, sliced Wasserstein-2 distance to the exact mixture** ({NUM_DIRECTIONS} evenly spaced
projections, sorted samples against the projected mixture's exact quantiles): the one measure that also applies
to ancestral samplers (minigen's and k-diffusion's each draw their own noise, seeded). With {NUM_POINTS} points
even exact samples score {floor:.3g} ± {floor_std:.2g} (the reference path scores {facts["reference_sw2"]:.3g}),
so differences below ~{2 * floor_std:.2g} are noise. rho 7 only (the other schedules rank as in the L2 table).

{detail_table(mixture_rows + ancestral_rows, "sw2", ALGORITHMS + ANCESTRAL, ("rho 7",))}

**The rho scan that chose rho 15**: DEIS (order 3), mean L2 on the mixture, but from other start noise
({SCAN_POINTS} points, seed {SCAN_SEED}) against their own {REFERENCE_STEPS}-step Heun solution; bold: the best
rho of each budget (5 NFE: {scan_best[5]}, 10 NFE: {scan_best[10]}, 25 NFE: {scan_best[25]}). The tiny model
took no part in the choice.

{scan_table(scan)}

**Order of accuracy** (mixture, rho 7, {ORDER_POINTS} points, {"/".join(map(str, ORDER_STEPS))} steps): the
slope of log(error) against log(steps), and in parentheses the median L2 error at {ORDER_STEPS[-1]} steps, to a
{ORDER_REFERENCE_STEPS}-step DEIS solution (which agrees with {ORDER_REFERENCE_STEPS} Heun steps to
{facts["order_reference"]:.1e}). The DPM-Solver++(3M) of k-diffusion and diffusers gives the quadratic's second
difference half the weight that integrating the quadratic exactly gives, and converges at order ~2; minigen's
DPMPP3MSampler integrates it exactly and converges at order ~3 (at 5-10 NFE the halved term happens to overshoot
less). UniPC's orders include the corrector's extra order. diffusers' DEIS computes its coefficients
as differences of nearly equal float32 numbers, so its error grows again beyond ~80 steps (a negative slope);
at 5-25 NFE it matches minigen's DEIS. LMS (order 4, in sigma) stalls alike in all three libraries.

{order_table(orders)}

**Time per batch at ~25 NFE** (ms of process CPU time, fastest of {TIMING_REPEATS}, the contenders alternated so
all see the same load; mixture, rho 7), beside the same number of bare `mixture.denoise` calls; in parentheses,
minigen's time divided by that column's (below 1: minigen is faster than the peer or, for bare calls, the
sampler's own overhead):

{timing_table(timings)}

Machine: {machine()}. Whole script: {facts["seconds"]:.0f} s. Regenerate with `{REGENERATE}`."""


def main() -> None:
    torch.set_num_threads(1)  # a shared 2-core machine: one thread gives steadier timings
    start = time.perf_counter()
    peers = load_peers()
    facts = {}

    mixture = float64_spiral()
    noise = unit_noise(NUM_POINTS)
    reference, facts["mixture_ref"] = reference_solution(mixture.denoise, noise, REFERENCE_STEPS, mean_l2,
                                                         slice(0, REFERENCE_CHECK_POINTS))
    exact_quantiles = exact_projected_quantiles(mixture, NUM_POINTS)
    facts["floor"], facts["floor_std"] = noise_floor(mixture, exact_quantiles)
    facts["reference_sw2"] = sliced_wasserstein(reference, exact_quantiles)

    def sw2(samples):
        return {"sw2": sliced_wasserstein(samples, exact_quantiles)}

    mixture_rows = measure(peers, mixture.denoise, noise, reference, mean_l2, ALGORITHMS, sw2)
    ancestral_rows = measure(peers, mixture.denoise, noise, None, mean_l2, ANCESTRAL, sw2)
    print("mixture done", round(time.perf_counter() - start), "s", flush=True)

    tiny_denoise, tiny_noise = tiny_model_problem()
    tiny_reference, facts["tiny_ref"] = reference_solution(tiny_denoise, tiny_noise, TINY_REFERENCE_STEPS, mean_rms)
    tiny_rows = measure(peers, tiny_denoise, tiny_noise, tiny_reference, mean_rms, ALGORITHMS)
    print("tiny model done", round(time.perf_counter() - start), "s", flush=True)

    scan = rho_scan(mixture)
    orders, facts["order_reference"] = order_of_accuracy(peers, mixture)
    timings = time_samplers(peers, mixture)
    plot({"spiral mixture (mean L2)": mixture_rows, "tiny image model (RMS)": tiny_rows})
    facts["seconds"] = time.perf_counter() - start
    markdown = report(mixture_rows, ancestral_rows, tiny_rows, scan, orders, timings, peers, facts)
    write_section("samplers", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
