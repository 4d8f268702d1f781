"""Cold start: import time and first fit+predict of each estimator, with an empty and with a filled numba cache.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_coldstart.py [--repeats 1] [--json coldstart.json]

Every figure is measured in a fresh Python process (``subprocess``), with
``NUMBA_CACHE_DIR`` pointing to a folder of its own, so that numba neither
reads nor writes the package's ``__pycache__`` nor the user's cache:

- **cold**: a new empty cache folder for every process (what a new user, a CI
  job or a serverless function meets on its first run);
- **warm**: one cache folder filled beforehand by running everything once
  (what every later run meets).

Measured, each in its own process unless said otherwise:

- ``import sklearn`` and ``import sklearn.mixture`` (scikit-learn's own import,
  the comparison point for ``import emkit``), and ``import emkit``;
- the first fit + predict of each estimator on tiny data (100 rows; LDA: 100
  documents of 30 terms) and on small data (2,000 rows; LDA: 500 documents),
  each in a fresh process, after ``import emkit`` (not counted);
- all the estimators (and GaussianMixture on data with NaN) one after the other in one process (tiny data);
- the README's tour (the python block of README.md), whole, import included.

"Predict" is ``predict`` for the mixture and the HMMs, ``filter`` then
``smooth`` for KalmanFilter and ``transform`` for LDA. Goals (issue 12): every
first fit+predict under 2 s cold, the tour under 10 s cold, import under 1 s
beyond scikit-learn's, every warm first fit+predict under 0.3 s. Medians over
``--repeats`` processes.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Data and one first fit + predict per estimator; `n` is the number of rows (documents for LDA).
ESTIMATORS = {
    "GaussianMixture": """
        from emkit import GaussianMixture
        X = np.r_[rng.normal(0, 1, (n // 2, 2)), rng.normal(5, 1, (n - n // 2, 2))]
        GaussianMixture(2, random_state=0).fit(X).predict(X)
    """,
    "GaussianMixture, NaN": """
        from emkit import GaussianMixture
        X = np.r_[rng.normal(0, 1, (n // 2, 2)), rng.normal(5, 1, (n - n // 2, 2))]
        X[::7, 1] = np.nan
        GaussianMixture(2, random_state=0).fit(X).predict(X)
    """,
    "GaussianHMM": """
        from emkit import GaussianHMM
        X = np.r_[rng.normal(0, 1, (n // 2, 2)), rng.normal(5, 1, (n - n // 2, 2))]
        GaussianHMM(2, random_state=0).fit(X).predict(X)
    """,
    "CategoricalHMM": """
        from emkit import CategoricalHMM
        X = rng.randint(4, size=(n, 1))
        CategoricalHMM(2, random_state=0).fit(X).predict(X)
    """,
    "PoissonHMM": """
        from emkit import PoissonHMM
        X = rng.poisson([[2.0, 5.0]], size=(n, 2))
        PoissonHMM(2, random_state=0).fit(X).predict(X)
    """,
    "KalmanFilter": """
        from emkit import KalmanFilter
        X = np.cumsum(rng.normal(size=(n, 2)), axis=0)
        kf = KalmanFilter(n_dim_state=2, max_iter=10).fit(X)
        kf.filter(X)
        kf.smooth(X)
    """,
    "LatentDirichletAllocation": """
        from emkit import LatentDirichletAllocation
        X = rng.poisson(1.0, size=(n, 30))
        LatentDirichletAllocation(3, random_state=0).fit(X).transform(X)
    """,
}
SIZES = {"tiny": 100, "small": 2_000}
LDA_SIZES = {"tiny": 100, "small": 500}

CHILD = """
import json, time, warnings
t0 = time.perf_counter()
{imports}
t1 = time.perf_counter()
import numpy as np
warnings.simplefilter("ignore")
times = {{}}
for name, n, code in {jobs!r}:
    rng = np.random.RandomState(0)
    start = time.perf_counter()
    exec(code, {{"np": np, "rng": rng, "n": n}})
    times[name] = time.perf_counter() - start
print("RESULT" + json.dumps({{"import": t1 - t0, "times": times}}))
"""


def readme_tour():
    """The python block of the README (the tour of the estimators)."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", text, re.S)
    if match is None:
        raise SystemExit("README.md has no python block")
    return match.group(1)


def child(cache_dir, imports="import emkit", jobs=(), script=None):
    """Run one fresh process; returns (import seconds, {job: seconds}, wall seconds of the whole process)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("NUMBA_")}
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    source = script if script is not None else CHILD.format(imports=imports, jobs=list(jobs))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"child failed:\n{result.stderr[-3000:]}")
    for line in result.stdout.splitlines():
        if line.startswith("RESULT"):
            data = json.loads(line[len("RESULT"):])
            return data["import"], data["times"], wall
    return None, {}, wall


def jobs_for(size, names=ESTIMATORS):
    return [(name, (LDA_SIZES if name == "LatentDirichletAllocation" else SIZES)[size],
             textwrap.dedent(ESTIMATORS[name])) for name in names]


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else 0.5 * (values[middle - 1] + values[middle])


def measure(kind, cache, repeats, tour):
    """All figures for one kind ("cold" or "warm"); ``cache()`` gives the cache folder of each process."""
    out = {}

    def run(key, **kwargs):
        samples = [child(cache(), **kwargs) for _ in range(repeats)]
        out[key] = samples
        return samples

    for label, imports in (("import sklearn", "import sklearn"),
                           ("import sklearn.mixture", "import sklearn, sklearn.mixture"),
                           ("import emkit", "import emkit")):
        run(label, imports=imports)
    for size in SIZES:
        for job in jobs_for(size):
            run(f"{job[0]} ({size})", jobs=[job])
    run("all of them, one process (tiny)", jobs=jobs_for("tiny"))
    tour_script = (
        "import time\nt0 = time.perf_counter()\n" + tour
        + "\nprint('RESULT' + __import__('json').dumps({'import': 0.0, 'times': {'tour': time.perf_counter() - t0}}))\n"
    )
    run("README tour", script=tour_script)
    print(f"\n## {kind} (fresh process each; median of {repeats}; seconds)")
    figures = {}
    for key, samples in out.items():
        if key.startswith("import"):
            value = median([s[0] for s in samples])
        else:
            value = median([sum(s[1].values()) for s in samples])
        figures[key] = value
        detail = ""
        if key.startswith("all of them"):
            per = {name: median([s[1][name] for s in samples]) for name in samples[0][1]}
            detail = "  (" + ", ".join(f"{name} {v:.2f}" for name, v in per.items()) + ")"
        print(f"{key:42s} {value:7.2f}{detail}")
    figures["import emkit beyond sklearn.mixture"] = figures["import emkit"] - figures["import sklearn.mixture"]
    print(f"{'import emkit beyond sklearn.mixture':42s} {figures['import emkit beyond sklearn.mixture']:7.2f}")
    return figures


def goals(cold, warm):
    print("\n## goals (issue 12)")
    checks = [("import emkit beyond scikit-learn's (cold) < 1 s", cold["import emkit beyond sklearn.mixture"], 1.0),
              ("README tour (cold) < 10 s", cold["README tour"], 10.0)]
    for kind, figures, limit in (("cold", cold, 2.0), ("warm", warm, 0.3)):
        for key, value in figures.items():
            if key.endswith("(tiny)") and not key.startswith("all of them"):
                checks.append((f"{key} first fit+predict ({kind}) < {limit} s", value, limit))
    for label, value, limit in checks:
        print(f"{'met   ' if value < limit else 'MISSED'} {label:70s} {value:7.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1, help="processes per figure (median)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f}")
    tour = readme_tour()
    with tempfile.TemporaryDirectory(prefix="emkit-coldstart-") as folder:
        folder = Path(folder)
        counter = iter(range(10**6))
        cold = measure("cold: empty numba cache", lambda: folder / f"cold{next(counter)}", args.repeats, tour)
        warm_dir = folder / "warm"
        for size in SIZES:  # fill the cache with everything the warm runs use
            child(warm_dir, jobs=jobs_for(size))
        child(warm_dir, script=tour)
        warm = measure("warm: filled numba cache", lambda: warm_dir, args.repeats, tour)
    goals(cold, warm)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"cold": cold, "warm": warm}, indent=2))


if __name__ == "__main__":
    main()
