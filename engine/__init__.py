"""salesflow's engine: process definitions, the decision core, and the durable runtime.

The library API is :class:`Engine` (built from a database URL and a clock); see the README.
"""

from engine.clock import ManualClock, SystemClock
from engine.errors import (
    ConflictError,
    DefinitionError,
    EventRejected,
    NotFoundError,
    SalesflowError,
    UsageError,
)
from engine.loader import check_file, load_file, load_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from engine.runtime import Engine


def __getattr__(name: str) -> object:
    # Engine is imported on first use: engine.runtime needs storage, and storage needs engine's
    # value types, so importing it here would make "import storage.tables" first a circular import.
    if name == "Engine":
        from engine.runtime import Engine

        return Engine
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


__all__ = [
    "ConflictError",
    "DefinitionError",
    "Engine",
    "EventRejected",
    "ManualClock",
    "NotFoundError",
    "SalesflowError",
    "SystemClock",
    "UsageError",
    "check_file",
    "load_file",
    "load_text",
]
