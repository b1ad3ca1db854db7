"""Run one measured function in a fresh interpreter and print its result as JSON.

``python -m benchmarks._child MODULE FUNCTION JSON_KWARGS``: the function returns a dict (it times
itself); this adds the process's peak resident set size (``ru_maxrss``), so every variant's memory
is measured alone, in a process that ran nothing else.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys

MARKER = "BENCH-RESULT "


def main() -> None:
    module_name, function_name, kwargs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    function = getattr(importlib.import_module(module_name), function_name)
    result = dict(function(**kwargs))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    sys.stdout.write(MARKER + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
