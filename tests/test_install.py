"""emkit imports and fits where nothing can be cached (read-only package folder, no writable cache).

numba's ``cache=True`` needs a writable folder: ``NUMBA_CACHE_DIR``, the
package's ``__pycache__`` or the user's cache folder. Where none is writable
(containers, HPC modules, serverless), emkit must compile in memory instead of
failing at import.

The main test builds that situation for real: a copy of the package behind a
read-only bind mount in a private mount namespace (``unshare -m``; CI runs as
root, which ignores file modes but not a read-only mount), run as ``nobody``
(``setpriv``) with an unwritable HOME. The other tests reach the two places
numba can fail (at decoration, at the first save) through numba's
``NUMBA_CACHE_LOCATOR_CLASSES`` and run anywhere.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import emkit

PACKAGE = Path(emkit.__file__).resolve().parent

# Imports emkit and fits + predicts with every estimator on tiny data.
FIT_EVERY_ESTIMATOR = textwrap.dedent(
    """
    import sys
    import numpy as np
    import emkit
    from emkit import (CategoricalHMM, GaussianHMM, GaussianMixture, KalmanFilter,
                       LatentDirichletAllocation, PoissonHMM)

    assert emkit.__file__.startswith(sys.argv[1]), emkit.__file__
    rng = np.random.RandomState(0)
    X = np.r_[rng.normal(0, 1, (20, 2)), rng.normal(5, 1, (20, 2))]
    symbols = rng.randint(3, size=(40, 1))
    counts = rng.poisson(2.0, size=(40, 2))
    GaussianMixture(2, random_state=0).fit(X).predict(X)
    GaussianHMM(2, random_state=0).fit(X).predict(X)
    CategoricalHMM(2, random_state=0).fit(symbols).predict(symbols)
    PoissonHMM(2, random_state=0).fit(counts).predict(counts)
    KalmanFilter(n_dim_state=2, max_iter=3).fit(X).smooth(X)
    LatentDirichletAllocation(2, random_state=0).fit(counts).transform(counts)
    print("fitted every estimator")
    """
)


def _clean_env(**extra):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("NUMBA_", "XDG_"))}
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def _run(argv, env, timeout=900):
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)


def _isolation_unavailable(python):
    """Why unshare + setpriv cannot be used here (None when they can)."""
    for tool in ("unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = _run(["unshare", "-m", "--propagation", "private", "true"], os.environ.copy(), timeout=60)
    if probe.returncode != 0:
        return f"cannot create a private mount namespace (unshare -m): {probe.stderr.strip()}"
    probe = _run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", python, "-c", "pass"],
        _clean_env(HOME="/"), timeout=60,
    )
    if probe.returncode != 0:
        return f"cannot run Python as nobody (setpriv): {probe.stderr.strip()[-300:]}"
    return None


@pytest.fixture
def readonly_copy():
    """A world-readable copy of the package (``<root>/emkit``) and an unwritable home folder."""
    root = Path(tempfile.mkdtemp(prefix="emkit-readonly-"))
    try:
        shutil.copytree(PACKAGE, root / "site" / "emkit", ignore=shutil.ignore_patterns("__pycache__", "*.nb[ic]"))
        (root / "home").mkdir()
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)  # readable by nobody, writable by root only
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_imports_and_fits_from_a_readonly_package_without_a_writable_cache(readonly_copy):
    python = sys.executable
    reason = _isolation_unavailable(python)
    if reason is not None:
        pytest.skip(reason)
    site = readonly_copy / "site"
    script = readonly_copy / "fit_every_estimator.py"
    script.write_text(FIT_EVERY_ESTIMATOR)
    script.chmod(0o644)
    # In a private mount namespace: make the copy read-only, then drop to nobody.
    shell = (
        'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && '
        'exec setpriv --reuid=nobody --regid=nogroup --clear-groups "$2" "$3" "$1"'
    )
    env = _clean_env(HOME=str(readonly_copy / "home"), PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1")
    result = _run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", shell, "sh", str(site), python, str(script)], env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fitted every estimator" in result.stdout
    assert not list(readonly_copy.rglob("*.nbi")), "nothing can have been cached"


# A locator that never finds a folder: numba then has no cache location at all.
NO_LOCATOR = textwrap.dedent(
    """
    class NoLocator:
        @classmethod
        def from_function(cls, py_func, py_file):
            return None
    """
)

# A locator that accepts every function but whose folder cannot be written when numba saves.
UNWRITABLE_LOCATOR = textwrap.dedent(
    """
    import os
    from numba.core.caching import UserProvidedCacheLocator

    class UnwritableLocator(UserProvidedCacheLocator):
        def __init__(self, py_func, py_file):
            super().__init__(py_func, py_file)
            self._cache_path = os.path.join(os.environ["UNWRITABLE"], "numba")

        @classmethod
        def from_function(cls, py_func, py_file):
            return cls(py_func, py_file)

        def ensure_cache_path(self):
            raise PermissionError(13, "Permission denied", self._cache_path)
    """
)

# Imports emkit with debug logging, runs one HMM and one Kalman kernel, prints the log records. The inputs have
# more rows than the kernels' numpy path for small inputs takes, so that the compiled kernels run.
RUN_KERNELS = textwrap.dedent(
    """
    import logging
    import numpy as np
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("emkit").addHandler(handler)
    logging.getLogger("emkit").setLevel(logging.DEBUG)
    from emkit._inference.hmm import viterbi
    from emkit._inference.lgssm import kalman_filter
    result = viterbi(np.log([0.5, 0.5]), np.log([[0.9, 0.1], [0.2, 0.8]]), np.zeros((5000, 2)))
    assert result.states.shape == (5000,)
    one = np.ones((1, 1, 1))
    filtered = kalman_filter(np.ones((5000, 1)), [0, 5000], one, np.zeros((1, 1)), one, one, np.zeros((1, 1)), one,
                             np.zeros(1), np.eye(1))
    assert np.isfinite(filtered.log_likelihood)
    for record in records:
        print(record.levelname, record.getMessage())
    """
)


def _run_with_locator(tmp_path, locator_source, class_name):
    (tmp_path / "locators.py").write_text(locator_source)
    env = _clean_env(
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(PACKAGE.parent)]),
        NUMBA_CACHE_LOCATOR_CLASSES=f"locators.{class_name}",
        UNWRITABLE=str(tmp_path / "unwritable"),
    )
    return _run([sys.executable, "-c", RUN_KERNELS], env)


def _logged_once(stdout):
    lines = [line for line in stdout.splitlines() if "in memory" in line]
    assert len(lines) == 1, stdout
    assert lines[0].startswith("DEBUG ")


def test_no_cache_location_at_import_compiles_in_memory(tmp_path):
    result = _run_with_locator(tmp_path, NO_LOCATOR, "NoLocator")
    assert result.returncode == 0, result.stderr[-3000:]
    _logged_once(result.stdout)


def test_unwritable_cache_at_first_compile_compiles_in_memory(tmp_path):
    result = _run_with_locator(tmp_path, UNWRITABLE_LOCATOR, "UnwritableLocator")
    assert result.returncode == 0, result.stderr[-3000:]
    _logged_once(result.stdout)
    assert not (tmp_path / "unwritable").exists()


def test_numba_cache_dir_is_respected(tmp_path):
    env = _clean_env(PYTHONPATH=str(PACKAGE.parent), NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    result = _run([sys.executable, "-c", RUN_KERNELS], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "in memory" not in result.stdout
    cached = {path.name.split(".")[0] for path in (tmp_path / "cache").rglob("*.nbi")}
    assert {"lgssm", "hmm"} <= cached, cached
