"""Sampler accuracy against cost: error versus network function evaluations (NFE) on a 2D mixture.

The spiral Gaussian mixture of `minigen.data.toy2d` has an exact denoiser, so every error measured here is
the sampler's own discretisation error, not a network's. Deterministic samplers are compared with a
1000-step Heun solution of the same ODE from the same start noise; all samplers (ancestral ones too) are
compared with the exact mixture through a sliced Wasserstein-2 distance. Also timed: each sampler against
the bare cost of its NFE denoiser calls.

Run `python benchmarks/samplers.py` (about a minute on 2 CPU cores). It rewrites the `samplers` section
of docs/benchmarks.md and docs/figures/samplers_error_vs_nfe.png.
"""

import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from minigen.data.toy2d import spiral  # noqa: E402
from minigen.diffusion import EDMDiscretization, by_name  # noqa: E402
from minigen.diffusion.samplers import nfe_per_call  # noqa: E402

FIGURE = Path(__file__).resolve().parent.parent / "docs" / "figures" / "samplers_error_vs_nfe.png"
NFE_BUDGETS = (5, 10, 25, 50)
NUM_POINTS = 20_000  # samples per run: the sliced W2 noise floor shrinks only like NUM_POINTS^(-1/4)
REFERENCE_STEPS = 1000  # Heun steps of the reference ODE solution
NUM_DIRECTIONS = 64  # projections of the sliced Wasserstein distance, evenly spaced in angle
REFERENCE_CHECK_POINTS = 2000  # points on which the reference's own error is estimated
TIMING_BATCHES = (256, 4096)
TIMING_REPEATS = 9
NOISE_SEED, SAMPLER_SEED, EXACT_SEED = 0, 1, 2
DETERMINISTIC = ("EulerEDMSampler", "HeunEDMSampler", "DPMPP2MSampler", "LinearMultistepSampler")
ANCESTRAL = ("EulerAncestralSampler", "DPMPP2SAncestralSampler")
SHORT_NAMES = {
    "EulerEDMSampler": "Euler", "HeunEDMSampler": "Heun", "DPMPP2MSampler": "DPM++2M",
    "LinearMultistepSampler": "LMS", "EulerAncestralSampler": "Euler ancestral",
    "DPMPP2SAncestralSampler": "DPM++2S ancestral",
}
REGENERATE = "python benchmarks/samplers.py"
PEER_NOTE = (
    "**Peer (k-diffusion): not measured.** `pip install k-diffusion` (0.1.1.post1) does not install "
    "cleanly in minigen's environment: its dependency `dctorch` 0.1.2 pins `numpy<2.0`, so pip can only "
    "install it by downgrading numpy (2.4.6 to 1.26.4), which breaks `rembg` (it needs `numpy>=2.3`; "
    "minigen's `[vision]` and `[dev]` extras). It was not forced, so this section has no minigen vs "
    "k-diffusion columns and the `bench` extra in pyproject.toml stays empty. The timing table above "
    "compares each sampler with the bare cost of its denoiser calls instead."
)


class EDMDiscretization64(EDMDiscretization):
    """The EDM schedule in float64, so that the 1000-step reference is not limited by float32 sigmas."""

    def get_sigmas(self, n: int, device="cpu") -> torch.Tensor:
        return super().get_sigmas(n, device=device).double()


SCHEDULE = EDMDiscretization64(sigma_min=0.002, sigma_max=80.0, rho=7.0)


def float64_spiral():
    """minigen's spiral mixture (12 modes of unequal size and weight), in float64."""
    mixture = spiral()
    mixture.means, mixture.stds, mixture.weights = (t.double() for t in (mixture.means, mixture.stds,
                                                                          mixture.weights))
    return mixture


def unit_noise(n: int) -> torch.Tensor:
    """The start noise, n 2, the same for every sampler."""
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(NOISE_SEED), dtype=torch.float64)


def steps_for_budget(name: str, budget: int) -> int:
    """The most steps whose NFE stays within `budget` (second-order samplers spend 2 NFE per step)."""
    steps = 1
    while nfe_per_call(name, steps + 1) <= budget:
        steps += 1
    return steps


def run_sampler(mixture, name: str, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
    """One sampler run from unit start noise (the sampler rescales it by sqrt(1 + sigma_0^2))."""
    sampler = by_name("sampler", name)(SCHEDULE, progress=False)
    generator = torch.Generator().manual_seed(SAMPLER_SEED)  # used by the ancestral samplers only
    return sampler(mixture.as_denoiser(), noise, {}, num_steps=num_steps, generator=generator)


def reference_solution(mixture, noise: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The 1000-step Heun endpoint, and its own error estimated from a 500-step run (Heun is 2nd order).

    Points do not interact, so the estimate is made on the first REFERENCE_CHECK_POINTS points only.
    """
    reference = run_sampler(mixture, "HeunEDMSampler", noise, REFERENCE_STEPS)
    subset = slice(0, REFERENCE_CHECK_POINTS)
    half = run_sampler(mixture, "HeunEDMSampler", noise[subset], REFERENCE_STEPS // 2)
    # second order: err(n/2) ~ 4 err(n), so |x(n/2) - x(n)| ~ 3 err(n)
    return reference, mean_l2(half, reference[subset]) / 3


def mean_l2(samples: torch.Tensor, target: torch.Tensor) -> float:
    return float((samples - target).norm(dim=1).mean())


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


def noise_floor(mixture, exact_quantiles: torch.Tensor, repeats: int = 5) -> tuple[float, float, float]:
    """What a perfect sampler would score with NUM_POINTS samples: sliced W2 (mean, std over draws), NLL."""
    generator = torch.Generator().manual_seed(EXACT_SEED)
    draws = [mixture.sample(NUM_POINTS, generator=generator) for _ in range(repeats)]
    scores = [sliced_wasserstein(samples, exact_quantiles) for samples in draws]
    nll = float(-mixture.log_density(torch.cat(draws)).mean())
    return statistics.mean(scores), statistics.stdev(scores), nll


def measure_errors(mixture, noise, reference, exact_quantiles) -> list[dict]:
    """One row per (sampler, NFE budget): steps, actual NFE, L2 to the reference, sliced W2 to the mixture."""
    rows = []
    for name in DETERMINISTIC + ANCESTRAL:
        for budget in NFE_BUDGETS:
            steps = steps_for_budget(name, budget)
            samples = run_sampler(mixture, name, noise, steps)
            rows.append(dict(name=name, budget=budget, steps=steps, nfe=nfe_per_call(name, steps),
                             l2=mean_l2(samples, reference) if name in DETERMINISTIC else None,
                             sw2=sliced_wasserstein(samples, exact_quantiles),
                             nll=float(-mixture.log_density(samples).mean())))
    return rows


def seconds(function) -> float:
    """CPU seconds of this process (with one thread, other users of a shared machine barely change it)."""
    start = time.process_time()
    function()
    return time.process_time() - start


def best_seconds(first, second) -> tuple[float, float]:
    """Fastest of TIMING_REPEATS runs of each function, alternating them so both see the same machine load."""
    pairs = [(seconds(first), seconds(second)) for _ in range(TIMING_REPEATS)]
    return min(pair[0] for pair in pairs), min(pair[1] for pair in pairs)


def time_samplers(mixture, budget: int = 25) -> list[dict]:
    """Seconds per batch for each sampler at ~`budget` NFE, and for its NFE bare denoiser calls."""
    rows = []
    for batch in TIMING_BATCHES:
        noise = unit_noise(batch)
        sigma = torch.full((batch,), 1.0, dtype=torch.float64)
        for name in DETERMINISTIC + ANCESTRAL:
            steps = steps_for_budget(name, budget)
            nfe = nfe_per_call(name, steps)
            sampler_time, bare_time = best_seconds(
                lambda: run_sampler(mixture, name, noise, steps),  # noqa: B023
                lambda: [mixture.denoise(noise, sigma) for _ in range(nfe)],  # noqa: B023
            )
            rows.append(dict(name=name, batch=batch, nfe=nfe, sampler=sampler_time, bare=bare_time))
    return rows


def plot(rows: list[dict], floor: float) -> None:
    """Log-log error vs NFE: L2 to the reference (deterministic) and sliced W2 to the mixture (all)."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name in DETERMINISTIC + ANCESTRAL:
        mine = [row for row in rows if row["name"] == name]
        nfes = [row["nfe"] for row in mine]
        style = "-o" if name in DETERMINISTIC else "--s"
        if name in DETERMINISTIC:
            left.loglog(nfes, [row["l2"] for row in mine], style, label=SHORT_NAMES[name], ms=4)
        right.loglog(nfes, [row["sw2"] for row in mine], style, label=SHORT_NAMES[name], ms=4)
    right.axhline(floor, color="gray", lw=1, ls=":", label="exact samples")
    right.set_ylim(bottom=floor / 2)
    for axes in (left, right):
        axes.set_xticks(NFE_BUDGETS, [str(budget) for budget in NFE_BUDGETS])
        axes.minorticks_off()
    left.set(title="Deterministic: mean L2 to reference", xlabel="NFE", ylabel="error")
    right.set(title="All: sliced W2 to the mixture", xlabel="NFE")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    figure.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(FIGURE, dpi=80)
    plt.close(figure)


def winners(rows: list[dict], metric: str, names, margin: float = 0.0) -> dict[int, str]:
    """For each budget, the sampler with the smallest `metric`, plus any within `margin` of it (a tie)."""
    result = {}
    for budget in NFE_BUDGETS[:3]:
        candidates = sorted((row for row in rows if row["budget"] == budget and row["name"] in names),
                            key=lambda row: row[metric])
        best = candidates[0]
        tied = [row for row in candidates[1:] if row[metric] - best[metric] <= margin]
        text = f"{SHORT_NAMES[best['name']]} ({best[metric]:.3g} at {best['nfe']} NFE)"
        if tied:
            text += ", tied within noise with " + ", ".join(
                f"{SHORT_NAMES[row['name']]} ({row[metric]:.3g})" for row in tied)
        result[budget] = text
    return result


def error_table(rows: list[dict], metric: str, names, extra_rows=()) -> str:
    header = "| Sampler | " + " | ".join(f"~{budget} NFE" for budget in NFE_BUDGETS) + " |"
    lines = [header, "|---" * (len(NFE_BUDGETS) + 1) + "|"]
    for name in names:
        cells = [f"{row[metric]:.3g} ({row['nfe']})" for row in rows if row["name"] == name]
        lines.append(f"| {SHORT_NAMES[name]} | " + " | ".join(cells) + " |")
    lines += [f"| {label} | " + " | ".join([value] * len(NFE_BUDGETS)) + " |" for label, value in extra_rows]
    return "\n".join(lines)


def timing_table(timings: list[dict]) -> str:
    lines = ["| Sampler | NFE | " + " | ".join(
        f"ms / batch of {batch} | sampler / bare calls" for batch in TIMING_BATCHES) + " |",
        "|---|---|" + "---|---|" * len(TIMING_BATCHES)]
    for name in DETERMINISTIC + ANCESTRAL:
        mine = [row for row in timings if row["name"] == name]
        cells = [f"{1000 * row['sampler']:.1f} | {row['sampler'] / row['bare']:.2f}" for row in mine]
        lines.append(f"| {SHORT_NAMES[name]} | {mine[0]['nfe']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    return (f"{model}, {os.cpu_count()} cores (shared), torch {torch.__version__} on CPU with "
            f"{torch.get_num_threads()} thread, float64")


def report(rows, timings, reference_error, floor, floor_std, reference_sw2, exact_nll, seconds) -> str:
    """The markdown section: setup, winners, the two error tables, timing, peer note, how to rerun."""
    margin = 2 * floor_std
    overall = winners(rows, "sw2", DETERMINISTIC + ANCESTRAL, margin)
    deterministic = winners(rows, "l2", DETERMINISTIC)
    ancestral_nll = min((row for row in rows if row["name"] in ANCESTRAL and row["budget"] == 25),
                        key=lambda row: row["nll"])
    winner_lines = "\n".join(
        f"- **~{budget} NFE**: all samplers, sliced W2: {overall[budget]}. Deterministic samplers, "
        f"L2 to the reference path: {deterministic[budget]}." for budget in NFE_BUDGETS[:3])
    reference_nfe = nfe_per_call("HeunEDMSampler", REFERENCE_STEPS)
    smallest_l2 = min(row["l2"] for row in rows if row["l2"] is not None)
    extra = [("exact mixture samples (noise floor)", f"{floor:.3g} ± {floor_std:.2g}"),
             (f"reference: Heun, {REFERENCE_STEPS} steps", f"{reference_sw2:.3g}")]
    return f"""## Samplers: error vs NFE

Every minigen sampler on the `spiral()` Gaussian mixture (12 modes of unequal size and weight) with its
**exact** denoiser, so the errors are the samplers' own. Schedule: `EDMDiscretization(sigma_min=0.002,
sigma_max=80, rho=7)` followed by sigma = 0, computed in float64. {NUM_POINTS} start points of unit
noise (seed {NOISE_SEED}), the same for every sampler; ancestral noise from `torch.Generator` seed
{SAMPLER_SEED}. NFE budgets ~5/10/25/50: each sampler gets the most steps whose NFE stays within the
budget (Heun and DPM++2S ancestral spend 2 NFE per step, 1 on the final step to sigma = 0, so they get
3/5/13/25 steps = 5/9/25/49 NFE); each cell shows the **actual NFE in parentheses**. With only 3 or 5
steps, Heun's steps are too long and it does worse than Euler at the same NFE.

Winners (lowest error; "tied" means within 2 standard deviations of the noise floor's spread):

{winner_lines}

**Deterministic samplers: mean L2 distance to the reference endpoint.** Reference: Heun with
{REFERENCE_STEPS} steps ({reference_nfe} NFE) from the same start noise; its own error, estimated from a
{REFERENCE_STEPS // 2}-step run on {REFERENCE_CHECK_POINTS} of the points, is {reference_error:.1e},
{smallest_l2 / reference_error:.0f}x below the smallest entry. LMS uses order 4 (minigen's default).
Ancestral samplers follow a different (random) path, so this metric does not apply to them.

{error_table(rows, "l2", DETERMINISTIC)}

**All samplers: sliced Wasserstein-2 distance to the exact mixture** ({NUM_DIRECTIONS} evenly spaced
projections; each projection's sorted samples against the exact quantiles of the projected mixture). A
distribution distance is the only fair way to put ancestral and deterministic samplers in one table:
both should produce mixture samples, but only the deterministic ones follow the reference path. Average
negative log-likelihood was not used because it is not a distance: samples piled too tightly on the modes
score *better* than exact samples ({SHORT_NAMES[ancestral_nll["name"]]} at {ancestral_nll["nfe"]} NFE:
{ancestral_nll["nll"]:.3f} nats against {exact_nll:.3f} for exact samples). With {NUM_POINTS} points even
exact samples score {floor:.3g} (the mixture's mode weights fluctuate in any finite sample), so
differences below ~{margin:.2g} are noise.

{error_table(rows, "sw2", DETERMINISTIC + ANCESTRAL, extra)}

![Error vs NFE, log-log](figures/samplers_error_vs_nfe.png)

**Time per sample batch at ~25 NFE** (process CPU time, fastest of {TIMING_REPEATS}: the machine is
shared, so wall time is noisy), and the ratio to the same number of bare `mixture.denoise` calls on the
same batch, alternated with the sampler runs (1.00 = no sampler overhead). This is minigen against its
own floor, not against a peer (see below):

{timing_table(timings)}

{PEER_NOTE}

Machine: {machine()}. Whole script: {seconds:.0f} s. Regenerate with `{REGENERATE}`."""


def main() -> None:
    torch.set_num_threads(1)  # a shared 2-core machine: one thread gives steadier timings
    start = time.perf_counter()
    mixture = float64_spiral()
    noise = unit_noise(NUM_POINTS)
    reference, reference_error = reference_solution(mixture, noise)
    exact_quantiles = exact_projected_quantiles(mixture, NUM_POINTS)
    floor, floor_std, exact_nll = noise_floor(mixture, exact_quantiles)
    rows = measure_errors(mixture, noise, reference, exact_quantiles)
    timings = time_samplers(mixture)
    plot(rows, floor)
    markdown = report(rows, timings, reference_error, floor, floor_std,
                      sliced_wasserstein(reference, exact_quantiles), exact_nll, time.perf_counter() - start)
    write_section("samplers", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
