"""Samplers: numerical solvers that walk a noise sample down a sigma schedule to a clean sample.

Every sampler is called as `sampler(denoiser, x, cond, uc=None, num_steps=None)` where `x` is
unit-variance noise (the sampler scales it by sqrt(1 + sigma_0^2) itself, as the reference does)
and `denoiser(x, sigma, cond)` returns the denoised estimate. Keyword-only extras: `callback`,
called after every step as `callback(x, denoised, sigma, step)`; `generator` (a torch.Generator)
or `noise_sampler` (a function `like -> noise`) for the stochastic samplers. The callback's `sigma` is
the sigma the step's first denoiser call saw: sigma_hat, after churn, for the EDM samplers (Euler, Heun).
Each sampler's `network_calls(num_steps)` says how many denoiser calls a run costs.
Taught in notebook 03; corresponds to the reference's `sgm/modules/diffusionmodules/sampling.py`,
itself derived from k-diffusion.
"""

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from .guiders import IdentityGuider


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE's derivative dx/dsigma = (x - D(x, sigma)) / sigma."""
    return (x - denoised) / sigma


def ancestral_step_sizes(sigma: torch.Tensor, next_sigma: torch.Tensor, eta: float = 1.0):
    """Split a step sigma -> next_sigma into a deterministic part down to sigma_down and fresh noise sigma_up.

    sigma_down^2 + sigma_up^2 = next_sigma^2; eta = 0 gives a deterministic (DDIM-like) step.
    """
    if not eta:
        return next_sigma, torch.zeros_like(next_sigma)
    sigma_up = torch.minimum(next_sigma, eta * (next_sigma**2 * (sigma**2 - next_sigma**2) / sigma**2) ** 0.5)
    sigma_down = (next_sigma**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def lms_coefficient(order: int, sigmas: np.ndarray, i: int, j: int) -> float:
    """Weight of the derivative from step i - j in a linear multistep step sigmas[i] -> sigmas[i + 1].

    It is the integral over [sigmas[i], sigmas[i + 1]] of the Lagrange polynomial that is 1 at
    sigmas[i - j] and 0 at the other `order - 1` recent sigmas. Gauss-Legendre quadrature with
    `order` nodes integrates that degree `order - 1` polynomial exactly.
    """
    nodes, weights = np.polynomial.legendre.leggauss(order)
    start, end = float(sigmas[i]), float(sigmas[i + 1])
    taus = 0.5 * (end - start) * nodes + 0.5 * (end + start)

    def basis(tau):
        value = 1.0
        for k in range(order):
            if k != j:
                value *= (tau - sigmas[i - k]) / (sigmas[i - j] - sigmas[i - k])
        return value

    return float(0.5 * (end - start) * np.sum(weights * basis(taus)))


def _check_num_steps(num_steps) -> int:
    if num_steps is None:
        raise ValueError("No num_steps: pass num_steps to the sampler's constructor or to the call.")
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}.")
    return int(num_steps)


class BaseSampler:
    """What every sampler shares: the schedule, the guider, the start-noise rescale and the step loop.

    Subclasses implement `sample(model, x, sigmas, noise, callback)` where `model(x, sigma)` is
    the guided denoiser at a scalar sigma and `noise(like)` draws fresh noise, and set
    `network_calls_per_step`.
    """

    network_calls_per_step = 1  # denoiser calls per step, but for the last one (see `network_calls`)

    def __init__(self, discretization, num_steps: int | None = None, guider=None, progress: bool = True,
                 device="cpu"):
        if num_steps is not None:
            _check_num_steps(num_steps)
        self.discretization = discretization  # a minigen.diffusion.discretization schedule
        self.num_steps = num_steps  # default number of steps; the call may override it
        self.guider = guider if guider is not None else IdentityGuider()
        self.progress = progress  # show a tqdm progress bar over the steps
        self.device = device
        self.step = None  # the index of the step being taken during a run (see `steps`)

    def __call__(self, denoiser, x: torch.Tensor, cond: dict, uc: dict | None = None, num_steps: int | None = None,
                 *, callback=None, generator: torch.Generator | None = None, noise_sampler=None) -> torch.Tensor:
        """A whole run from unit noise `x`: the schedule, the start-noise rescale, the guided
        denoiser at each sigma, the noise source, then the sampler's `sample`."""
        sigmas = self.sigmas(num_steps, device=x.device)
        uc = cond if uc is None else uc
        x = self.start(x, sigmas)

        def model(x_now, sigma):
            sigma_batch = x_now.new_ones([x_now.shape[0]]) * sigma  # b
            return self.denoise(x_now, denoiser, sigma_batch, cond, uc)

        if noise_sampler is None:
            def noise_sampler(like):
                return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)

        return self.sample(model, x, sigmas, noise_sampler, callback or (lambda *args: None))

    def sigmas(self, num_steps: int | None = None, device="cpu") -> torch.Tensor:
        """The schedule of a run of `num_steps` (default: the sampler's), high to low, ending at 0."""
        return self.discretization(_check_num_steps(self.num_steps if num_steps is None else num_steps), device=device)

    @staticmethod
    def start(x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        """The run's first state from the call's `x`: unit noise scaled to noise at sigma_0 (on top of the signal)."""
        return x * torch.sqrt(1.0 + sigmas[0] ** 2.0)

    def input_for(self, x_noisy: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        """What to pass as `x` so that the run starts from `x_noisy`, a latent already at the schedule's first sigma.

        The call takes unit-variance noise and scales it by sqrt(1 + sigma_0^2) (`start`, the reference's
        convention); a latent that already carries noise sigma_0 (img2img, a refiner finishing another model's
        trajectory) is divided by the same factor first.
        """
        sigma_0 = self.sigmas(num_steps, device=x_noisy.device)[0]
        return x_noisy / torch.sqrt(1.0 + sigma_0**2.0)

    def denoise(self, x, denoiser, sigma, cond, uc) -> torch.Tensor:
        """One guided denoiser evaluation: double the batch if the guider wants to, then mix."""
        denoised = denoiser(*self.guider.prepare_inputs(x, sigma, cond, uc))
        return self.guider(denoised, sigma)

    def steps(self, sigmas: torch.Tensor):
        """Indices 0 .. len(sigmas) - 2 of the steps sigmas[i] -> sigmas[i + 1], with a progress bar.

        `self.step` holds the index of the step being taken, for denoisers whose conditioning changes from one
        step to the next (SV4D's dense windows alternate their direction).
        """
        for step in tqdm(range(len(sigmas) - 1), desc=type(self).__name__, disable=not self.progress, leave=False):
            self.step = step
            yield step

    def sample(self, model, x, sigmas, noise, callback) -> torch.Tensor:
        """Walk `x` down `sigmas`: the algorithm itself, written by each sampler."""
        raise NotImplementedError

    @classmethod
    def network_calls(cls, num_steps: int) -> int:
        """Denoiser calls (the guider's doubled batch counting once) of a run of `num_steps` steps.

        Every step costs `network_calls_per_step` but the last: it goes to sigma = 0 (where every minigen schedule
        ends), where a second-order sampler has nothing to correct, so it takes one call (2 n - 1 for Heun).
        """
        return (_check_num_steps(num_steps) - 1) * cls.network_calls_per_step + 1


class EDMSampler(BaseSampler):
    """Karras et al. (2022), "Elucidating the Design Space of Diffusion-Based Generative Models", Algorithm 2:
    the deterministic ODE steps plus optional "churn", which the Euler and Heun samplers share.

    With churn, each step first adds noise to go up from sigma to sigma_hat = sigma (1 + gamma), for sigmas
    inside [s_tmin, s_tmax], and then steps from sigma_hat; with s_churn = 0 (the default) the steps are
    deterministic (Heun's: Algorithm 1).
    """

    def __init__(self, *args, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"),
                 s_noise: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.s_churn = s_churn  # total amount of noise re-injected over the whole trajectory
        self.s_tmin = s_tmin  # churn only for sigmas in [s_tmin, s_tmax]
        self.s_tmax = s_tmax
        self.s_noise = s_noise  # scale of the re-injected noise (slightly > 1 compensates detail loss)

    def churn(self, x, sigma, num_steps: int, noise):
        """Algorithm 2's churn: (x noised up to sigma_hat, sigma_hat), gamma = min(s_churn / num_steps, sqrt(2) - 1)
        inside [s_tmin, s_tmax], 0 (x and sigma as they are) outside."""
        gamma = min(self.s_churn / num_steps, 2**0.5 - 1) if self.s_tmin <= sigma <= self.s_tmax else 0.0
        sigma_hat = sigma * (gamma + 1.0)
        if gamma > 0:
            x = x + noise(x) * self.s_noise * (sigma_hat**2 - sigma**2) ** 0.5
        return x, sigma_hat


class EulerEDMSampler(EDMSampler):
    """Euler steps on the probability-flow ODE: Karras et al. (2022), Algorithm 2 without its second-order
    correction (the default of SDXL and all video models). One network call per step."""

    def sample(self, model, x, sigmas, noise, callback):
        for i in self.steps(sigmas):
            # Increase noise temporarily.
            x, sigma_hat = self.churn(x, sigmas[i], len(sigmas) - 1, noise)
            # Euler step.
            denoised = model(x, sigma_hat)
            d = to_d(x, sigma_hat, denoised)
            x = x + (sigmas[i + 1] - sigma_hat) * d
            callback(x, denoised, sigma_hat, i)
        return x


class HeunEDMSampler(EDMSampler):
    """Heun's second-order steps: Karras et al. (2022), Algorithm 2 (Algorithm 1 without churn).

    The Euler step's end is corrected with the average of the slopes at both ends: two network calls per
    step, but one on the last step, to sigma = 0, where the slope is undefined and Euler is kept.
    """

    network_calls_per_step = 2

    def sample(self, model, x, sigmas, noise, callback):
        for i in self.steps(sigmas):
            next_sigma = sigmas[i + 1]
            # Increase noise temporarily.
            x, sigma_hat = self.churn(x, sigmas[i], len(sigmas) - 1, noise)
            # Euler step.
            denoised = model(x, sigma_hat)
            d = to_d(x, sigma_hat, denoised)
            x_next = x + (next_sigma - sigma_hat) * d
            # Apply 2nd order correction.
            if next_sigma > 0:
                d_next = to_d(x_next, next_sigma, model(x_next, next_sigma))
                x_next = x + (d + d_next) / 2.0 * (next_sigma - sigma_hat)
            x = x_next
            callback(x, denoised, sigma_hat, i)
        return x


class AncestralSampler(BaseSampler):
    """Samplers that step down below the next sigma and then add fresh noise back up to it.

    The split of each step (`ancestral_step_sizes`) is DDIM's generalised step (Song et al. 2021, "Denoising
    Diffusion Implicit Models", eq. 12) written in sigma: eta = 1 samples as DDPM's ancestral sampler (Ho et al.
    2020, Algorithm 2), eta = 0 is deterministic. The callback's `sigma` is the step's sigma.
    """

    def __init__(self, *args, eta: float = 1.0, s_noise: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.eta = eta  # 0: deterministic; 1: full ancestral sampling
        self.s_noise = s_noise

    def sample(self, model, x, sigmas, noise, callback):
        for i in self.steps(sigmas):
            sigma, next_sigma = sigmas[i], sigmas[i + 1]
            sigma_down, sigma_up = ancestral_step_sizes(sigma, next_sigma, self.eta)
            x, denoised = self.step_down(model, x, sigma, sigma_down)
            fresh_noise = noise(x)  # drawn on every step, also the last, as the reference does
            if next_sigma > 0:
                x = x + fresh_noise * self.s_noise * sigma_up
            callback(x, denoised, sigma, i)
        return x

    def step_down(self, model, x, sigma, sigma_down):
        """Deterministic move from sigma to sigma_down; returns (x, the first denoised estimate). Each ancestral
        sampler writes its own."""
        raise NotImplementedError


class EulerAncestralSampler(AncestralSampler):
    """Ancestral sampling with Euler steps (k-diffusion's `sample_euler_ancestral`): an Euler step on the
    probability-flow ODE (Karras et al. 2022) down to sigma_down, then fresh noise up to the next sigma; with an
    exact denoiser this is the DDIM / DDPM step of `AncestralSampler`. One network call per step (SDXL-Turbo's)."""

    def step_down(self, model, x, sigma, sigma_down):
        denoised = model(x, sigma)
        return x + (sigma_down - sigma) * to_d(x, sigma, denoised), denoised


def neg_log(sigma: torch.Tensor) -> torch.Tensor:
    """DPM-Solver's time variable t = -log(sigma)."""
    return sigma.log().neg()


def sigma_of(t: torch.Tensor) -> torch.Tensor:
    """The sigma at DPM-Solver's time t: exp(-t), the inverse of `neg_log`."""
    return t.neg().exp()


class DPMPP2SAncestralSampler(AncestralSampler):
    """DPM-Solver++(2S) (Lu et al. 2022, "DPM-Solver++", Algorithm 1) with ancestral noise: a second-order
    single-step solver that evaluates the model again at the midpoint in log-sigma. Two network calls per step,
    one on the last (an Euler step to sigma = 0)."""

    network_calls_per_step = 2

    def step_down(self, model, x, sigma, sigma_down):
        denoised = model(x, sigma)
        if sigma_down <= 0:
            return x + (sigma_down - sigma) * to_d(x, sigma, denoised), denoised  # last step: Euler
        t, t_next = neg_log(sigma), neg_log(sigma_down)
        h = t_next - t
        t_mid = t + 0.5 * h
        x_mid = (sigma_of(t_mid) / sigma_of(t)) * x - (-0.5 * h).expm1() * denoised
        denoised_mid = model(x_mid, sigma_of(t_mid))
        return (sigma_of(t_next) / sigma_of(t)) * x - (-h).expm1() * denoised_mid, denoised


class DPMPP2MSampler(BaseSampler):
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): second order by reusing the previous
    step's estimate, one network call per step.

    The first step, and a step to sigma = 0, are first order (no previous estimate / nothing to correct).
    """

    def sample(self, model, x, sigmas, noise, callback):
        previous_denoised = None
        for i in self.steps(sigmas):
            sigma, next_sigma = sigmas[i], sigmas[i + 1]
            denoised = model(x, sigma)
            t, t_next = neg_log(sigma), neg_log(next_sigma)
            h = t_next - t
            decay, weight = sigma_of(t_next) / sigma_of(t), (-h).expm1()
            estimate = denoised
            if previous_denoised is not None and next_sigma > 0:
                r = (t - neg_log(sigmas[i - 1])) / h  # ratio of the previous step to this one
                estimate = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous_denoised
            x = decay * x - weight * estimate
            previous_denoised = denoised
            callback(x, denoised, sigma, i)
        return x


class LinearMultistepSampler(BaseSampler):
    """The explicit Adams (Adams-Bashforth) linear multistep method with variable steps (Hairer, Norsett & Wanner,
    "Solving Ordinary Differential Equations I", chapter III) on the probability-flow ODE in sigma, using the last
    `order` slopes (k-diffusion's `sample_lms`). One network call per step.

    Step i can only use the i + 1 slopes seen so far, so the order ramps up over the first steps;
    an order above num_steps is therefore allowed (the reference's golden cases use order 4 with 1 step).
    """

    def __init__(self, *args, order: int = 4, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(order, (int, np.integer)) or order < 1:
            raise ValueError(f"LinearMultistepSampler needs order >= 1, got {order!r}.")
        self.order = order

    def sample(self, model, x, sigmas, noise, callback):
        sigmas_np = sigmas.detach().cpu().numpy().astype(np.float64)
        slopes = []  # the most recent slopes, oldest first
        for i in self.steps(sigmas):
            denoised = model(x, sigmas[i])
            slopes = (slopes + [to_d(x, sigmas[i], denoised)])[-self.order:]
            order = min(i + 1, self.order)
            coefficients = [lms_coefficient(order, sigmas_np, i, j) for j in range(order)]
            x = x + sum(c * d for c, d in zip(coefficients, reversed(slopes), strict=False))
            callback(x, denoised, sigmas[i], i)
        return x


def exponential_integral_weights(offsets: list[float], h: float, rate: float) -> np.ndarray:
    """Weights w_j with sum_j w_j f_j = integral over u in [0, h] of e^(rate u) P(u) du, where P is the
    polynomial through the values f_j at u = offsets[j] (the exponential integrators' `lms_coefficient`).

    w_j is the weighted integral of the Lagrange polynomial that is 1 at offsets[j] and 0 at the others, so the
    w solve sum_j w_j offsets[j]^k = M_k for k < len(offsets), with the moments M_k = integral of e^(rate u) u^k,
    which integration by parts gives as M_0 = (e^(rate h) - 1) / rate, M_k = (h^k e^(rate h) - k M_(k-1)) / rate.
    Offsets are divided by h to keep the small linear system well conditioned. Computed in float64.
    """
    moments = [math.expm1(rate * h) / rate]
    for k in range(1, len(offsets)):
        moments.append((h**k * math.exp(rate * h) - k * moments[-1]) / rate)
    powers = np.arange(len(offsets))
    vandermonde = (np.asarray(offsets, dtype=np.float64)[None, :] / h) ** powers[:, None]  # k j: (offset_j / h)^k
    return np.linalg.solve(vandermonde, np.asarray(moments) / h**powers)


def exponential_step(x: torch.Tensor, t: float, t_next: float, history: list, prediction: str) -> torch.Tensor:
    """One step t -> t_next (t = -log(sigma)) that is exact if the model's output is the polynomial through
    `history`, a list of (t_j, value_j).

    In t the ODE reads dx/dt = D - x = sigma eps, with eps = (x - D) / sigma. prediction="data": the values
    are D and x_next = e^(-h) (x + integral of e^u D du), which integrates the linear part exactly
    (DPM-Solver++). prediction="noise": the values are eps and x_next = x - sigma integral of e^(-u) eps du,
    since sigma(u) = sigma e^(-u) along the step (DPM-Solver, DEIS). u runs over [0, h], h = t_next - t.
    """
    h = t_next - t
    offsets = [t_j - t for t_j, _ in history]
    if prediction == "data":
        weights = exponential_integral_weights(offsets, h, rate=1.0)
        return math.exp(-h) * (x + sum(float(w) * value for w, (_, value) in zip(weights, history, strict=True)))
    weights = exponential_integral_weights(offsets, h, rate=-1.0)
    return x - math.exp(-t) * sum(float(w) * value for w, (_, value) in zip(weights, history, strict=True))


class ExponentialMultistepSampler(BaseSampler):
    """What DPM-Solver++(3M), DEIS and UniPC share: multistep exponential integrators in t = -log(sigma).

    Each step reuses the model's last `order` outputs: the polynomial through them (in t) stands in for the
    model over the step, and its weighted integral is exact whatever the step sizes (`exponential_step`), so
    any schedule works. The order ramps up over the first steps (there is no history yet) and the step to
    sigma = 0 is first order. One network evaluation per step. With `corrector`, each step is re-done once the
    model's output at its end is known (UniC); the network sees the predicted x, the run continues from the
    corrected one, and the callback reports the predicted x.
    """

    prediction = "data"  # what the polynomial approximates: D ("data") or eps = (x - D) / sigma ("noise")
    corrector = False
    default_order = 3

    def __init__(self, *args, order: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        order = self.default_order if order is None else order
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= order <= 4:
            raise ValueError(f"{type(self).__name__} needs order 1, 2, 3 or 4, got {order!r}.")
        self.order = order  # how many model outputs the polynomial goes through

    def sample(self, model, x, sigmas, noise, callback):
        """The shared loop: predict with the last `order` outputs (and correct first, with `corrector`)."""
        history = []  # (t, D or eps) of the last `order` network calls, oldest first
        step_start = None  # (x, t) where the last step began, for the corrector
        for i in self.steps(sigmas):
            sigma, next_sigma = sigmas[i], sigmas[i + 1]
            t = float(neg_log(sigma))
            x_seen = x
            denoised = model(x_seen, sigma)
            value = denoised if self.prediction == "data" else (x_seen - denoised) / sigma
            if self.corrector and step_start is not None:
                # redo the step that led here with this output included (UniC; no extra network call)
                x = exponential_step(*step_start, t, history + [(t, value)], self.prediction)
            history = (history + [(t, value)])[-self.order:]
            step_start = (x, t)
            if next_sigma > 0:
                x = exponential_step(x, t, float(neg_log(next_sigma)), history, self.prediction)
            else:  # to sigma = 0: a first-order (Euler) step, which lands on D itself when nothing was corrected
                x = denoised + (x - x_seen)
            callback(x, denoised, sigma, i)
        return x


class DPMPP3MSampler(ExponentialMultistepSampler):
    """DPM-Solver++(3M) (Lu et al. 2022, "DPM-Solver++", the third-order multistep method of its appendix).

    The polynomial goes through the last three denoised estimates D: a quadratic in t, integrated exactly, so
    the method is third order. k-diffusion's `sample_dpmpp_3m_sde` (eta = 0) and diffusers' third-order
    `DPMSolverMultistepScheduler` give the quadratic's second difference half this weight, which makes them
    converge at order ~2; at 5-10 NFE that damping happens to overshoot less (both in docs/benchmarks.md).
    """


class DEISSampler(ExponentialMultistepSampler):
    """DEIS (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator"), its multistep
    Adams-Bashforth form (AB-DEIS): the noise prediction eps is the polynomial, in log(sigma).

    This is DEIS's Adams-Bashforth variant with the polynomial in log(rho), rho = sigma for this (EDM / VE)
    parametrisation, diffusers' `solver_type="logrho"`; equivalently a multistep DPM-Solver (Lu et al. 2022,
    noise prediction) with exactly integrated coefficients. Third order by default, with no drop to a lower
    order on the final steps. On the exact mixture and on the tiny image model it is minigen's most accurate
    sampler at 5-10 NFE (docs/benchmarks.md).
    """

    prediction = "noise"


class UniPCSampler(ExponentialMultistepSampler):
    """UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion
    Models"): its predictor UniP in the DPM-Solver++ multistep form, plus the corrector UniC.

    Each step needs D at its end anyway (it starts the next step); once it is known, the step just taken is
    re-done with the polynomial through that estimate too: one order more (order + 1) for no extra network
    call. The coefficients integrate the interpolating polynomial exactly, as the paper's varying-coefficient
    variant (UniPC_v) does, rather than its B(h) approximations (bh1, bh2). Order 2 by default (3 with the
    corrector), the paper's choice for guided sampling.
    """

    corrector = True
    default_order = 2


__all__ = [
    "BaseSampler", "EulerEDMSampler", "HeunEDMSampler", "EulerAncestralSampler", "DPMPP2SAncestralSampler",
    "DPMPP2MSampler", "LinearMultistepSampler", "ExponentialMultistepSampler", "DPMPP3MSampler", "DEISSampler",
    "UniPCSampler", "ancestral_step_sizes", "exponential_integral_weights", "exponential_step", "lms_coefficient",
    "to_d",
]
