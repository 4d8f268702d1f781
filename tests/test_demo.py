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
