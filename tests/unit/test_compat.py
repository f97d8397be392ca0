"""fedxmpp.compat: the wokkel parts we use still import and work on this Twisted.

If wokkel or Twisted change under us, these tests fail loudly here rather than
in a gateway at run time.
"""

from __future__ import annotations

import hashlib
import re
import sys

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.words.xish import domish
from zope.interface import implementer

from fedxmpp import compat

DOMAIN = "gw.example.test"
SECRET = "gw-secret"


def test_every_exported_name_is_there():
    """Each name compat promises imports, and the _PY3 shim is in place."""
    for name in compat.__all__:
        assert getattr(compat, name) is not None, name
    import twisted.python.compat
    assert twisted.python.compat._PY3 is True


def test_only_compat_imports_wokkel():
    """No fedxmpp or examples module other than compat imports wokkel."""
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[2]
    offenders = [str(p.relative_to(root)) for folder in ("fedxmpp", "examples") for p in (root / folder).rglob("*.py")
                 if p.name != "compat.py" and re.search(r"^\s*(from|import)\s+wokkel", p.read_text(), re.M)]
    assert offenders == []


def test_importing_compat_does_not_install_the_global_reactor_or_warn():
    """compat avoids wokkel.component (which imports the global reactor) and keeps
    wokkel's deprecation noise to itself."""
    import subprocess
    code = ("import sys, warnings; warnings.simplefilter('error'); import fedxmpp.compat; "
            "print('twisted.internet.reactor' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


class Recorder(compat.XMPPHandler):
    def __init__(self) -> None:
        super().__init__()
        self.initialized = 0

    def connectionInitialized(self) -> None:
        self.initialized += 1


@implementer(compat.IDisco)
class Identity(compat.XMPPHandler):
    def getDiscoInfo(self, requestor, target, nodeIdentifier=""):
        return [compat.DiscoIdentity("gateway", "sms", "SMS"), compat.DiscoFeature("urn:example")]

    def getDiscoItems(self, requestor, target, nodeIdentifier=""):
        return []


def _connected():
    reactor = MemoryReactorClock()
    component = compat.ExternalComponent(reactor, "127.0.0.1", 5347, DOMAIN, SECRET)
    recorder = Recorder()
    recorder.setHandlerParent(component)
    compat.DiscoHandler().setHandlerParent(component)
    compat.PingHandler().setHandlerParent(component)
    Identity().setHandlerParent(component)
    component.startService()
    [(host, port, factory, _timeout, _bind)] = reactor.tcpClients
    assert (host, port) == ("127.0.0.1", 5347)
    xs = factory.buildProtocol(None)
    transport = StringTransport()
    xs.makeConnection(transport)
    return reactor, component, recorder, xs, transport


def test_external_component_handshake_and_handlers():
    """ExternalComponent connects through the injected reactor, sends a XEP-0114 header
    and the SHA-1 handshake for the server's stream id, and on <handshake/> starts its
    handlers; stanzas without 'from' are stamped with the component's domain."""
    reactor, component, recorder, xs, transport = _connected()
    header = transport.value().decode()
    assert "jabber:component:accept" in header and f"to='{DOMAIN}'" in header
    transport.clear()
    xs.dataReceived(b"<stream:stream xmlns='jabber:component:accept' "
                    b"xmlns:stream='http://etherx.jabber.org/streams' from='gw.example.test' id='s1d'>")
    digest = hashlib.sha1(b"s1d" + SECRET.encode()).hexdigest()
    assert transport.value().decode() == f"<handshake>{digest}</handshake>"
    assert not component.connected
    transport.clear()
    xs.dataReceived(b"<handshake/>")
    assert component.connected and recorder.initialized == 1
    message = domish.Element((None, "message"))
    message["to"] = "alice@example.test"
    component.send(message)
    assert f"from='{DOMAIN}'" in transport.value().decode() or f'from="{DOMAIN}"' in transport.value().decode()


def test_disco_and_ping_handlers_answer():
    """wokkel's DiscoHandler (which needs the _PY3 shim, through data_form) collects
    identities and features from IDisco handlers, and PingHandler answers pings."""
    reactor, component, recorder, xs, transport = _connected()
    xs.dataReceived(b"<stream:stream xmlns='jabber:component:accept' "
                    b"xmlns:stream='http://etherx.jabber.org/streams' id='x'><handshake/>")
    transport.clear()
    xs.dataReceived(b"<iq type='get' id='d1' from='alice@example.test/a' to='gw.example.test'>"
                    b"<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    out = transport.value().decode()
    assert "type='result'" in out.replace('"', "'") and "category='gateway'" in out.replace('"', "'")
    assert "urn:example" in out
    transport.clear()
    xs.dataReceived(b"<iq type='get' id='p1' from='alice@example.test/a' to='gw.example.test'>"
                    b"<ping xmlns='urn:xmpp:ping'/></iq>")
    out = transport.value().decode().replace('"', "'")
    assert "id='p1'" in out and "type='result'" in out


def test_stop_service_stops_reconnecting():
    """After stopService the connector is disconnected and the factory stops retrying."""
    reactor, component, recorder, xs, transport = _connected()
    component.stopService()
    assert component.factory.continueTrying == 0 and not component.running


def test_reconnects_through_the_injected_clock():
    """When the connection is lost, ExternalComponent's factory reconnects after a delay
    measured on the injected reactor, not the global one."""
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    reactor, component, recorder, xs, transport = _connected()

    class Connector:
        connects = 0

        def connect(self) -> None:
            self.connects += 1

    connector = Connector()
    component.factory.clientConnectionLost(connector, Failure(ConnectionDone()))
    assert connector.connects == 0
    reactor.advance(30.5)
    assert connector.connects == 1
