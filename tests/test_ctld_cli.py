"""``heatbath ctld ...`` (papers/ctld/ctld_cli.py): end to end through heatbath.cli.main."""

from __future__ import annotations

import json
from contextlib import nullcontext

import pytest

from heatbath import cli


@pytest.fixture
def ctld_main():
    """heatbath.cli.main (``ctld`` is in its subcommand table)."""
    return cli.main


def test_charrnn_quick_two_methods(ctld_main, tmp_path, capsys):
    out = tmp_path / "rnn"
    rc = ctld_main(["ctld", "charrnn", "--quick", "--out", str(out), "--seed", "3",
                    "--methods", "ctld,sgdm", "--threads", "1", "--alpha-step", "0.03"])
    assert rc == 0
    for name in ("charrnn_perplexity.png", "charrnn_table.csv", "charrnn_report.md",
                 "charrnn_summary.json"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "charrnn_summary.json").read_text())
    assert summary["seed"] == 3 and summary["quick"] is True
    assert summary["config"]["alpha_step"] == 0.03
    assert summary["config"]["tempering"] == "intensive"  # the default
    assert [r["method"] for r in summary["table"]] == ["CTLD", "SGD-M"]
    printed = capsys.readouterr().out
    assert "our verdict" in printed and str(out) in printed
    # the table lists the same methods as the CSV
    csv = (out / "charrnn_table.csv").read_text().splitlines()
    assert len(csv) == 3 and csv[0].startswith("method")


@pytest.mark.parametrize("argv,needle", [
    (["ctld", "nope"], "invalid choice"),
    (["ctld", "charrnn", "--seed", "-1"], "seed"),
    (["ctld", "charrnn", "--text", "/nonexistent/file.txt"], "text"),
    (["ctld", "sda", "--mnist-dir", "/nonexistent/dir"], "mnist-dir"),
    (["ctld", "sda", "--text", "x.txt"], "--text applies"),
    (["ctld", "charrnn", "--mnist-dir", "."], "--mnist-dir applies"),
    (["ctld", "charrnn", "--methods", "ctld,foo"], "unknown method 'foo'"),
    (["ctld", "sensitivity", "--methods", "ctld"], "does not apply"),
    (["ctld", "charrnn", "--threads", "0"], "threads"),
    (["ctld", "charrnn", "--tempering", "paper", "--alpha-step-scale", "big"],
     "alpha-step-scale"),
    (["ctld", "charrnn", "--tempering", "paper", "--alpha-step-scale", "-1"],
     "alpha-step-scale"),
    (["ctld", "charrnn", "--alpha-step-scale", "1"], "applies to --tempering paper"),
    (["ctld", "charrnn", "--alpha-step", "0"], "alpha-step"),
    (["ctld", "charrnn", "--tempering", "paper", "--alpha-step", "0.1"],
     "applies to --tempering intensive"),
    (["ctld", "charrnn", "--seeds", "0"], "seeds"),
    (["ctld", "charrnn", "--quick", "--size", "full"], "contradicts"),
])
def test_bad_input_exits_2_with_one_line(ctld_main, tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) if needle == "invalid choice" else nullcontext():
        rc = ctld_main(argv + ["--out", str(tmp_path / "o")])
        assert rc == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_mnist_dir_without_idx_files(ctld_main, tmp_path, capsys):
    rc = ctld_main(["ctld", "sda", "--mnist-dir", str(tmp_path), "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("heatbath ctld: error: mnist-dir") and len(err.splitlines()) == 1


def test_text_not_utf8(ctld_main, tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 ".encode("latin-1") * 500)
    rc = ctld_main(["ctld", "charrnn", "--text", str(bad), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "not UTF-8" in capsys.readouterr().err

