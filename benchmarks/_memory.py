"""Peak resident memory of this process and all its descendants, sampled from /proc (the OS's figures)."""

import os
import threading
import time


def _rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _descendants(pid):
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    out.append(int(child))
                    out.extend(_descendants(int(child)))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def tree_rss_mib():
    """Resident memory of this process plus its descendants, in MiB."""
    me = os.getpid()
    return sum(_rss_kib(p) for p in [me, *_descendants(me)]) / 1024.0


class PeakMemory:
    """Context manager: ``.peak`` is the highest tree RSS seen (MiB), ``.increase`` that minus the start."""

    def __init__(self, interval=0.005):
        self.interval = interval

    def __enter__(self):
        self.start = tree_rss_mib()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mib())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_mib())
        self.increase = self.peak - self.start
        return False
