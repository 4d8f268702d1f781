"""Compiled results must not depend on what was compiled before (numba issue #7168).

numba compiles a plain ``@jit`` function with the fastmath flags of whichever
caller compiles it first, and keeps (and caches) that machine code for every
later caller. A plain helper called from a ``jit(reassociate=True)`` kernel
would therefore give reassociated sums to plain callers too, but only in a
process (or with a cache) where the reassociating kernel came first. The rule
in :func:`emkit._inference._jit.jit`: whatever a reassociating kernel calls is
itself ``reassociate=True`` or inlined.
"""

import ast
import os
import pathlib
import subprocess
import sys
import textwrap

import emkit

PACKAGE = pathlib.Path(emkit.__file__).parent


def _jit_functions():
    """{(module, name): (flags, names it calls)} for every function decorated with ``jit`` in the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        module = path.relative_to(PACKAGE).with_suffix("").as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Name) and decorator.id == "jit":
                    flags = frozenset()
                elif isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "jit":
                    flags = frozenset(k.arg for k in decorator.keywords if getattr(k.value, "value", False) is True)
                else:
                    continue
                calls = {
                    call.func.id if isinstance(call.func, ast.Name) else call.func.attr
                    for call in ast.walk(node)
                    if isinstance(call, ast.Call) and isinstance(call.func, (ast.Name, ast.Attribute))
                }
                found[module, node.name] = (flags, calls)
    return found


def _resolve(functions, module, name):
    """The compiled function a call ``name`` in ``module`` reaches: the module's own, else the one of that name."""
    if (module, name) in functions:
        return module, name
    matches = [key for key in functions if key[1] == name]
    return matches[0] if len(matches) == 1 else None


def test_the_analysis_sees_the_kernels():
    functions = _jit_functions()
    assert ("_inference/hmm", "_forward_backward_kernel_many") in functions
    assert "reassociate" in functions["_inference/hmm", "_forward_backward_kernel_many"][0]
    assert "inline" in functions["_inference/hmm", "_forward_backward_sequences"][0]


def test_what_a_reassociating_kernel_calls_is_reassociating_or_inlined():
    functions = _jit_functions()
    offenders = []
    for (module, name), (flags, calls) in functions.items():
        if "reassociate" not in flags or "inline" in flags:
            continue
        pending, seen = [(module, call) for call in calls], set()
        while pending:
            key = _resolve(functions, *pending.pop())
            if key is None or key in seen:
                continue
            seen.add(key)
            callee_flags, callee_calls = functions[key]
            if "inline" in callee_flags:  # compiled as part of the kernel: look through it
                pending.extend((key[0], call) for call in callee_calls)
            elif "reassociate" not in callee_flags:
                offenders.append(f"{module}.{name} -> {key[0]}.{key[1]}")
    assert not offenders, offenders


_PROGRAM = textwrap.dedent("""
    import sys
    import numpy as np
    from emkit._inference import hmm
    if sys.argv[1] == "many-first":  # compile the reassociating many-state kernel first
        K = 12
        hmm.forward_backward(np.ones(K) / K, np.full((K, K), 1.0 / K), np.zeros((5000, K)))
    rng = np.random.RandomState(0)
    K = 4
    transmat = rng.dirichlet(np.ones(K), size=K)
    log_frameprob = rng.normal(scale=3.0, size=(6000, K))
    offsets = np.arange(0, 6001, 300)
    result = hmm.forward_backward(np.ones(K) / K, transmat, log_frameprob, offsets)
    sys.stdout.write(result.posteriors.tobytes().hex()[:200000] + result.xi_sum.tobytes().hex())
""")


def test_a_fit_does_not_depend_on_what_was_compiled_before(tmp_path):
    def run(order):
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / order))  # compiled afresh in each process
        result = subprocess.run([sys.executable, "-c", _PROGRAM, order], capture_output=True, text=True, env=env,
                                timeout=600)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert run("many-first") == run("few-first")
