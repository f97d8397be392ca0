"""Rosters and the subscription handshake (RFC 6121 §2-§3) with a real client."""

from __future__ import annotations

from tests.e2e.conftest import USERS
from tests.e2e.harness import logged_in, run
from tests.e2e.im import Presences, manual_subscriptions, server_roster

ROMEO, JULIET = "romeo@example.test", "juliet@example.test"


def test_subscription_handshake_between_two_users(server):
    """romeo asks juliet, juliet approves and asks back, romeo approves: each step
    reaches the other, each approval brings the approver's presence, and the
    server's rosters end with 'both' on each side (roster set with a name kept);
    the request alone does not put romeo in juliet's roster."""
    async def scenario():
        async with logged_in(server, f"{ROMEO}/r", USERS[ROMEO]) as r, \
                logged_in(server, f"{JULIET}/j", USERS[JULIET]) as j:
            manual_subscriptions(r, j)
            pr, pj = Presences(r), Presences(j)
            for c in (r, j):
                await c.xmpp.get_roster()
                await c.available()
            r.xmpp.update_roster(JULIET, name="Juliet", groups=["Capulets"])
            r.xmpp.send_presence(pto=JULIET, ptype="subscribe")
            await pj.expect(ROMEO, "subscribe")
            assert (await server_roster(r))[JULIET] == ("none", "subscribe")
            # A request is not a roster item until juliet acts on it.
            assert ROMEO not in await server_roster(j)

            j.xmpp.send_presence(pto=ROMEO, ptype="subscribed")
            await pr.expect(JULIET, "subscribed")
            await pr.expect(f"{JULIET}/j", "available")
            j.xmpp.send_presence(pto=ROMEO, ptype="subscribe")
            await pr.expect(JULIET, "subscribe")
            r.xmpp.send_presence(pto=JULIET, ptype="subscribed")
            await pj.expect(ROMEO, "subscribed")
            await pj.expect(f"{ROMEO}/r", "available")

            assert (await server_roster(r))[JULIET] == ("both", None)
            assert (await server_roster(j))[ROMEO] == ("both", None)
            # slixmpp's own copy, kept up to date by the server's roster pushes.
            assert r.xmpp.client_roster[JULIET]["subscription"] == "both"
            assert r.xmpp.client_roster[JULIET]["name"] == "Juliet"
            assert r.xmpp.client_roster[JULIET]["groups"] == ["Capulets"]

    run(scenario())
