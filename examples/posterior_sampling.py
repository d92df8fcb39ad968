"""Posterior sampling with heatbath: a case with a known answer, then a classifier.

Part 1, Bayesian linear regression (exact Gaussian posterior, heatbath.sampling.reference):
Langevin (BAOAB), SGLD and AdLaLa run 8 chains each at tau = 1/N; their samples' predictive
mean and variance are compared with the exact ones in units of the Monte Carlo error. BAOAB is
exact for this quadratic loss, SGLD inflates variances by its known O(h) factor, AdLaLa has a
small O(h^2) error. Then the calibration of the final iterate, of the sample average and of a
deep ensemble of SGD runs on fresh targets (Gaussian NLL, coverage of 90% intervals).

Part 2, the two-spirals classifier: R replicas of a one-hidden-layer network trained with
Langevin at tau = 1/N, samples collected after a burn-in; NLL / ECE / Brier of the final
iterates against the sample average and against a deep ensemble of SGD runs, the AUROC of
the predictive entropy for telling inputs far from the data (the test set scaled 3x) from the
test set, R-hat of the chains, a reliability diagram and a trace plot.

    python examples/posterior_sampling.py                    # small size, about a minute
    python examples/posterior_sampling.py --size tiny        # seconds (the test runs this)
    python examples/posterior_sampling.py --out runs/post    # also write the two figures

With HEATBATH_TINY=1 in the environment the default size is "tiny".
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from heatbath.data import make_dataset
from heatbath.models import EnsembleSHLP
from heatbath.models.heads import loss_per_sample, probabilities
from heatbath.optim import Langevin, posterior_tau
from heatbath.sampling import (
    SampleCollector,
    chain_diagnostics,
    classification_metrics,
    ood_auroc,
    predictive,
    predictive_entropy,
    reliability_diagram,
    rhat,
    trace_plot,
)
from heatbath.sampling.reference import (
    deep_ensemble,
    make_linear_problem,
    point_predictions,
    predictive_check,
    regression_calibration,
    sample_posterior,
)

SIZES = {
    # regression steps, spiral steps, spiral burn-in, thin
    "tiny": (800, 300, 100, 10),
    "small": (4000, 6000, 2000, 20),
    "large": (12000, 30000, 10000, 50),
}


def regression_case(steps: int) -> tuple[dict[str, Any], dict[str, Any]]:
    pb = make_linear_problem(n_train=50, n_test=5, seed=0)
    steps_h = {"langevin": 0.3, "sgld": 0.05, "adlala": 0.1}
    rows: dict[str, Any] = {}
    print(f"Part 1: Bayesian linear regression, N = {pb.n}, tau = 1/N = {pb.tau:.3g}, "
          f"omega_max = {pb.omega_max():.3g}")
    print(f"{'method':>9} {'h':>5} {'max|z mean|':>12} {'max|z var|':>11} {'var bias':>9} "
          f"{'R-hat':>6}")
    for method, h in steps_h.items():
        _, col = sample_posterior(pb, method, chains=8, steps=steps, burn_in=steps // 4,
                                  thin=2, h=h)
        st = col.stacked()
        res = predictive_check(pb, st)
        f = point_predictions(pb, st)
        r = max(rhat(f[j]) for j in range(f.shape[0]))
        bias = float(np.mean(res["var"] / res["var_ref"] - 1))
        rows[method] = {"h": h, "z_mean": float(np.abs(res["z_mean"]).max()),
                        "z_var": float(np.abs(res["z_var"]).max()), "var_bias": bias, "rhat": r}
        print(f"{method:>9} {h:>5} {rows[method]['z_mean']:>12.2f} "
              f"{rows[method]['z_var']:>11.2f} {bias:>+9.3f} {r:>6.3f}")
        if method == "sgld":
            own = predictive_check(pb, st, cov=pb.sgld_covariance(h))
            print(f"{'':>9} against SGLD's own O(h) stationary covariance: max|z var| = "
                  f"{np.abs(own['z_var']).max():.2f}")

    cal = make_linear_problem(n_train=10, n_test=500, test_scale=3.0, seed=0)
    model, col = sample_posterior(cal, "langevin", chains=8, steps=steps, burn_in=steps // 8,
                                  thin=5, h=0.2)
    pr = predictive(model, col, cal.X_test, task="regression")
    st = col.stacked()
    fin = point_predictions(cal, {k: v[-1:, :1] for k, v in st.items()})[:, 0, 0]
    f_ens = point_predictions(cal, deep_ensemble(cal, 5, steps=max(200, steps // 4)))[:, :, 0]
    calib = {
        "final iterate": regression_calibration(cal, fin, torch.zeros_like(fin)),
        "sample average": regression_calibration(cal, pr.mean.squeeze(-1),
                                                 pr.var.squeeze(-1)),
        "deep ensemble": regression_calibration(cal, f_ens.mean(1),
                                                f_ens.var(1, unbiased=False)),
        "exact": regression_calibration(cal, *cal.predictive(cal.X_test)),
    }
    print(f"\nCalibration on {cal.X_test.shape[0]} fresh targets (N = {cal.n}, inputs at 3x "
          "the data's spread)")
    print(f"{'predictor':>15} {'NLL':>7} {'90% coverage':>13} {'RMSE':>6}")
    for k, v in calib.items():
        print(f"{k:>15} {v['nll']:>7.3f} {v['coverage']:>13.3f} {v['rmse']:>6.3f}")
    return rows, calib


def _train_spiral(opt_name: str, R: int, steps: int, data: Any, collector_kw: dict | None,
                  seed: int = 0) -> tuple[EnsembleSHLP, SampleCollector | None]:
    model = EnsembleSHLP(2, 50, 2, seeds=list(range(seed, seed + R)))
    N = data.X_train.shape[0]
    if opt_name == "langevin":
        opt: torch.optim.Optimizer = Langevin(model.parameters(), h=0.1, gamma=1.0,
                                              tau=posterior_tau(1.0, N), replicas=R, seed=seed)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    X, y = data.X_train, data.y_train.float()
    col = None
    if collector_kw is not None:
        def loss_fn() -> torch.Tensor:
            with torch.no_grad():
                return loss_per_sample(model(X), y.expand(R, -1), "sigmoid").mean(1)
        col = SampleCollector(model, opt, loss_fn=loss_fn, **collector_kw)
    g = torch.Generator().manual_seed(seed)
    batch = max(1, N // 10)
    for _ in range(steps):
        idx = torch.randint(0, N, (R, batch), generator=g)
        opt.zero_grad(set_to_none=True)
        loss_per_sample(model(X[idx]), y[idx], "sigmoid").mean(1).sum().backward()
        opt.step()
    return model, col


def spiral_case(steps: int, burn_in: int, thin: int, out: Path | None) -> dict[str, Any]:
    data = make_dataset("spirals", n_train=500, n_test=1000, seed=0)
    R = 4
    Xt, yt = data.X_test, data.y_test
    model, col = _train_spiral("langevin", R, steps, data, {"burn_in": burn_in, "thin": thin})
    assert col is not None
    pr = predictive(model, col, (Xt, yt))
    sgd, _ = _train_spiral("sgd", R, steps, data, None, seed=100)
    with torch.no_grad():
        final = probabilities(model(Xt), "sigmoid").double()  # [R, n, 2]
        ens = probabilities(sgd(Xt), "sigmoid").double()
    per_final = [classification_metrics(final[r], yt) for r in range(R)]
    rows = {
        "final iterate (mean of chains)": {k: float(np.mean([m[k] for m in per_final]))
                                           for k in per_final[0]},
        "sample average": classification_metrics(pr.probs, yt),
        "deep ensemble (SGD)": classification_metrics(ens.mean(0), yt),
    }
    # OOD: the same test inputs pushed 3x further out, off the training data; a predictor
    # that knows what it does not know is less certain there (higher entropy)
    far = Xt * 3.0
    pr_far = predictive(model, col, far)
    with torch.no_grad():
        final_far = probabilities(model(far), "sigmoid").double()
        ens_far = probabilities(sgd(far), "sigmoid").double()
    auroc = {
        "final iterate (mean of chains)": float(np.mean([
            ood_auroc(predictive_entropy(final[r]), predictive_entropy(final_far[r]))
            for r in range(R)])),
        "sample average": ood_auroc(predictive_entropy(pr.probs),
                                    predictive_entropy(pr_far.probs)),
        "deep ensemble (SGD)": ood_auroc(predictive_entropy(ens.mean(0)),
                                         predictive_entropy(ens_far.mean(0))),
    }
    for k in rows:
        rows[k]["ood_auroc"] = auroc[k]
    diag = chain_diagnostics(col, pr, n_projections=2)
    print(f"\nPart 2: spirals, {R} Langevin chains at tau = 1/N, {steps} steps, "
          f"{len(col)} samples per chain ({pr.path} path)")
    print(f"{'predictor':>31} {'NLL':>6} {'ECE':>6} {'ECE(mass)':>9} {'Brier':>6} {'acc':>6} "
          f"{'OOD AUROC':>9}")
    for k, m in rows.items():
        print(f"{k:>31} {m['nll']:>6.3f} {m['ece']:>6.3f} {m['ece_equal_mass']:>9.3f} "
              f"{m['brier']:>6.3f} {m['accuracy']:>6.3f} {m['ood_auroc']:>9.3f}")
    print("R-hat / bulk ESS: " + ", ".join(f"{k} {v['rhat']:.3f}/{v['ess_bulk']:.0f}"
                                           for k, v in diag.items()))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        reliability_diagram({"final iterate (chain 0)": (final[0], yt),
                             "sample average": (pr.probs, yt),
                             "deep ensemble (SGD)": (ens.mean(0), yt)},
                            path=out / "reliability.png", title="spirals")
        samples = col.samples
        series = {"loss": np.array([s.loss for s in samples]).T,
                  "test log-lik": pr.per_sample.numpy()}
        trace_plot(series, steps=[s.step for s in samples], path=out / "trace.png")
        print(f"figures in {out}")
    return {"metrics": rows, "diagnostics": diag}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=tuple(SIZES),
                    default="tiny" if os.environ.get("HEATBATH_TINY") == "1" else "small")
    ap.add_argument("--out", type=Path, default=None, help="folder for the figures")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    reg_steps, steps, burn_in, thin = SIZES[args.size]
    regression, calibration = regression_case(reg_steps)
    spiral = spiral_case(steps, burn_in, thin, args.out)
    if not math.isfinite(spiral["metrics"]["sample average"]["nll"]):
        raise RuntimeError("the sample average has a non-finite NLL")
    return {"regression": regression, "calibration": calibration, "spiral": spiral}


if __name__ == "__main__":
    main()
