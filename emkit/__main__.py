"""``python -m emkit demo``: see :mod:`emkit._demo`."""

if __name__ == "__main__":
    import sys

    from ._demo import main

    sys.exit(main())
