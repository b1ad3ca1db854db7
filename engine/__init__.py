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
from engine.runtime import Engine

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
