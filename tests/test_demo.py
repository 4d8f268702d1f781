"""The README's first command: ``python -m emkit demo`` prints EM's progress and draws it."""

import os
import subprocess
import sys

import pytest


def test_demo_prints_the_objective_per_iteration_and_writes_pictures(tmp_path):
    pytest.importorskip("matplotlib")
    env = dict(os.environ, MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, "-m", "emkit", "demo", "--outdir", str(tmp_path / "new")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("iteration")]
    values = [float(line.rsplit(" ", 1)[1]) for line in lines]
    assert len(values) > 5
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))  # EM never goes down
    assert "converged: True" in result.stdout
    assert (tmp_path / "new" / "emkit_demo.png").stat().st_size > 10_000
    assert (tmp_path / "new" / "emkit_demo.gif").stat().st_size > 10_000


# Put first on sys.path of a child process: makes matplotlib unimportable, as if it were not installed.
BLOCK_MATPLOTLIB = '''
import sys


class _NoMatplotlib:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoMatplotlib())
'''


def _run_without_matplotlib(tmp_path, *args):
    (tmp_path / "sitecustomize.py").write_text(BLOCK_MATPLOTLIB)
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


def test_demo_without_matplotlib_says_what_to_do_in_one_line(tmp_path):
    blocked = _run_without_matplotlib(tmp_path, "-c", "import matplotlib")
    assert "ModuleNotFoundError" in blocked.stderr  # the set-up works
    result = _run_without_matplotlib(tmp_path, "-m", "emkit", "demo")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "python -m emkit demo: matplotlib is not installed; install emkit[demo], or pass --no-plot"
    ]
    assert not list(tmp_path.glob("emkit_demo.*"))


def test_demo_no_plot_prints_the_run_without_matplotlib(tmp_path):
    result = _run_without_matplotlib(tmp_path, "-m", "emkit", "demo", "--no-plot")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert sum(line.startswith("iteration") for line in result.stdout.splitlines()) > 5
    assert "converged: True" in result.stdout
    assert not list(tmp_path.glob("emkit_demo.*"))


def test_demo_help_is_plain_text():
    result = subprocess.run([sys.executable, "-m", "emkit", "--help"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0
    assert "--no-plot" in result.stdout and "emkit[demo]" in result.stdout
    assert "``" not in result.stdout and ":class:" not in result.stdout and ":func:" not in result.stdout
