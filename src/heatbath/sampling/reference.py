r"""A worked case with a known answer: Bayesian linear regression with a Gaussian posterior.

Model: :math:`y = w^\top x + b + \varepsilon`, :math:`\varepsilon \sim N(0, s^2)`, prior
:math:`\theta = (w, b) \sim N(0, \sigma_p^2 I)`. With :math:`\tilde x = (x, 1)` and
:math:`\tilde X` the :math:`N \times (d+1)` design matrix, the posterior is Gaussian,

.. math::
    \Sigma = \Big(\frac{\tilde X^\top\tilde X}{s^2} + \frac{I}{\sigma_p^2}\Big)^{-1},\qquad
    \mu = \Sigma\,\frac{\tilde X^\top y}{s^2},

and the predictive of :math:`f(x) = \theta^\top\tilde x` has mean :math:`\mu^\top\tilde x` and
variance :math:`\tilde x^\top\Sigma\tilde x` (plus :math:`s^2` for a new observation).

The samplers run on the *mean* loss

.. math:: \bar L(\theta) = \frac1N\sum_i \frac{(y_i - \theta^\top\tilde x_i)^2}{2s^2}
          + \frac{|\theta|^2}{2N\sigma_p^2},

whose Gibbs density :math:`\exp(-\bar L/\tau)` is the posterior at :math:`\tau = 1/N`
(:func:`heatbath.optim.posterior_tau` with T = 1). :math:`\bar L` is quadratic with Hessian
:math:`A = \Sigma^{-1}/N`, so the integrators' discretisation errors are known exactly:

- BAOAB (:class:`~heatbath.optim.Langevin`) samples a quadratic potential's configurational
  distribution exactly for every stable h: no bias in :math:`\theta`.
- SGLD (Euler–Maruyama) has the right mean, but its stationary covariance solves
  :math:`C = (I - hA)C(I - hA) + 2\tau h I`, i.e. :math:`C = \tau A^{-1}(I - hA/2)^{-1}`:
  an O(h) inflation of every variance (:meth:`LinearGaussianProblem.sgld_covariance`).
- Adaptive Langevin (AdLaLa's first layer) is not exact for a quadratic potential; its
  configurational error is O(h²) (see docs/sampling.md, section 'A worked case with a known
  answer').

See examples/posterior_sampling.py for the whole comparison, calibration included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from heatbath._validate import check_choice, check_int, check_real
from heatbath.models.ensemble import EnsembleLinear
from heatbath.optim import SGLD, AdLaLa, Langevin, posterior_tau

from .collector import SampleCollector
from .diagnostics import ess

__all__ = ["LinearGaussianProblem", "make_linear_problem", "sample_posterior", "deep_ensemble",
           "point_predictions", "predictive_check", "regression_calibration", "SAMPLERS"]

SAMPLERS = ("langevin", "sgld", "adlala")


@dataclass
class LinearGaussianProblem:
    """Data and prior of a Bayesian linear regression (float64 tensors).

    Attributes:
        X: training inputs ``[N, d]``; ``y`` targets ``[N]``.
        X_test: inputs ``[n, d]`` at which predictions are compared; ``y_test`` fresh targets.
        noise_std: s; ``prior_std``: :math:`\\sigma_p`.
    """

    X: Tensor
    y: Tensor
    X_test: Tensor
    y_test: Tensor
    noise_std: float
    prior_std: float

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def tau(self) -> float:
        """:math:`\\tau = 1/N`, the temperature whose Gibbs density is the posterior."""
        return posterior_tau(1.0, self.n)

    @staticmethod
    def design(X: Tensor) -> Tensor:
        return torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], dim=1)

    def hessian(self) -> Tensor:
        """Hessian :math:`A` of the mean loss (= :math:`\\Sigma^{-1}/N`)."""
        Xt = self.design(self.X)
        k = Xt.shape[1]
        return (Xt.T @ Xt / self.noise_std ** 2 + torch.eye(k, dtype=Xt.dtype)
                / self.prior_std ** 2) / self.n

    def posterior(self) -> tuple[Tensor, Tensor]:
        """Posterior mean :math:`\\mu` ``[d+1]`` and covariance :math:`\\Sigma` (bias last)."""
        Xt = self.design(self.X)
        cov = torch.linalg.inv(self.hessian() * self.n)
        mean = cov @ (Xt.T @ self.y) / self.noise_std ** 2
        return mean, cov

    def predictive(self, X: Tensor, cov: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Exact predictive mean and variance of :math:`f(x)` (no observation noise)."""
        mean, post_cov = self.posterior()
        cov = post_cov if cov is None else cov
        Xt = self.design(X)
        return Xt @ mean, ((Xt @ cov) * Xt).sum(1)

    def sgld_covariance(self, h: float) -> Tensor:
        """SGLD's stationary covariance :math:`\\tau A^{-1}(I - hA/2)^{-1}` at step ``h``."""
        A = self.hessian()
        lam = torch.linalg.eigvalsh(A)
        if float(lam.max()) * h >= 2.0:
            raise ValueError(f"h must be below 2/lambda_max = {2 / float(lam.max()):.4g} for "
                             "SGLD to be stable")
        eye = torch.eye(A.shape[0], dtype=A.dtype)
        return self.tau * torch.linalg.inv(A @ (eye - 0.5 * h * A))

    def omega_max(self) -> float:
        """Highest frequency :math:`\\sqrt{\\lambda_{max}(A)}` of the mean loss."""
        return math.sqrt(float(torch.linalg.eigvalsh(self.hessian()).max()))

    def _theta(self, model: EnsembleLinear) -> Tensor:
        """Parameters of every chain as ``[R, d+1]`` (bias last)."""
        R = model.weight.shape[0]
        return torch.cat([model.weight.detach().reshape(R, -1),
                          model.bias.detach().reshape(R, -1)], dim=1).double()

    @torch.no_grad()
    def mean_loss_of(self, model: EnsembleLinear) -> Tensor:
        """Mean loss :math:`\\bar L` of every chain, ``[R]``."""
        theta = self._theta(model)
        resid = theta @ self.design(self.X).T - self.y  # [R, N]
        return (resid * resid).mean(1) / (2 * self.noise_std ** 2) \
            + (theta * theta).sum(1) / (2 * self.n * self.prior_std ** 2)

    @torch.no_grad()
    def set_grad(self, model: EnsembleLinear) -> None:
        """Write the exact full-batch gradient :math:`A\\theta - \\tilde X^\\top y/(Ns^2)` of
        every chain into ``model.weight.grad`` and ``model.bias.grad``."""
        theta = self._theta(model)
        Xt = self.design(self.X)
        g = ((theta @ Xt.T - self.y) @ Xt / (self.n * self.noise_std ** 2)
             + theta / (self.n * self.prior_std ** 2))
        d = model.weight.shape[-1]
        model.weight.grad = g[:, :d].reshape(model.weight.shape).to(model.weight.dtype)
        model.bias.grad = g[:, d:].reshape(model.bias.shape).to(model.bias.dtype)


def make_linear_problem(n_train: int = 50, n_test: int = 200, d: int = 3, *,
                        noise_std: float = 0.5, prior_std: float = 1.0, test_scale: float = 2.0,
                        seed: int = 0) -> LinearGaussianProblem:
    """A random problem: :math:`x \\sim N(0, I)`, :math:`\\theta` drawn from the prior.

    Args:
        n_train: N, the number of training points (>= 2).
        n_test: number of test points (>= 1).
        d: input dimension (>= 1).
        noise_std: s, the observation noise's standard deviation (> 0).
        prior_std: :math:`\\sigma_p`, the prior's standard deviation (> 0).
        test_scale: test inputs are drawn from :math:`N(0, \\text{test\\_scale}^2 I)`; above 1
            they reach where the data are sparse and the posterior's spread matters.
        seed: seed of the draws.
    """
    check_int("n_train", n_train, low=2)
    check_int("n_test", n_test, low=1)
    check_int("d", d, low=1)
    check_real("noise_std", noise_std, low=0.0, low_open=True)
    check_real("prior_std", prior_std, low=0.0, low_open=True)
    check_real("test_scale", test_scale, low=0.0, low_open=True)
    g = torch.Generator().manual_seed(check_int("seed", seed, low=0))
    theta = torch.randn(d + 1, generator=g, dtype=torch.float64) * prior_std
    X = torch.randn(n_train, d, generator=g, dtype=torch.float64)
    Xs = torch.randn(n_test, d, generator=g, dtype=torch.float64) * test_scale
    D = LinearGaussianProblem.design
    y = D(X) @ theta + noise_std * torch.randn(n_train, generator=g, dtype=torch.float64)
    ys = D(Xs) @ theta + noise_std * torch.randn(n_test, generator=g, dtype=torch.float64)
    return LinearGaussianProblem(X, y, Xs, ys, noise_std, prior_std)


def _model(problem: LinearGaussianProblem, chains: int, seed: int) -> EnsembleLinear:
    model = EnsembleLinear(chains, problem.X.shape[1], 1).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.weight.copy_(torch.randn(model.weight.shape, generator=g, dtype=torch.float64)
                           * problem.prior_std)
        model.bias.copy_(torch.randn(model.bias.shape, generator=g, dtype=torch.float64)
                         * problem.prior_std)
    return model


def sample_posterior(problem: LinearGaussianProblem, method: str, *, chains: int = 8,
                     steps: int = 4000, burn_in: int = 500, thin: int = 2, h: float = 0.2,
                     seed: int = 0, **hparams: Any) -> tuple[EnsembleLinear, SampleCollector]:
    """Run ``chains`` chains of ``method`` on full-batch gradients at :math:`\\tau = 1/N`.

    Args:
        problem: the regression problem.
        method: ``"langevin"`` (BAOAB, ``gamma`` default 2), ``"sgld"`` (σ = √(2τ)) or
            ``"adlala"`` (AdL on the weights, BAOAB on the bias; defaults ``gamma=2``,
            ``sigma_A = √(2·2·τ)`` so that ξ settles near 2, ``epsilon = 1/(dτ)``,
            ``xi0 = 2``).
        chains: number of chains (replicas), each started from its own prior draw.
        steps: optimizer steps.
        burn_in: the collector's burn-in (steps).
        thin: the collector's thinning.
        h: step size.
        seed: seed of the initialisation (drawn from the prior) and of the noise.
        **hparams: override the method's defaults above.

    Returns:
        The model (its parameters at the last step) and the collector with the samples.
    """
    method = check_choice("method", method, SAMPLERS)
    tau = problem.tau
    model = _model(problem, chains, seed)
    d = problem.X.shape[1]
    opt: torch.optim.Optimizer
    if method == "langevin":
        kw = {"gamma": 2.0, **hparams}
        opt = Langevin(model.parameters(), h=h, tau=tau, replicas=chains, seed=seed + 1, **kw)
    elif method == "sgld":
        kw = {"sigma": math.sqrt(2 * tau), **hparams}
        opt = SGLD(model.parameters(), h=h, replicas=chains, seed=seed + 1, **kw)
    else:
        kw = {"gamma": 2.0, "sigma_A": math.sqrt(4 * tau), "epsilon": 1.0 / (d * tau),
              "xi0": 2.0, **hparams}
        opt = AdLaLa(([model.weight], [model.bias]), h=h, tau1=tau, tau2=tau, replicas=chains,
                     seed=seed + 1, **kw)
    collector = SampleCollector(model, opt, burn_in=burn_in, thin=thin,
                                loss_fn=lambda: problem.mean_loss_of(model))
    for _ in range(check_int("steps", steps, low=1)):
        problem.set_grad(model)
        opt.step()
    return model, collector


def deep_ensemble(problem: LinearGaussianProblem, members: int = 5, *, steps: int = 2000,
                  lr: float = 0.1, seed: int = 100) -> dict[str, Tensor]:
    """A deep ensemble: ``members`` SGD runs from prior draws, on the same mean loss.

    Returns:
        ``{name: tensor [1, members, ...]}``: one sample of ``members`` chains, ready for
        :func:`point_predictions` and :func:`heatbath.sampling.predictive`.
    """
    model = _model(problem, check_int("members", members, low=1), seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for _ in range(check_int("steps", steps, low=1)):
        problem.set_grad(model)
        opt.step()
    return {n: p.detach().clone().unsqueeze(0) for n, p in model.named_parameters()}


def point_predictions(problem: LinearGaussianProblem, stacked: dict[str, Tensor],
                      X: Tensor | None = None) -> Tensor:
    """:math:`f_{s,r}(x_j)` of every sample: ``[n_points, R, S]`` (chains of each point)."""
    X = problem.X_test if X is None else X
    w = stacked["weight"].reshape(*stacked["weight"].shape[:2], -1).double()  # [S, R, d]
    b = stacked["bias"].reshape(*stacked["bias"].shape[:2]).double()          # [S, R]
    f = torch.einsum("srd,nd->nrs", w, X.double()) + b.T.unsqueeze(0)
    return f


def predictive_check(problem: LinearGaussianProblem, stacked: dict[str, Tensor], *,
                     X: Tensor | None = None, cov: Tensor | None = None) -> dict[str, np.ndarray]:
    """Sampled against exact predictive mean and variance, point by point, with MC errors.

    The Monte Carlo standard error of the mean is :math:`\\mathrm{sd}/\\sqrt{\\mathrm{ESS}}`
    with the ESS of the point's chains; that of the variance is the same for the chains of
    :math:`(f - \\bar f)^2`.

    Args:
        problem: the problem.
        stacked: samples ``{name: [S, R, ...]}``.
        X: points (default ``problem.X_test``).
        cov: the covariance the sampler should reproduce (default: the posterior's; pass
            :meth:`~LinearGaussianProblem.sgld_covariance` to check SGLD's O(h) bias).

    Returns:
        Arrays over points: ``mean``, ``var`` (sampled), ``mean_ref``, ``var_ref``,
        ``se_mean``, ``se_var``, ``z_mean``, ``z_var`` (errors in units of their MC error).
    """
    X = problem.X_test if X is None else X
    f = point_predictions(problem, stacked, X)  # [n, R, S]
    mean_ref, var_ref = problem.predictive(X, cov)
    out: dict[str, list[float]] = {k: [] for k in ("mean", "var", "se_mean", "se_var")}
    for j in range(f.shape[0]):
        fj = f[j].numpy()
        m = float(fj.mean())
        dev = (fj - m) ** 2
        out["mean"].append(m)
        out["var"].append(float(dev.mean()))
        out["se_mean"].append(float(fj.std(ddof=1)) / math.sqrt(ess(fj, "mean")))
        out["se_var"].append(float(dev.std(ddof=1)) / math.sqrt(ess(dev, "mean")))
    res = {k: np.asarray(v) for k, v in out.items()}
    res["mean_ref"] = mean_ref.numpy()
    res["var_ref"] = var_ref.numpy()
    res["z_mean"] = (res["mean"] - res["mean_ref"]) / res["se_mean"]
    res["z_var"] = (res["var"] - res["var_ref"]) / res["se_var"]
    return res


def regression_calibration(problem: LinearGaussianProblem, mean: Tensor, var: Tensor,
                           level: float = 0.9) -> dict[str, float]:
    """Gaussian NLL and the coverage of central ``level`` intervals on the fresh test targets.

    ``var`` is the epistemic variance of :math:`f`; the observation noise :math:`s^2` is added.
    A calibrated predictive covers a fraction ``level`` of the targets.
    """
    from .metrics import gaussian_nll

    check_real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    total = var.double() + problem.noise_std ** 2
    z = float(torch.special.ndtri(torch.tensor(0.5 + level / 2, dtype=torch.float64)))
    inside = (problem.y_test - mean).abs() <= z * total.sqrt()
    return {"nll": gaussian_nll(mean, total, problem.y_test),
            "coverage": float(inside.double().mean()),
            "rmse": float(((problem.y_test - mean) ** 2).mean().sqrt())}
