"""Guarded alternatives: staff are told the process owner's words when no condition holds."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime

import pytest

from engine.decide import InstanceView, decide_event
from engine.errors import EventRejected
from engine.loader import load_text

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

PROCESS = textwrap.dedent(
    """
    process: offers
    version: 1
    initial: open
    states:
      open:
        on:
          offer:
            - when: "!(input.product in data.offered)"
              refusal: this product was already offered; offer another one
              to: offered
            - when: "size(data.offered) >= 3"
              refusal: three offers were made; close the case instead
              to: offered
          discount:
            when: "input.percent <= 10"
            to: offered
      offered:
        final: true
    """
)


def test_refusal_text_replaces_the_expression() -> None:
    definition = load_text(PROCESS)
    case = InstanceView("open", {"offered": ["life"]})
    with pytest.raises(EventRejected) as caught:
        decide_event(definition, case, "offer", {"product": "life"}, frozenset(), NOW)
    assert caught.value.message == (
        "event 'offer' was refused: this product was already offered; offer another one; "
        "three offers were made; close the case instead"
    )


def test_without_refusal_the_failed_condition_is_named() -> None:
    definition = load_text(PROCESS)
    with pytest.raises(EventRejected) as caught:
        decide_event(definition, InstanceView("open", {"offered": []}), "discount", {"percent": 15},
                     frozenset(), NOW)  # fmt: skip
    assert caught.value.message == (
        "event 'discount' was refused in state 'open': no condition held ('input.percent <= 10')"
    )
