"""Run one measured function in a fresh interpreter and print its result as JSON.

``python -m benchmarks._child MODULE FUNCTION JSON_KWARGS``: the function returns a dict (it times
itself); this adds the process's peak resident set size, so every variant's memory is measured
alone, in a process that ran nothing else.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
from pathlib import Path

MARKER = "BENCH-RESULT "


def main() -> None:
    module_name, function_name, kwargs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    function = getattr(importlib.import_module(module_name), function_name)
    result = dict(function(**kwargs))
    result["peak_rss_mb"] = peak_rss_mb()
    sys.stdout.write(MARKER + json.dumps(result) + "\n")


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, which starts afresh at exec. (``ru_maxrss`` does not on Linux: it
    keeps the high-water mark of the process that forked us, the benchmark driver.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere: an upper bound


if __name__ == "__main__":
    main()
