"""Named failpoints inside the engine's step, for crash and rollback tests.

Off unless armed: by ``arm(name, action)`` in-process, or by the environment variable
``SALESFLOW_FAILPOINTS="after_instance_update=crash,before_commit=raise"`` for a subprocess. Actions:
``raise`` (an exception; the transaction rolls back), ``crash`` (``os._exit(137)``, like kill -9) and
``stop`` (the process stops itself with SIGSTOP, like a stalled worker, until a SIGCONT; once only).
Points: after_instance_update, after_history, after_timers, before_commit.
"""

from __future__ import annotations

import os
import signal

POINTS = ("after_instance_update", "after_history", "after_timers", "before_commit")
ACTIONS = ("raise", "crash", "stop")
_armed: dict[str, str] = {}


class FailpointError(RuntimeError):
    """Raised by an armed failpoint whose action is ``raise``."""


def _from_environment() -> dict[str, str]:
    spec = os.environ.get("SALESFLOW_FAILPOINTS", "")
    pairs = (item.split("=", 1) for item in spec.split(",") if "=" in item)
    return {name.strip(): action.strip() for name, action in pairs}


_armed.update(_from_environment())


def arm(name: str, action: str = "raise") -> None:
    if name not in POINTS or action not in ACTIONS:
        raise ValueError(f"unknown failpoint {name}={action}; points: {', '.join(POINTS)}")
    _armed[name] = action


def disarm_all() -> None:
    _armed.clear()


def hit(name: str) -> None:
    """Called at the named point; does nothing unless armed."""
    if not _armed:
        return
    action = _armed.get(name)
    if action == "crash":
        os._exit(137)
    if action == "raise":
        raise FailpointError(f"failpoint {name}")
    if action == "stop":
        del _armed[name]  # once: after SIGCONT the process carries on like a worker that was frozen
        os.kill(os.getpid(), signal.SIGSTOP)
