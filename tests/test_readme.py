"""The README's tour runs as written, and its claims about the results hold."""

import re
import warnings
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parent.parent / "README.md"


def _tour():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README has one python block, the tour"
    return blocks[0]


def test_the_readme_tour_runs_and_fits_what_it_says():
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # convergence notes on tiny data are not the point here
        exec(compile(_tour(), str(README), "exec"), namespace)
    gm, hmm, lda, online = namespace["gm"], namespace["hmm"], namespace["lda"], namespace["online"]
    # Two clusters at 0 and 5: the mixture, the HMM and the online mixture all find them.
    for means in (gm.means_, hmm.means_, online.means_):
        np.testing.assert_allclose(np.sort(means[:, 0]), [0.0, 5.0], atol=0.35)
    assert len(gm.restarts_) == 4 and np.all(np.diff(gm.lower_bound_history_) >= -1e-9)
    assert lda.components_.shape == (5, 40)
    assert namespace["X_missing"].shape == namespace["X"].shape


def test_the_readme_gives_exactly_two_commands_and_ci_runs_the_second():
    commands = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    assert len(commands) == 2
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1].strip() in ci
