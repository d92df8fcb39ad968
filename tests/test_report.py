"""Tests of heatbath.output: atomic files, summary statistics, TOML dump, PNG figures."""

from __future__ import annotations

import math
import statistics
import struct
import tomllib
from pathlib import Path

import numpy as np
import pytest

from heatbath.output import io as rio
from heatbath.output.summary import (
    SUMMARY_COLUMNS,
    summarize,
    summary_markdown,
    summary_rows,
    write_summary,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------- atomic writes


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    rio.write_text(target, "old\n")
    rio.write_text(target, "new content\n")
    assert target.read_text() == "new content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_write_leaves_old_file_after_exception(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    rio.write_text(target, "old\n")
    with pytest.raises(RuntimeError), rio.atomic_write(target) as fh:
        fh.write("half of a new")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # temp file removed


def test_atomic_write_no_file_when_first_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "b.bin"
    with pytest.raises(ValueError), rio.atomic_write(target, "wb") as fh:
        fh.write(b"\x00" * 1000)
        raise ValueError("boom")
    assert not target.exists()
    assert list((tmp_path / "sub").iterdir()) == []


def test_csv_with_a_bad_row_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "m.csv"
    rio.write_csv(target, [{"a": 1, "b": 2.5}], ["a", "b"])
    before = target.read_text()

    def rows():
        yield {"a": 3, "b": 4.0}
        yield {"a": 5}  # lacks b

    with pytest.raises(KeyError, match="b"):
        rio.write_csv(target, rows(), ["a", "b"])
    assert target.read_text() == before
    assert before.splitlines() == ["a,b", "1,2.5"]


def test_csv_floats_round_trip(tmp_path: Path) -> None:
    vals = [0.1 + 0.2, 1e-300, float("nan"), float("inf")]
    target = rio.write_csv(tmp_path / "f.csv", [{"x": v} for v in vals], ["x"])
    back = [float(s) for s in target.read_text().splitlines()[1:]]
    assert back[0] == vals[0] and back[1] == vals[1]
    assert math.isnan(back[2]) and back[3] == math.inf


def test_toml_dump_round_trips() -> None:
    cfg = {
        "name": 'demo "quoted"\n',
        "steps": 10_000,
        "subsample": 5.0,
        "tiny": 1e-4,
        "flag": True,
        "seeds": [0, 1, 2],
        "skipped": None,
        "data": {"name": "spirals", "turns": 2, "nested": {"k": "v"}},
        "methods": {"adlala": {"h": 0.25, "tau1": 1e-4}, "adam": {"h": 0.005}},
        "weird key": 1,
    }
    back = tomllib.loads(rio.to_toml(cfg))
    expected = {k: v for k, v in cfg.items() if v is not None}
    assert back == expected


# ---------------------------------------------------------------- summary math


def _rows(method: str, finals: dict[int, tuple[float, float, float, float]], last: int = 100):
    """Rows for ``method``: an early step with junk values, then the given final values."""
    out = []
    for seed, (te_acc, tr_acc, te_loss, tr_loss) in finals.items():
        for split, acc, loss in (("test", te_acc, te_loss), ("train", tr_acc, tr_loss)):
            out.append(dict(method=method, seed=seed, step=0, split=split, loss=9.0, accuracy=0.0))
            out.append(dict(method=method, seed=seed, step=last, split=split, loss=loss,
                            accuracy=acc))
    return out


def test_summary_statistics_match_direct_computation() -> None:
    a = {0: (0.90, 0.95, 0.30, 0.20), 1: (0.80, 0.85, 0.40, 0.35), 2: (0.97, 1.00, 0.10, 0.05)}
    b = {5: (0.60, 0.62, 0.70, 0.69), 6: (0.66, 0.70, 0.60, 0.58)}
    rows = _rows("adlala", a) + _rows("adam", b)
    rows.reverse()  # order of rows must not matter (except for method order)
    summaries = {s.method: s for s in summarize(rows)}
    for method, finals in (("adlala", a), ("adam", b)):
        s = summaries[method]
        assert s.runs == len(finals) and s.final_step == 100 and s.stopped == 0
        for i, name in enumerate(("test_accuracy", "train_accuracy", "test_loss", "train_loss")):
            values = [v[i] for v in finals.values()]
            st = s.stats[name]
            assert st.n == len(values)
            assert st.mean == pytest.approx(statistics.fmean(values), abs=1e-12)
            assert st.sd == pytest.approx(statistics.stdev(values), abs=1e-12)
            assert (st.min, st.max) == (min(values), max(values))


def test_summary_counts_stopped_runs_and_ignores_non_finite() -> None:
    rows = _rows("sgld", {0: (0.8, 0.8, 0.5, 0.5), 1: (0.7, 0.7, 0.6, 0.6)})
    # seed 2 stopped at step 40 on a NaN loss
    rows += _rows("sgld", {2: (0.5, 0.5, math.nan, math.nan)}, last=40)
    (s,) = summarize(rows)
    assert s.runs == 3 and s.stopped == 1 and s.final_step == 100
    assert s.stats["test_loss"].n == 2  # the NaN is left out
    assert s.stats["test_loss"].mean == pytest.approx(0.55)
    assert s.stats["test_accuracy"].n == 3  # its last accuracy still counts
    assert s.stats["test_accuracy"].min == 0.5


def test_single_run_has_undefined_sd_and_markdown_shows_it() -> None:
    (s,) = summarize(_rows("sgd", {3: (0.75, 0.8, 0.5, 0.4)}))
    assert math.isnan(s.stats["test_accuracy"].sd)
    md = summary_markdown([s])
    assert "| sgd | 1 | 75.0 ± – [75.0, 75.0] |" in md


def test_write_summary_files(tmp_path: Path) -> None:
    rows = _rows("adlala", {0: (0.9, 0.9, 0.3, 0.3), 1: (0.8, 0.8, 0.4, 0.4)})
    summaries, md, csv_path = write_summary(tmp_path, rows, title="t")
    assert md.read_text().startswith("# t\n")
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",") == list(SUMMARY_COLUMNS)
    row = dict(zip(SUMMARY_COLUMNS, lines[1].split(","), strict=True))
    assert row["method"] == "adlala"
    assert float(row["test_accuracy_mean"]) == pytest.approx(0.85)
    assert float(row["test_accuracy_sd"]) == pytest.approx(statistics.stdev([0.9, 0.8]))
    assert summary_rows(summaries)[0]["runs"] == 2


# ---------------------------------------------------------------- figures


@pytest.fixture(scope="module")
def plots():
    return pytest.importorskip("heatbath.output.plots")


def _check_png(path: Path, plt_image) -> tuple[int, int]:
    w, h = png_size(path)
    img = plt_image.imread(path)
    assert img.shape[:2] == (h, w)
    assert float(np.std(img[..., :3])) > 0.05  # not a blank canvas
    return w, h


def test_figures_are_real_pngs_of_the_figure_size(tmp_path: Path, plots) -> None:
    import matplotlib.image as mimg

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(int)
    xx, yy = plots.grid(x, n=50)
    prob = 1 / (1 + np.exp(-4 * xx * yy))
    one = plots.plot_decision_maps(tmp_path / "m1.png", [plots.MapPanel("sgd", xx, yy, prob)],
                                   x, y, title="one")
    three = plots.plot_decision_maps(
        tmp_path / "m3.png", [plots.MapPanel(m, xx, yy, prob, "h=0.1") for m in "abc"], x, y,
        title="three")
    w1, h1 = _check_png(one, mimg)
    w3, h3 = _check_png(three, mimg)
    # panels of a fixed size in a row of up to 3: three panels are ~3x as wide as one
    # (one colour bar and margin shared), and as high; six panels make two rows
    assert 2.4 * w1 < w3 < 3 * w1 and h3 == h1 and h1 >= 400
    six = plots.plot_decision_maps(
        tmp_path / "m6.png", [plots.MapPanel(m, xx, yy, prob) for m in "abcdef"], x, y,
        title="six")
    w6, h6 = _check_png(six, mimg)
    assert w6 == w3 and 1.8 * h1 < h6 < 2.2 * h1

    rows = [dict(method=m, seed=s, step=t, split=sp, loss=1.0 / (t + 1 + s),
                 accuracy=min(1.0, 0.5 + t / 200 + 0.01 * s))
            for m in ("adam", "adlala") for s in range(3) for t in range(0, 101, 10)
            for sp in ("train", "test")]
    w, h = _check_png(plots.plot_curves(tmp_path / "c.png", rows, title="curves"), mimg)
    assert w > h >= 400

    snaps = {m: {t: {"weights": rng.normal(scale=1 + t / 100, size=500),
                     "biases": rng.normal(size=40)} for t in (0, 50, 100)}
             for m in ("sgd", "adlala")}
    _check_png(plots.plot_histograms(tmp_path / "h.png", snaps, title="hist"), mimg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "h.png", "m1.png", "m3.png",
                                                             "m6.png"]


def test_method_colours_are_stable_and_distinct(plots) -> None:
    order = ["adlala", "adam", "sgd", "lol", "sgld", "langevin", "mine", "other"]
    colours = [plots.method_color(m, order) for m in order]
    assert len(set(colours)) == len(order)
    assert plots.method_color("adlala", []) == plots.method_color("adlala", order)
    assert plots.method_color("adlala_g10", ["adam"]) == plots.method_color("adlala")


# ---------------------------------------------------------------- config helpers


def test_snapshot_schedule_and_assignments() -> None:
    from heatbath.engine.config import ConfigError, apply_assignments, snapshot_steps

    # the paper's Fig. 6-7 steps for a 10K run, with the initialisation
    assert snapshot_steps(4, 10_000) == [0, 50, 1000, 10_000]
    for k, steps in ((5, 10_000), (3, 7), (6, 300)):
        s = snapshot_steps(k, steps)
        assert s[0] == 0 and s[-1] == steps and s == sorted(set(s)) and len(s) <= k
    cfg: dict = {"methods": {"adlala": {}}}
    apply_assignments(cfg, ["gamma=10", "steps=5", "data.turns=4", "init=gaussian:0.01",
                            "plots.snapshots=[0, 5]"], default_section=["methods", "adlala"])
    assert cfg == {"methods": {"adlala": {"gamma": 10, "init": "gaussian:0.01"}}, "steps": 5,
                   "data": {"turns": 4}, "plots": {"snapshots": [0, 5]}}
    with pytest.raises(ConfigError, match="key=value"):
        apply_assignments(cfg, ["steps"])
    with pytest.raises(ConfigError, match="not a table"):
        apply_assignments(cfg, ["steps.x=1"])
