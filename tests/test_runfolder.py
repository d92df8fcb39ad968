"""Run folders that never lose or mix data (issue 16, items 1-8).

Each test names the numbered case it covers. Every one of them failed on the code before the
run-folder work (noted per test) and passes now.
"""

from __future__ import annotations

import csv
import errno
import gzip
import hashlib
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
from heatbath import cli  # noqa: E402
from heatbath.engine import checkpoint, runfolder  # noqa: E402
from heatbath.engine import config as config_module  # noqa: E402
from heatbath.engine.runfolder import RunFolder, check_component  # noqa: E402
from heatbath.output.summary import summarize  # noqa: E402

SMALL = ["--n-train", "40", "--n-test", "40", "--hidden", "4", "--threads", "1", "--no-plots",
         "--quiet"]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit status and stderr of ``heatbath ARGS`` (argparse's own exits included)."""
    try:
        code = cli.main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> content)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def compare(out: Path, *extra: str, name: str = "r", steps: int = 20) -> list[str]:
    return ["compare", "--methods", "sgd", "--out", str(out), "--name", name, "--steps",
            str(steps), *SMALL, *extra]


# ------------------------------------------------------------------ 1. ownership


def test_fresh_run_refuses_a_folder_that_is_not_a_heatbath_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Case 1. Before: the user's checkpoints/ tree was deleted and the run exited 0."""
    proj = tmp_path / "proj"
    (proj / "checkpoints").mkdir(parents=True)
    (proj / "checkpoints" / "sgd.pt").write_bytes(b"the user's own weights")
    (proj / "notes.txt").write_text("mine\n")
    before = tree(tmp_path)
    code, err = run_cli(compare(tmp_path, name="proj"), capsys)
    line = one_line(err)
    assert code == 2 and str(proj) in line and "not a heatbath run" in line
    assert tree(tmp_path) == before
    assert sorted(p.name for p in proj.iterdir()) == ["checkpoints", "notes.txt"]  # no lock
    # --force does not make a foreign folder ours
    code, err = run_cli(compare(tmp_path, "--force", name="proj"), capsys)
    assert code == 2 and tree(tmp_path) == before


def test_fresh_run_of_another_config_needs_force(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Case 1. Before: a second run with other settings silently replaced the first."""
    assert run_cli(compare(tmp_path, steps=20), capsys)[0] == 0
    run = tmp_path / "r"
    (run / "notes.txt").write_text("the user's\n")
    first = tree(run)
    code, err = run_cli(compare(tmp_path, steps=30), capsys)
    line = one_line(err)
    assert code == 2 and str(run) in line and "--force" in line and "steps" in line
    assert tree(run) == first
    # the same config may run again (same results); another one with --force
    assert run_cli(compare(tmp_path, steps=20), capsys)[0] == 0
    again = tree(run)
    for name in ("config.toml", "metrics.csv", "notes.txt", runfolder.MARKER):
        assert again[name] == first[name]
    assert run_cli(compare(tmp_path, "--force", steps=30), capsys)[0] == 0
    assert (run / "notes.txt").read_text() == "the user's\n"  # never ours to delete
    with (run / "metrics.csv").open() as fh:
        assert max(int(r["step"]) for r in csv.DictReader(fh)) == 30


def test_run_folder_of_an_older_version_needs_force(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Case 1: outputs without the marker (written before markers existed)."""
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.toml").write_text('name = "r"\n')
    (run / "metrics.csv").write_text("method\n")
    code, err = run_cli(compare(tmp_path), capsys)
    assert code == 2 and "--force" in one_line(err)
    assert run_cli(compare(tmp_path, "--force"), capsys)[0] == 0
    assert (run / runfolder.MARKER).is_file()


# ------------------------------------------------------------------ 2. the lock


def test_second_run_on_a_locked_folder_exits_2_naming_folder_and_pid(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Case 2. Before: both runs wrote into the folder and both exited 0."""
    assert run_cli(compare(tmp_path), capsys)[0] == 0
    run = tmp_path / "r"
    before = tree(run)
    cfg = config_module.resolve({"out": str(tmp_path), "name": "r", "steps": 20,
                                 "methods": {"sgd": {}}})
    with RunFolder.claim(run, cfg, force=True):  # another run holds the folder
        code, err = run_cli(compare(tmp_path), capsys)
        line = one_line(err)
        assert code == 2 and str(run) in line and f"PID {os.getpid()}" in line
        assert tree(run) == before
    # released at the end of the block: the folder can be used again
    assert run_cli(compare(tmp_path), capsys)[0] == 0


def test_lock_of_a_crashed_process_is_released(tmp_path: Path) -> None:
    """Case 2: the OS drops the lock of a process killed by SIGKILL."""
    run = tmp_path / "r"
    script = textwrap.dedent(f"""
        import os, signal
        from heatbath.engine.config import resolve
        from heatbath.engine.runfolder import RunFolder
        cfg = resolve({{"out": {str(tmp_path)!r}, "name": "r", "methods": {{"sgd": {{}}}}}})
        folder = RunFolder.claim({str(run)!r}, cfg)
        print(os.getpid(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert (run / runfolder.LOCK).read_text().strip() == proc.stdout.strip()
    cfg = config_module.resolve({"out": str(tmp_path), "name": "r", "methods": {"sgd": {}}})
    with RunFolder.claim(run, cfg) as folder:
        assert folder.path == run


# ------------------------------------------------------------------ 3. safe names

UNSAFE = ["../../../x", "/abs/x", "..", ".", ".hidden", "a/b", "a\\b", "a b", "", "x" * 65,
          "tab\t", "é", "-lead"]


@pytest.mark.parametrize("label", UNSAFE, ids=repr)
def test_unsafe_method_labels_write_nothing(label: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Case 3. Before: a label such as '../../../x' became a checkpoint path outside --out."""
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    cfg = work / "c.toml"
    key = label.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")
    cfg.write_text(f'steps = 5\n[methods."{key}"]\nmethod = "sgd"\n')
    before = tree(tmp_path)
    code, err = run_cli(["compare", "--config", str(cfg), "--out", str(work / "out"),
                         "--name", "r", *SMALL], capsys)
    line = one_line(err)
    assert code == 2 and "method label" in line
    assert tree(tmp_path) == before  # nothing anywhere, inside --out or outside
    assert not (work / "out").exists()


@pytest.mark.parametrize("name", ["../up", "/abs", ".hidden", "a b", "..", "x" * 65, "a:b"],
                         ids=repr)
def test_unsafe_run_names_are_refused(name: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Case 3. Before: only '/', '.' and '..' were refused ('.hidden' or 'a b' passed)."""
    out = tmp_path / "out"
    code, err = run_cli(compare(out, name=name), capsys)
    assert code == 2 and "name must be" in one_line(err)
    assert not list(tmp_path.iterdir())


def test_nothing_is_written_outside_out(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Case 3: a full run (labels with dots and dashes, resume) writes only under --out."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('steps = 10\ncheckpoint_every = 5\n[methods."sgd_h0.1"]\nmethod = "sgd"\n'
                   'h = 0.1\n[methods.adam-2]\nmethod = "adam"\n')
    out = tmp_path / "out"
    args = ["compare", "--config", str(cfg), "--out", str(out), "--name", "ok", *SMALL]
    assert run_cli(args, capsys)[0] == 0
    assert run_cli([*args, "--resume"], capsys)[0] == 0
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents]
    assert outside == [cfg]
    assert sorted(p.name for p in (out / "ok" / "checkpoints").iterdir()) == [
        "adam-2.pt", "sgd_h0.1.pt"]


def test_check_component_and_inside() -> None:
    for good in ("a", "sgd_h0.1", "adam-2", "_x", "A9", "x" * 64):
        assert check_component("name", good) == good
    for bad in [*UNSAFE, None, 3]:
        with pytest.raises(config_module.ConfigError, match="name must be"):
            check_component("name", bad)


def test_figure_keys_are_safe_names() -> None:
    """Case 3: figure folders come from the fixed table; any other key is refused."""
    from heatbath.papers.integrators.figures import FIGURES, parse_keys

    for key in FIGURES:
        check_component("figure", key)
    for bad in ("../../x", "/abs", "fig1/../../x", ".fig1"):
        with pytest.raises(ValueError, match="figure must be"):
            parse_keys([bad])


def test_folder_paths_stay_inside(tmp_path: Path) -> None:
    cfg = config_module.resolve({"out": str(tmp_path), "name": "r", "methods": {"sgd": {}}})
    with RunFolder.claim(tmp_path / "r", cfg) as folder:
        assert folder.checkpoint_path("sgd") == tmp_path / "r" / "checkpoints" / "sgd.pt"
        with pytest.raises(config_module.ConfigError):
            folder.checkpoint_path("../sgd")
        with pytest.raises(runfolder.RunFolderError, match="outside"):
            folder.inside(tmp_path / "r" / ".." / "x")
        (tmp_path / "link").symlink_to(tmp_path)
        with pytest.raises(runfolder.RunFolderError, match="outside"):
            folder.inside(tmp_path / "r" / "sub" / ".." / ".." / "link" / "x")


# ------------------------------------------------------------------ 4. verified checkpoints


def _corruptions(good: bytes) -> dict[str, bytes]:
    n = len(good)
    flipped = {f"bit {i}": good[:i] + bytes([good[i] ^ 1]) + good[i + 1:]
               for i in (0, 30, 60, 100, n // 2, n - 1)}
    truncated = {f"first {k} bytes": good[:k] for k in (0, 10, 40, n // 3, n - 1)}
    return {**flipped, **truncated, "garbage": os.urandom(n), "text": b"not a checkpoint\n",
            "appended": good + b"\0"}


def test_every_damaged_checkpoint_is_one_line_exit_2_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Case 4. Before: a flipped bit in a weight resumed with exit 0 and other metrics;
    truncated or garbage files gave tracebacks suggesting weights_only=False."""
    args = compare(tmp_path, "--set", "checkpoint_every=5", steps=20)
    assert run_cli(args, capsys)[0] == 0
    ckpt = tmp_path / "r" / "checkpoints" / "sgd.pt"
    good = ckpt.read_bytes()
    for what, bad in _corruptions(good).items():
        ckpt.write_bytes(bad)
        before = tree(tmp_path / "r")
        code, err = run_cli([*args, "--resume"], capsys)
        line = one_line(err)
        assert code == 2, what
        assert str(ckpt) in line and "--restart-from-scratch" in line, (what, line)
        assert "weights_only" not in line
        assert tree(tmp_path / "r") == before, what  # validated before anything is written
    # the way out it offers works: a fresh start in the same folder
    assert run_cli([*args, "--resume", "--restart-from-scratch"], capsys)[0] == 0
    assert checkpoint.load(ckpt)["step"] == 20


def test_checkpoint_payload_is_loaded_weights_only(tmp_path: Path) -> None:
    """Case 4: a payload with a matching digest is still read with weights_only=True: code in
    a pickle never runs."""
    witness = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {witness}",))

    payload = pickle.dumps({"x": Evil()}, protocol=2)
    path = tmp_path / "c.pt"
    path.write_bytes(checkpoint._encode(payload))
    checkpoint.verify(path)  # the digest matches: the file is what was written
    with pytest.raises(checkpoint.CheckpointError, match="not readable") as exc:
        checkpoint.load(path)
    assert "weights_only" not in str(exc.value)
    assert not witness.exists()


def test_checkpoint_header_records_the_sha256(tmp_path: Path) -> None:
    path = checkpoint.save(tmp_path / "c.pt", {"a": 1})
    raw = path.read_bytes()
    head, payload = raw.split(b"\n\n", 1)
    lines = head.decode().splitlines()
    assert lines[0] == "HEATBATH-CHECKPOINT 1"
    assert lines[1] == f"sha256 {hashlib.sha256(payload).hexdigest()}"
    assert lines[2] == f"bytes {len(payload)}"
    assert checkpoint.load(path) == {"a": 1}


_SAVE_UNDER_FSIZE_LIMIT = """
import resource, signal, sys
import torch
from heatbath.engine import checkpoint
from heatbath.output import io
path, text, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
failed = []
try:
    checkpoint.save(path, {"w": torch.arange(100_000, dtype=torch.float32)})
except OSError:
    failed.append("checkpoint")
try:
    io.write_text(text, "new " * 100_000)
except OSError:
    failed.append("text")
print(",".join(failed))
"""


def test_writes_are_atomic_when_the_disk_refuses_midway(tmp_path: Path) -> None:
    """Case 4 (atomic writes). A process whose writes fail after ``limit`` bytes (as on a
    full disk) tries to replace a checkpoint and a text file by bigger ones. The old files
    must survive whole: a save that wrote in place would leave ``limit`` bytes of the new
    data, and this test would fail."""
    ckpt = tmp_path / "c.pt"
    checkpoint.save(ckpt, {"w": [1.0, 2.0], "step": 3})
    text = tmp_path / "t.txt"
    text.write_text("old\n")
    before = ckpt.read_bytes()
    proc = subprocess.run([sys.executable, "-c", _SAVE_UNDER_FSIZE_LIMIT, str(ckpt), str(text),
                           "60000"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "checkpoint,text"  # both writes did fail midway
    assert ckpt.read_bytes() == before and checkpoint.load(ckpt)["step"] == 3
    assert text.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "t.txt"]  # no temporaries


# ------------------------------------------------------------------ 5. resume validates first


@pytest.mark.parametrize("change", [["--steps", "30"], ["--set", "sgd.h=0.2"],
                                    ["--seeds", "2"]], ids=" ".join)
def test_rejected_resume_writes_nothing(change: list[str], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Case 5. Before: a --resume with another --steps or --set had already overwritten
    config.toml when the checkpoint refused it."""
    assert run_cli(compare(tmp_path, "--set", "checkpoint_every=5"), capsys)[0] == 0
    before = tree(tmp_path)
    args = compare(tmp_path, "--set", "checkpoint_every=5", "--resume")
    code, err = run_cli([*args, *change], capsys)
    line = one_line(err)
    assert code == 2 and "another config" in line
    assert tree(tmp_path) == before


# ------------------------------------------------------------------ 6. counts


def test_summary_counts_every_diverged_run_as_stopped() -> None:
    """Case 6. Before: when every run stopped early, the one that ran longest set the
    'final step' and was not counted (here: 2 of 3)."""
    rows = [dict(method="sgd", seed=s, step=t, split=sp, loss=0.5, accuracy=0.5)
            for s, last in ((0, 3), (1, 7), (2, 7)) for t in (0, last)
            for sp in ("train", "test")]
    (s,) = summarize(rows, steps=100)
    assert s.runs == 3 and s.stopped == 3
    (s,) = summarize(rows, steps=7)
    assert s.stopped == 1


def test_all_seeds_diverged_is_reported_as_all_stopped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Case 6 end to end: SGD with h = 1e30 diverges on every seed."""
    code, err = run_cli(compare(tmp_path, "--seeds", "3", "--set", "sgd.h=1e30"), capsys)
    assert code == 0, err
    with (tmp_path / "r" / "summary.csv").open() as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["runs"], row["stopped"]) == ("3", "3")
    assert "3 (3 stopped)" in (tmp_path / "r" / "summary.md").read_text()


# ------------------------------------------------------------------ 7. clean shutdown


class _SignalAt:
    """A progress bar that sends ``signum`` to this process once ``at`` steps are reported."""

    def __init__(self, at: int, signum: int) -> None:
        self.at, self.signum, self.n, self.sent = at, signum, 0, False

    def update(self, k: int) -> None:
        self.n += k
        if self.n >= self.at and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def set_description(self, *_: object) -> None: ...

    def set_postfix_str(self, *_: object) -> None: ...

    def close(self) -> None: ...


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_flushes_the_checkpoint_and_resume_finishes_exactly(
        signum: int, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 7 (one process). Before: SIGTERM killed the run without writing anything since
    the last periodic checkpoint. Now the checkpoint of the step reached is written, the exit
    status is 128 + signal, and --resume ends with exactly the uninterrupted run's metrics."""
    from heatbath.engine import experiment
    from heatbath.engine.trainer import Trainer

    args = compare(tmp_path, "--set", "checkpoint_every=1000", "--set", "eval_every=5",
                   steps=40)
    assert run_cli([*args, "--name", "ref"], capsys)[0] == 0
    monkeypatch.setattr(experiment, "_progress_bar", lambda total, quiet: _SignalAt(15, signum))
    code, err = run_cli([*args, "--name", "cut"], capsys)
    assert code == 128 + signum and "interrupted" in err
    state = checkpoint.load(tmp_path / "cut" / "checkpoints" / "sgd.pt")
    assert state["step"] == 15  # the step reached, not a periodic checkpoint (none was due)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    monkeypatch.undo()
    calls = []
    step_fn = Trainer._train_step
    monkeypatch.setattr(Trainer, "_train_step", lambda self: (calls.append(1), step_fn(self)))
    assert run_cli([*args, "--name", "cut", "--resume"], capsys)[0] == 0
    assert len(calls) == 40 - 15
    assert (tmp_path / "cut" / "metrics.csv").read_bytes() == \
        (tmp_path / "ref" / "metrics.csv").read_bytes()


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(x) for x in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"  # a zombie has exited (waiting only for its reaper)


def _start_parallel_run(tmp_path: Path) -> tuple[subprocess.Popen[str], set[int], Path]:
    """A two-worker comparison long enough to be interrupted, once both workers train."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent("""
        steps = 1000000
        eval_every = 100000
        checkpoint_every = 200
        threads = 1
        workers = 2
        [data]
        name = "spirals"
        n_train = 40
        n_test = 40
        [model]
        name = "shlp"
        hidden = 4
        [plots]
        enabled = false
        [methods.sgd]
        [methods.adam]
    """))
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from heatbath.cli import main; sys.exit(main())",
         "compare", "--config", str(cfg), "--out", str(tmp_path), "--name", "par", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpts = tmp_path / "par" / "checkpoints"
    deadline = time.monotonic() + 240
    workers: set[int] = set()
    while time.monotonic() < deadline:
        workers |= _children(proc.pid)
        if (ckpts / "sgd.pt").is_file() and (ckpts / "adam.pt").is_file():
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the workers did not start training in 240 s")
    return proc, workers | _children(proc.pid), ckpts


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_the_workers_and_flushes_their_checkpoints(tmp_path: Path) -> None:
    """Case 7 (workers). Before: SIGTERM to the parent left both workers training."""
    proc, workers, ckpts = _start_parallel_run(tmp_path)
    assert len(workers) >= 2
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted" in err and "Traceback" not in err
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)]
    for name in ("sgd.pt", "adam.pt"):
        assert checkpoint.load(ckpts / name)["step"] >= 200  # whole and verified


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_no_worker_survives_kill_9_of_its_parent(tmp_path: Path) -> None:
    """Case 7 (orphans). Before: after kill -9 of the parent the workers kept training and
    writing checkpoints (one hung forever in a pipe write)."""
    proc, workers, ckpts = _start_parallel_run(tmp_path)
    assert len(workers) >= 2
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)]
    stamps = {p.name: p.stat().st_mtime_ns for p in ckpts.iterdir()}
    time.sleep(2)
    assert {p.name: p.stat().st_mtime_ns for p in ckpts.iterdir()} == stamps
    # the folder is free again, and every checkpoint left behind is whole
    for name in ("sgd.pt", "adam.pt"):
        checkpoint.verify(ckpts / name)


# ------------------------------------------------------------------ 8. bad input


def _idx_gz(path: Path, data: bytes, dims: tuple[int, ...]) -> None:
    header = b"\0\0\x08" + bytes([len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    with gzip.open(path, "wb") as fh:
        fh.write(header + data)


def _mnist_dir(root: Path, n: int = 20) -> Path:
    root.mkdir()
    for prefix in ("train", "t10k"):
        _idx_gz(root / f"{prefix}-images-idx3-ubyte.gz", bytes(range(256)) * (n * 784 // 256)
                + bytes(n * 784 % 256), (n, 28, 28))
        _idx_gz(root / f"{prefix}-labels-idx1-ubyte.gz", bytes(i % 10 for i in range(n)), (n,))
    return root


@pytest.mark.parametrize("damage", ["truncated", "bit", "not gzip"])
def test_corrupt_gz_idx_file_is_one_line(damage: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Case 8. Before: EOFError/BadGzipFile tracebacks."""
    from heatbath.data import mnist

    root = _mnist_dir(tmp_path / "mnist")
    assert mnist(root)[0].shape == (20, 784)  # the intact folder loads
    bad = root / "train-images-idx3-ubyte.gz"
    raw = bad.read_bytes()
    mid = len(raw) // 2  # inside the deflate stream (the header holds the file's name)
    bad.write_bytes({"truncated": raw[: len(raw) // 2],
                     "bit": raw[:mid] + bytes([raw[mid] ^ 0xFF]) + raw[mid + 1:],
                     "not gzip": b"\x1f\x8b" + b"\0" * 40}[damage])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        mnist(root)
    code, err = run_cli(["train", "sgd", "--out", str(tmp_path / "out"), "--set",
                         'data.name="mnist"', "--set", f'data.root="{root}"', "--steps", "2",
                         "--no-plots", "-q"], capsys)
    line = one_line(err)
    assert code == 2 and "train-images-idx3-ubyte.gz" in line
    assert not (tmp_path / "out").exists()


def test_empty_mnist_dir_for_reproduce_fig5_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Case 8. Before: a FileNotFoundError traceback once Fig. 5 reached its MNIST part."""
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli(["reproduce", "fig5", "--mnist-dir", str(empty), "--out",
                         str(tmp_path / "paper"), "--quick", "-q"], capsys)
    line = one_line(err)
    assert code == 2 and "--mnist-dir" in line and str(empty) in line
    assert not (tmp_path / "paper").exists()


@pytest.mark.parametrize(("argv", "field"), [
    (["--h", "1e39"], "methods.sgd.h"),
    (["--set", "h=-1e39"], "methods.sgd.h"),
    (["--set", "data.turns=1e300"], "data.turns"),
    (["--first-seed", str(2**63)], "first_seed"),
    (["--set", f"seeds=[0, {2**64}]"], "seeds[1]"),
    (["--first-seed", str(2**63 - 2), "--seeds", "5"], "seeds"),
    (["--seeds", str(10**15)], "seeds"),
    (["--n-train", str(10**14)], "data.n_train"),
    (["--hidden", str(10**12)], "model.hidden"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_out_of_range_input_is_one_line_and_writes_nothing(
        argv: list[str], field: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Case 8. Before: h = 1e39 and seeds >= 2^63 passed validation (a RuntimeError traceback
    in the first step; an overflow after config.toml was written); huge sizes grew memory
    without limit."""
    code, err = run_cli(["train", "sgd", "--out", str(tmp_path), "--steps", "3", "--no-plots",
                         "-q", *argv], capsys)
    line = one_line(err)
    assert code == 2 and field in line
    assert not list(tmp_path.iterdir())


def test_memory_guard_uses_the_available_memory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 8: the resource guard refuses what exceeds the memory available now, and says so."""
    args = ["train", "sgd", "--out", str(tmp_path), "--steps", "3", "--no-plots", "-q",
            "--seeds", "2000", "--hidden", "500"]
    monkeypatch.setattr(config_module, "available_memory", lambda: 50 << 20)  # 50 MB
    code, err = run_cli(args, capsys)
    line = one_line(err)
    assert code == 2 and "memory" in line and "50 MB available" in line
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(config_module, "available_memory", lambda: 64 << 30)  # 64 GB
    cfg = config_module.resolve({"seeds": 2000, "model": {"name": "shlp", "hidden": 500},
                                 "methods": {"sgd": {}}})
    assert len(cfg["seeds"]) == 2000  # the same request fits in 64 GB


def test_non_utf8_config_names_the_file(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Case 8. Before: "'utf-8' codec can't decode byte 0xff", without the file's name."""
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    code, err = run_cli(["compare", "--config", str(path), "--out", str(tmp_path / "o")], capsys)
    line = one_line(err)
    assert code == 2 and str(path) in line and "UTF-8" in line


def test_read_only_output_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 8. Before: a PermissionError/OSError traceback. (Simulated: the tests may run as
    root, who can write into a chmod 0o555 folder.)"""
    ro = tmp_path / "ro"
    real_mkdir = os.mkdir

    def mkdir(path, *a, **kw):
        if Path(path) == ro or ro in Path(path).parents:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *a, **kw)

    monkeypatch.setattr(os, "mkdir", mkdir)
    code, err = run_cli(compare(ro), capsys)
    line = one_line(err)
    assert code == 2 and "Read-only file system" in line and str(ro) in line


def test_full_disk_is_one_line_and_leaves_no_temporary(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 8. Before: an OSError traceback. (Simulated: fsync reports ENOSPC, as a full
    disk does when the data reaches it.)"""
    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    code, err = run_cli(compare(tmp_path), capsys)
    line = one_line(err)
    assert code == 2 and "No space left on device" in line and str(tmp_path / "r") in line
    assert not [p for p in tmp_path.rglob("*.tmp")]
