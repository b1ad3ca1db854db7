"""salesflow benchmarks: the engine side by side with the storage limit and SpiffWorkflow.

Each workload is a module runnable on its own (``python -m benchmarks.lifecycle --db sqlite``);
``python -m benchmarks`` runs them all. See ``benchmarks/README.md``.
"""
