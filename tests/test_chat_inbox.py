"""The chat inbox against a real PostGIS: stored once, handled in order, once, by any worker."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from geo.chat.inbox import InboxEvent, PendingEvent, process_pending, store_events
from geo.chat.messages import Reply


def events(user: str, *numbers: int) -> list[InboxEvent]:
    return [InboxEvent(f"{user}-{n}", user, {"n": n}) for n in numbers]


def rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT id, event_id, user_id, payload, processed_at, attempts, last_error "
                    "FROM chat_inbox ORDER BY id"
                )
            )
        )


def test_a_redelivered_event_is_stored_once(engine: Engine) -> None:
    with engine.begin() as conn:
        assert store_events(conn, "line", events("U1", 1, 2)) == 2
    with engine.begin() as conn:
        # LINE delivers event 2 again, with a new one, and repeats it within the same body.
        assert store_events(conn, "line", events("U1", 2, 3, 3)) == 1
        assert store_events(conn, "line", []) == 0
    assert [r.event_id for r in rows(engine)] == ["U1-1", "U1-2", "U1-3"]

    handled: list[int] = []

    def handler(conn: Connection, event: PendingEvent) -> list[Reply]:
        handled.append(event.payload["n"])
        return []

    assert process_pending(engine, "line", handler=handler, send=lambda e, r: None) == 3
    with engine.begin() as conn:
        assert store_events(conn, "line", events("U1", 1, 2, 3)) == 0
    assert process_pending(engine, "line", handler=handler, send=lambda e, r: None) == 0
    assert handled == [1, 2, 3]


def test_each_user_is_handled_in_order_and_send_follows_the_commit(engine: Engine) -> None:
    with engine.begin() as conn:
        store_events(conn, "line", events("U1", 1) + events("U2", 1) + events("U1", 2, 3))
    seen: list[tuple[str, int]] = []
    sent: list[tuple[str, int, str, bool]] = []

    def handler(conn: Connection, event: PendingEvent) -> list[Reply]:
        seen.append((event.user_id, event.payload["n"]))
        # The handler's own write: the sender must find it committed.
        conn.execute(
            text("UPDATE chat_inbox SET last_error = :mark WHERE id = :id"),
            {"mark": f"handled {event.payload['n']}", "id": event.id},
        )
        return [Reply(text=f"answer {event.payload['n']}")]

    def send(event: PendingEvent, replies: list[Reply]) -> None:
        with engine.connect() as other:
            row = other.execute(
                text("SELECT processed_at, last_error FROM chat_inbox WHERE id = :id"),
                {"id": event.id},
            ).one()
        sent.append(
            (event.user_id, event.payload["n"], replies[0].text, row.processed_at is not None)
        )
        assert row.last_error == f"handled {event.payload['n']}"

    assert process_pending(engine, "line", handler=handler, send=send) == 4
    assert [n for user, n in seen if user == "U1"] == [1, 2, 3]
    assert [n for user, n in seen if user == "U2"] == [1]
    assert all(committed for *_, committed in sent)
    assert sorted((u, n, t) for u, n, t, _ in sent) == [
        ("U1", 1, "answer 1"),
        ("U1", 2, "answer 2"),
        ("U1", 3, "answer 3"),
        ("U2", 1, "answer 1"),
    ]


def test_limit_leaves_the_rest_for_the_next_round(engine: Engine) -> None:
    with engine.begin() as conn:
        store_events(conn, "line", events("U1", 1, 2, 3))
    seen: list[int] = []

    def handler(conn: Connection, event: PendingEvent) -> list[Reply]:
        seen.append(event.payload["n"])
        return []

    assert process_pending(engine, "line", handler=handler, send=lambda e, r: None, limit=2) == 2
    assert process_pending(engine, "line", handler=handler, send=lambda e, r: None) == 1
    assert seen == [1, 2, 3]


def test_a_failing_event_is_retried_then_set_aside_and_later_ones_go_on(engine: Engine) -> None:
    with engine.begin() as conn:
        store_events(conn, "line", events("U1", 1, 2) + events("U2", 1))
    calls: Counter[tuple[str, int]] = Counter()
    sent: list[tuple[str, int]] = []

    def handler(conn: Connection, event: PendingEvent) -> list[Reply]:
        calls[(event.user_id, event.payload["n"])] += 1
        # Written before failing: it must be rolled back with the failure.
        conn.execute(
            text("UPDATE chat_inbox SET payload = '{\"n\": 99}' WHERE id = :id"), {"id": event.id}
        )
        if (event.user_id, event.payload["n"]) == ("U1", 1):
            raise ValueError("poisoned {{7*7}} \x00-free")
        return [Reply(text="ok")]

    def send(event: PendingEvent, replies: list[Reply]) -> None:
        sent.append((event.user_id, event.payload["n"]))

    # Round one: U1's first event fails; U1 waits (its second event must not overtake the
    # first), U2 is handled.
    assert process_pending(engine, "line", handler=handler, send=send, max_attempts=3) == 1
    assert sent == [("U2", 1)]
    first = rows(engine)[0]
    assert first.processed_at is None and first.attempts == 1
    assert first.last_error == "ValueError: poisoned {{7*7}} \\x00-free"
    assert first.payload == {"n": 1}  # the handler's write was rolled back
    assert process_pending(engine, "line", handler=handler, send=send, max_attempts=3) == 0
    assert calls[("U1", 2)] == 0
    # The third failure sets it aside, and U1's next event is handled in the same round.
    assert process_pending(engine, "line", handler=handler, send=send, max_attempts=3) == 2
    parked = rows(engine)[0]
    assert parked.processed_at is not None and parked.attempts == 3
    assert parked.last_error.startswith("ValueError: poisoned")
    assert calls[("U1", 1)] == 3 and calls[("U1", 2)] == 1
    assert ("U1", 1) not in sent and ("U1", 2) in sent
    assert process_pending(engine, "line", handler=handler, send=send, max_attempts=3) == 0


def test_a_failing_send_does_not_handle_the_event_twice(engine: Engine) -> None:
    with engine.begin() as conn:
        store_events(conn, "line", events("U1", 1, 2))
    handled: list[int] = []

    def handler(conn: Connection, event: PendingEvent) -> list[Reply]:
        handled.append(event.payload["n"])
        return [Reply(text="ok")]

    def send(event: PendingEvent, replies: list[Reply]) -> None:
        raise OSError("the platform is unreachable")

    assert process_pending(engine, "line", handler=handler, send=send) == 2
    assert process_pending(engine, "line", handler=handler, send=send) == 0
    assert handled == [1, 2]


@pytest.mark.parametrize("workers", [2, 4])
def test_workers_at_once_handle_each_event_once_and_each_user_in_order(
    engine: Engine, workers: int
) -> None:
    users = [f"U{i}" for i in range(5)]
    with engine.begin() as conn:
        # Interleaved as they would arrive from several chats.
        store_events(
            conn,
            "line",
            [InboxEvent(f"{u}-{n}", u, {"n": n}) for n in range(8) for u in users],
        )
    lock = threading.Lock()
    calls: Counter[tuple[str, int]] = Counter()
    order: dict[str, list[int]] = defaultdict(list)
    in_flight: set[str] = set()
    overlaps: list[str] = []
    handlers_by_thread: Counter[str] = Counter()
    start = threading.Barrier(workers)

    def handler(conn: Connection, event: PendingEvent) -> list[Reply]:
        with lock:
            if event.user_id in in_flight:
                overlaps.append(event.user_id)
            in_flight.add(event.user_id)
            calls[(event.user_id, event.payload["n"])] += 1
            order[event.user_id].append(event.payload["n"])
            handlers_by_thread[threading.current_thread().name] += 1
        # Hold the conversation a moment, as real handling does (a query, a photo).
        conn.execute(text("SELECT pg_sleep(0.005)"))
        with lock:
            in_flight.discard(event.user_id)
        return []

    failures: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            while process_pending(engine, "line", handler=handler, send=lambda e, r: None):
                pass
        except BaseException as error:  # reported below, not lost in the thread
            failures.append(error)

    threads = [threading.Thread(target=work, name=f"worker-{i}") for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert overlaps == []
    assert set(calls.values()) == {1} and len(calls) == 40
    assert all(order[u] == list(range(8)) for u in users)
    assert all(r.processed_at is not None for r in rows(engine))
