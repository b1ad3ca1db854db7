"""SpiffWorkflow 3.x running the bank flow as BPMN, persisted as JSON in the same database.

SpiffWorkflow keeps a workflow in memory; to survive a restart its users serialize it after every
step (``BpmnWorkflowSerializer.serialize_json``, which includes the spec) and load it again
before the next one. That is what this does: one row per workflow, one transaction per step
(row read with ``FOR UPDATE`` on PostgreSQL, deserialized, advanced, serialized, updated).

SpiffWorkflow's timers read ``datetime.now`` directly; to fire a one-week timer without waiting a
week, :func:`use_manual_clock` swaps the timer module's ``datetime`` for a subclass whose ``now``
is set by the benchmark (the equivalent of salesflow's ManualClock).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.parser import BpmnParser
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs.event_definitions import timer as spiff_timer
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, Text, insert, select, update

BPMN_FILE = Path(__file__).resolve().parent / "bpmn" / "private_banking.bpmn"

metadata = MetaData()
workflows = Table(
    "spiff_workflows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("business_key", String(200), nullable=False, unique=True),
    Column("status", String(10), nullable=False),
    Column("serialization", Text, nullable=False),
)


class _ManualDatetime(datetime):
    current: ClassVar[datetime]

    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        return cls.current if tz is None else cls.current.astimezone(tz)


def use_manual_clock(start: datetime) -> type[_ManualDatetime]:
    _ManualDatetime.current = start
    spiff_timer.datetime = _ManualDatetime  # type: ignore[misc]
    return _ManualDatetime


class SpiffRunner:
    """Start, advance and persist bank-flow workflows."""

    def __init__(self) -> None:
        parser = BpmnParser()
        parser.add_bpmn_file(str(BPMN_FILE))
        self.spec = parser.get_spec("private_banking")
        self.script_engine = PythonScriptEngine(
            environment=TaskDataEnvironment({"datetime": datetime, "timedelta": timedelta})
        )
        self.serializer = BpmnWorkflowSerializer()

    def start(self, conn: Connection, key: str, data: dict[str, Any]) -> int:
        workflow = BpmnWorkflow(self.spec, script_engine=self.script_engine)
        workflow.get_next_task(state=TaskState.READY).data.update(data)
        workflow.do_engine_steps()
        return conn.execute(
            insert(workflows)
            .values(business_key=key, status="active", serialization=self.serializer.serialize_json(workflow))
            .returning(workflows.c.id)
        ).scalar_one()

    def complete(self, conn: Connection, workflow_id: int, task_name: str, data: dict[str, Any]) -> None:
        """Complete the ready user task ``task_name`` with ``data`` (a staff event)."""
        workflow = self._load(conn, workflow_id)
        task = workflow.get_next_task(state=TaskState.READY, manual=True, spec_name=task_name)
        if task is None:
            raise RuntimeError(f"workflow {workflow_id}: no ready task {task_name}")
        task.data.update(data)
        task.run()
        workflow.do_engine_steps()
        self._save(conn, workflow_id, workflow)

    def refresh(self, conn: Connection, workflow_id: int) -> None:
        """Let due timers fire (SpiffWorkflow has no due-timer index: every waiting workflow is
        loaded and refreshed)."""
        workflow = self._load(conn, workflow_id)
        workflow.refresh_waiting_tasks()
        workflow.do_engine_steps()
        self._save(conn, workflow_id, workflow)

    def ready_task(self, conn: Connection, workflow_id: int) -> str | None:
        workflow = self._load(conn, workflow_id)
        task = workflow.get_next_task(state=TaskState.READY, manual=True)
        return task.task_spec.name if task else None

    def _load(self, conn: Connection, workflow_id: int) -> BpmnWorkflow:
        text_ = conn.execute(
            select(workflows.c.serialization).where(workflows.c.id == workflow_id).with_for_update()
        ).scalar_one()
        workflow = self.serializer.deserialize_json(text_)
        workflow.script_engine = self.script_engine
        return workflow

    def _save(self, conn: Connection, workflow_id: int, workflow: BpmnWorkflow) -> None:
        conn.execute(
            update(workflows)
            .where(workflows.c.id == workflow_id)
            .values(
                serialization=self.serializer.serialize_json(workflow),
                status="done" if workflow.is_completed() else "active",
            )
        )
