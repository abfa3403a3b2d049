"""What an owner's own feed carries: the events the registry routes there, with every
agency-internal field redacted by its sensitivity label, still valid contract events."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from contracts import Event
from contracts.registry import FEEDS
from contracts.sensitivity import OWNER_FEED, Sensitivity, label_of, owner_copy, redact
from tests.contracts.examples import example

FEED_EVENTS = sorted({e for feed in FEEDS for e in feed.events}, key=lambda e: e.__name__)


def _internal_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Required fields labelled internal, at any depth of the model's own fields."""
    found = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        if label_of(field) is Sensitivity.INTERNAL and field.is_required():
            found.append(path)
        annotation: Any = field.annotation
        for inner in getattr(annotation, "__args__", ()) or (annotation,):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                found += _internal_paths(inner, f"{path}.")
    return found


@pytest.mark.parametrize("model", FEED_EVENTS, ids=lambda m: m.__name__)
def test_an_owner_feed_event_has_no_required_internal_field(model: type[Event]) -> None:
    assert _internal_paths(model) == [], "label them owner (or public) or make them optional"


@pytest.mark.parametrize("model", FEED_EVENTS, ids=lambda m: m.__name__)
def test_the_owner_copy_is_a_valid_event_without_internal_fields(model: type[Event]) -> None:
    original = example(model)
    copy = owner_copy(original)
    assert type(copy) is model
    assert redact(copy, OWNER_FEED) == copy.model_dump(mode="json"), "nothing internal is left"


def test_an_internal_field_never_reaches_an_owner_feed() -> None:
    from pydantic import Field

    from contracts.events.intake import ReviewWindowClosed

    class WithInternal(ReviewWindowClosed):
        note: str | None = Field(default=None)  # unlabelled: internal

    event = example(ReviewWindowClosed)
    leaky = WithInternal(**event.model_dump(), note="the agency's own remark")
    assert owner_copy(leaky).note is None
