"""The event table: priorities, first handler wins, broken handlers are contained."""

from fedxmpp.hooks import Hooks


def test_higher_priority_runs_first_and_true_stops():
    """A handler with higher priority sees the event first; returning True ends it."""
    hooks, seen = Hooks(), []
    hooks.add("e", lambda p: seen.append("low") or True, priority=-5)
    hooks.add("e", lambda p: seen.append("high") or False, priority=10)
    hooks.add("e", lambda p: seen.append("mid") or True, priority=0)
    assert hooks.fire("e", None) is True
    assert seen == ["high", "mid"]


def test_unhandled_event_reports_false():
    """fire() says when no handler took the event, so callers can answer with an error."""
    hooks = Hooks()
    hooks.add("e", lambda p: None)
    assert hooks.fire("e", 1) is False
    assert hooks.fire("other", 1) is False


def test_failing_handler_does_not_stop_the_others():
    """An exception in one feature is logged and the next handler still runs."""
    hooks, seen = Hooks(), []

    def broken(p):
        raise RuntimeError("boom")

    hooks.add("e", broken, priority=1)
    hooks.add("e", lambda p: seen.append(p) or True)
    assert hooks.fire("e", 7) is True
    assert seen == [7]


def test_remove():
    """A removed handler is no longer called."""
    hooks = Hooks()
    handler = lambda p: True  # noqa: E731
    hooks.add("e", handler)
    hooks.remove("e", handler)
    assert not hooks.fire("e")
