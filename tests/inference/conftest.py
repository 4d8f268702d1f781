"""Markers of the kernel tests."""


def pytest_configure(config):
    config.addinivalue_line("markers", "compiled_only: run only through the compiled kernels (too long in numpy)")
