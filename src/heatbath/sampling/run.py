"""Sample collection for ``heatbath train|compare --collect``: settings, hook, report.

The experiment runner needs three calls:

- :func:`parse_collect` turns ``"burn_in=5000,thin=50"`` (or a config table) into checked
  collector settings;
- :func:`collector_for` hooks a :class:`~heatbath.sampling.SampleCollector` onto a
  trainer's optimizer, storing the samples on disk (one folder per method); it works in a worker
  process, since only the folder travels back;
- :func:`sample_report` compares, on the test set, each run's final iterate, the average of
  the final iterates over the runs (a deep ensemble) and the posterior predictive of the
  samples (NLL, accuracy, Brier, ECE), computes R̂ and ESS of the chains, and writes
  ``reliability_<method>.png``; :func:`report_markdown` formats the reports for
  ``summary.md``.

See docs/sampling.md, section 'From the command line'.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from heatbath._validate import check_int
from heatbath.models.heads import loss_per_sample, probabilities

from .collector import SampleCollector
from .diagnostics import trace_plot
from .metrics import classification_metrics, reliability_diagram
from .predictive import chain_diagnostics, predictive

__all__ = ["COLLECT_KEYS", "SAMPLES_DIR", "parse_collect", "collector_for", "sample_report",
           "report_markdown", "write_sample_reports"]

#: the run-folder subfolder holding samples (``<label>/``), figures and ``report.json``
SAMPLES_DIR = "samples"

#: settings accepted by ``--collect`` (``reservoir`` is 0/1)
COLLECT_KEYS = ("burn_in", "thin", "max_samples", "reservoir")

# training points used for the loss recorded with every sample
_LOSS_POINTS = 1000


def parse_collect(spec: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``"burn_in=5000,thin=50[,max_samples=200,reservoir=1]"`` → checked settings.

    Args:
        spec: the flag's text, a mapping (a config table) or None (no collection).

    Returns:
        ``{"burn_in", "thin", "reservoir"[, "max_samples"]}`` (no None values, so that the
        settings can be written into a TOML config), or None.

    Raises:
        ValueError: for an unknown key, a value that is not an integer, or one out of range.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        items: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, eq, value = part.partition("=")
            if not eq:
                raise ValueError(f"collect: expected key=value, got {part!r} (keys: "
                                 f"{', '.join(COLLECT_KEYS)})")
            try:
                items[key.strip()] = int(value)
            except ValueError:
                raise ValueError(f"collect: {key.strip()} must be an integer, got "
                                 f"{value!r}") from None
    elif isinstance(spec, Mapping):
        items = dict(spec)
    else:
        raise ValueError(f"collect must be 'key=value,...' or a table, got {type(spec).__name__}")
    unknown = sorted(set(items) - set(COLLECT_KEYS))
    if unknown:
        raise ValueError(f"collect: unknown setting(s) {unknown}; allowed: "
                         f"{', '.join(COLLECT_KEYS)}")
    out: dict[str, Any] = {
        "burn_in": check_int("collect.burn_in", items.get("burn_in", 0), low=0),
        "thin": check_int("collect.thin", items.get("thin", 1), low=1),
        "reservoir": bool(check_int("collect.reservoir", int(items.get("reservoir", 0)),
                                    low=0, high=1))}
    if items.get("max_samples") is not None:
        out["max_samples"] = check_int("collect.max_samples", items["max_samples"], low=1)
    if out["reservoir"] and "max_samples" not in out:
        raise ValueError("collect: reservoir=1 needs max_samples")
    return out


def _forward(model: nn.Module, X: Tensor) -> Tensor:
    out = model(X)
    return out if out.dim() == 3 else out.unsqueeze(0)  # [R, n, k]


def _flat(X: Tensor) -> Tensor:
    return X.reshape(X.shape[0], -1).to(torch.float32)


def collector_for(trainer: Any, settings: Mapping[str, Any], path: str | os.PathLike[str]
                  ) -> SampleCollector:
    """A disk collector hooked onto ``trainer.optimizer`` (one chain per run of the trainer).

    The loss recorded with each sample is the mean training loss of every run on the first
    1,000 training points.
    """
    model: nn.Module = trainer.model
    head = trainer.head
    data = trainer.data
    X = _flat(data.X_train[:_LOSS_POINTS])
    y = data.y_train[:_LOSS_POINTS]
    target = y.to(torch.float32) if head == "sigmoid" else y

    def loss_fn() -> Tensor:
        with torch.no_grad():
            out = _forward(model, X)
            return loss_per_sample(out, target.expand(out.shape[0], -1), head).mean(1)

    return SampleCollector(model, trainer.optimizer, path=path,
                           replicas=trainer.R if trainer.ensemble else None, loss_fn=loss_fn,
                           **settings)


def sample_report(model: nn.Module, head: str, samples_path: str | os.PathLike[str],
                  X_test: Tensor, y_test: Tensor, *, label: str,
                  figure: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Final iterates against the posterior predictive of the samples, on the test set.

    Args:
        model: the trained model (single, or ensemble of R runs) at its final parameters.
        head: ``"sigmoid"`` or ``"softmax"``.
        samples_path: the collector's folder.
        X_test: test inputs.
        y_test: test labels.
        label: the method's name (figure title).
        figure: where to write the reliability diagram (None: no figures); a trace plot of
            the chains goes beside it, ``trace_<label>.png``.

    Returns:
        ``{"final": metrics averaged over runs, "runs_average": metrics of the runs' average
        prediction, "samples": metrics of the sample average, "n_samples", "n_chains",
        "diagnostics": {quantity: R̂/ESS...}, "path"}``; ``"samples"`` is None when nothing
        was collected.
    """
    X = _flat(X_test)
    with torch.no_grad():
        final = probabilities(_forward(model, X), head).double()  # [R, n, k]
    per_run = [classification_metrics(final[r], y_test) for r in range(final.shape[0])]
    report: dict[str, Any] = {
        "final": {k: sum(m[k] for m in per_run) / len(per_run) for k in per_run[0]},
        "runs_average": classification_metrics(final.mean(0), y_test),
        "samples": None, "n_samples": 0, "n_chains": final.shape[0], "diagnostics": {},
        "path": None,
    }
    col_manifest = Path(samples_path) / "manifest.json"
    if not col_manifest.exists():
        return report
    try:
        pred = predictive(model, samples_path, (X, y_test), head=head)
    except ValueError:  # nothing collected (burn_in beyond the last step)
        return report
    report["samples"] = classification_metrics(pred.probs, y_test)
    report["n_samples"] = pred.n_samples
    report["path"] = pred.path
    if pred.n_samples >= 4:
        report["diagnostics"] = chain_diagnostics(samples_path, pred, n_projections=2)
    if figure is not None and pred.n_samples >= 4:
        meta = json.loads(col_manifest.read_text())["samples"]
        meta = sorted(meta, key=lambda m: m["step"])
        series: dict[str, Any] = {"test log-likelihood": pred.per_sample}
        if all(m["loss"] is not None for m in meta):
            series = {"training loss": [list(r) for r in zip(*[m["loss"] for m in meta])],
                      **series}
        trace_plot(series, steps=[m["step"] for m in meta],
                   path=Path(figure).with_name(f"trace_{label}.png"), title=label)
    if figure is not None:
        reliability_diagram({"final iterate (run 1)": (final[0], y_test),
                             "average of final iterates": (final.mean(0), y_test),
                             "sample average": (pred.probs, y_test)},
                            n_bins=10, binning="equal_mass", path=figure,
                            title=f"{label}: test set")
    return report


def report_markdown(reports: Mapping[str, Mapping[str, Any]],
                    settings: Mapping[str, Any] | None = None) -> str:
    """A ``summary.md`` section: the predictors' test metrics, then R̂/ESS per method."""
    lines = ["## Posterior samples", ""]
    if settings:
        lines += [", ".join(f"{k}={v}" for k, v in settings.items() if v is not None), ""]
    lines += ["| method | predictor | NLL | ECE | ECE (equal mass) | Brier | accuracy |",
              "|---|---|---|---|---|---|---|"]
    names = (("final", "final iterate (mean over runs)"),
             ("runs_average", "average of the runs' final iterates"),
             ("samples", "sample average"))
    for method, rep in reports.items():
        for key, text in names:
            m = rep.get(key)
            if m is None:
                continue
            if key == "samples":
                text += f" ({rep['n_samples']} samples x {rep['n_chains']} chains)"
            lines.append(f"| {method} | {text} | {m['nll']:.4f} | {m['ece']:.4f} | "
                         f"{m['ece_equal_mass']:.4f} | {m['brier']:.4f} | "
                         f"{m['accuracy']:.4f} |")
    diag_rows = [(method, q, d) for method, rep in reports.items()
                 for q, d in rep.get("diagnostics", {}).items()]
    if diag_rows:
        lines += ["", "Convergence across chains (rank-normalised split-R̂; bulk/tail ESS):", "",
                  "| method | quantity | R̂ | bulk ESS | tail ESS |", "|---|---|---|---|---|"]
        for method, q, d in diag_rows:
            lines.append(f"| {method} | {q} | {d['rhat']:.3f} | {d['ess_bulk']:.0f} | "
                         f"{d['ess_tail']:.0f} |")
    return "\n".join(lines) + "\n"




def write_sample_reports(out_dir: str | os.PathLike[str], data: Any,
                         results: Mapping[str, Any], settings: Mapping[str, Any],
                         summary_md: str | os.PathLike[str] | None = None, *,
                         sample_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
                         figures: bool = True) -> list[Path]:
    """After an experiment with ``collect``: one report per method, written to the run folder.

    Writes ``samples/reliability_<label>.png``, ``samples/trace_<label>.png`` and
    ``samples/report.json``, and appends the
    :func:`report_markdown` section to ``summary_md`` when given.

    Args:
        out_dir: the run folder.
        data: the experiment's :class:`heatbath.data.Dataset`.
        results: ``{label: TrainResult}``.
        settings: the collect settings (shown in the section's first line).
        summary_md: the run's ``summary.md``.
        sample_dirs: ``{label: folder of its samples}`` (default ``samples/<label>/``).
        figures: write the reliability diagrams.

    Returns:
        The files written.
    """
    from heatbath.output.io import write_json, write_text

    root = Path(out_dir) / SAMPLES_DIR
    root.mkdir(parents=True, exist_ok=True)
    for pattern in ("reliability_*.png", "trace_*.png"):  # an earlier run's methods
        for old in root.glob(pattern):
            old.unlink()
    reports: dict[str, dict[str, Any]] = {}
    files: list[Path] = []
    for label, result in results.items():
        fig = root / f"reliability_{label}.png"
        folder = root / label if sample_dirs is None else Path(sample_dirs[label])
        reports[label] = sample_report(result.model, result.head, folder, data.X_test,
                                       data.y_test, label=label,
                                       figure=fig if figures else None)
        files += [f for f in (fig, root / f"trace_{label}.png") if f.exists()]
    files.append(write_json(root / "report.json", {"settings": dict(settings),
                                                   "methods": reports}))
    if summary_md is not None:
        path = Path(summary_md)
        before = path.read_text() if path.exists() else ""
        files.append(write_text(path, before.rstrip("\n") + "\n\n"
                                + report_markdown(reports, settings)))
    return files
