"""The storage under Twisted's asyncio reactor (the test process runs the default one)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import asyncio, sys
    from twisted.internet import asyncioreactor
    asyncioreactor.install(asyncio.new_event_loop())
    from twisted.internet import defer, reactor, task
    from fedxmpp.config import load
    from fedxmpp.storage import open_storage

    async def main(reactor):
        assert type(reactor).__name__ == "AsyncioSelectorReactor"
        storage = await open_storage(load(sys.argv[1]), reactor)
        try:
            await storage.accounts.create("alice", "example.test", "pencil")
            ok = await storage.accounts.check_password("alice", "example.test", "pencil")
            users = await storage.accounts.list_users("example.test")
        finally:
            storage.close()
        print("OK" if ok and users == ["alice"] else "FAIL")

    task.react(lambda r: defer.ensureDeferred(main(r)))
''')


def test_storage_works_under_the_asyncio_reactor(storage_config_file):
    """open_storage, a PBKDF2 derivation in the thread pool and queries all
    complete under asyncioreactor."""
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(storage_config_file)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"
