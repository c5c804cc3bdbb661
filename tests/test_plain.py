"""Plain events: the shapes the fast path trusts agree with the models, and the plain fold with the model fold."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from runjournal.journal.events import EVENT_ADAPTER, EVENT_TYPES, SCHEMA_VERSIONS, Event
from runjournal.journal.plain import PLAIN_SHAPES, is_exact, plain_event
from runjournal.journal.testing import event_streams, events, scrambled_streams
from runjournal.projections.fold import fold, fold_plain, fold_plain_steps, fold_steps


def _line_object(event: Event) -> dict[str, Any]:
    """The parsed line of ``event`` as the writer writes it (``h`` included)."""
    return {**event.model_dump(mode="json"), "h": "0" * 64}


@given(events())
def test_every_canonical_line_of_a_plain_type_is_exact(event: Event) -> None:
    """A line our writer makes of a heartbeat or step-progress event is exact; other types never are."""
    exact = is_exact(_line_object(event), event.run_id, event.seq)
    assert exact == (event.type in PLAIN_SHAPES)


def _mutations() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
                     st.text(max_size=5), st.sampled_from(["started", "failed", "skipped", "2025-01-01T00:00:00.000000Z",
                                                            "2025-02-30T00:00:00.000000Z", 1, -1, 1.0]))


@given(events(types=list(PLAIN_SHAPES)), st.data())
def test_an_exact_object_is_valid_and_dumps_back_to_itself(event: Event, data: st.DataObject) -> None:
    """Whatever a mutated object the shape accepts, the model accepts too and dumps to the very same object."""
    obj = _line_object(event)
    key = data.draw(st.sampled_from(sorted(obj)))
    obj[key] = data.draw(_mutations())
    if data.draw(st.booleans()):
        del obj[data.draw(st.sampled_from(sorted(obj)))]
    if not is_exact(obj, event.run_id, event.seq):
        return
    body = {k: v for k, v in obj.items() if k != "h"}
    try:
        model = EVENT_ADAPTER.validate_python(body)
    except ValidationError as exc:  # pragma: no cover - the failure this test exists to find
        raise AssertionError(f"exact but invalid: {body}") from exc
    assert model.model_dump(mode="json") == body
    assert orjson.dumps(model.model_dump(mode="json")) == orjson.dumps(body)


def test_the_shapes_list_every_field_of_their_models_at_the_current_version() -> None:
    """A shape names exactly its model's fields in model order, at the version the writer writes."""
    for kind, shape in PLAIN_SHAPES.items():
        assert shape.version == SCHEMA_VERSIONS[kind]
        assert shape.keys == (*EVENT_TYPES[kind].model_fields, "h")


@given(event_streams())
def test_the_plain_fold_equals_the_model_fold(stream: list[Event]) -> None:
    """Folding a run's plain objects gives the state folding its models gives."""
    assert fold_plain(e.model_dump(mode="json") for e in stream) == fold(stream)


@given(scrambled_streams())
def test_the_plain_fold_equals_the_model_fold_on_scrambled_streams(stream: list[Event]) -> None:
    """Shuffled, duplicated and foreign events fold the same way plain as as models (anomalies included)."""
    assert fold_plain(e.model_dump(mode="json") for e in stream) == fold(stream)


@given(event_streams())
def test_plain_steps_give_the_same_state_after_every_event(stream: list[Event]) -> None:
    """Step by step, the plain fold's state after each event equals the model fold's."""
    plain = [(obj, state.status, state.steps_done, state.last_seq)
             for obj, _, state in fold_plain_steps(e.model_dump(mode="json") for e in stream)]
    models = [(e.model_dump(mode="json"), s.status, s.steps_done, s.last_seq) for e, s in fold_steps(stream)]
    assert plain == models


@given(events())
def test_plain_event_reads_like_the_model(event: Event) -> None:
    """The view of a plain object has the model's seq, ts and type (and the model itself for other types)."""
    view = plain_event(event.model_dump(mode="json"))
    assert (view.seq, view.ts, view.type, view.run_id) == (event.seq, event.ts, event.type, event.run_id)


@given(st.dictionaries(st.sampled_from(["v", "run_id", "seq", "ts", "type", "h", "step"]), _mutations()
                       | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=2), st.none(), max_size=2)))
def test_is_exact_never_raises_on_hostile_objects(obj: dict[str, Any]) -> None:
    """Any JSON object a hostile line parses to is answered (usually False), never an exception."""
    assert is_exact(obj, "r", 1) in (True, False)
