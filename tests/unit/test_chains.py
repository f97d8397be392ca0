"""The one table of the stanza chains (fedxmpp.chains) and what a built server hooks."""

from __future__ import annotations

from fedxmpp.chains import CHAINS, STEPS
from tests.unit.features.world import World


def test_each_chain_runs_its_steps_in_strictly_decreasing_priority():
    """The table's order and the steps' priorities say the same thing: no ties
    within a chain, so the order never depends on which module registered first."""
    for event, names in CHAINS.items():
        priorities = [STEPS[n].priority for n in names]
        assert priorities == sorted(priorities, reverse=True) and len(set(priorities)) == len(priorities), event


def test_a_built_server_hooks_exactly_the_table():
    """Every chain event of the server app.build composes (every feature enabled,
    and the components' XEP-0356 privileges, hooked whether or not a component is
    configured) has the handlers the table names, in its order; no chain event
    has a handler the table does not name."""
    w = World()
    for event, names in CHAINS.items():
        assert tuple(w.hooks.steps(event)) == names, event
    for event in w.hooks.events():
        if any(step is not None for step in w.hooks.steps(event)):
            assert event in CHAINS, event


def test_only_blocking_is_a_policy():
    """Policies fail closed; every other step is a feature (logged, chain goes on)."""
    assert {s.name for s in STEPS.values() if s.policy} == {"blocking"}
