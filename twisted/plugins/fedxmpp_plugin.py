from twisted.application.service import ServiceMaker

fedxmpp = ServiceMaker(
    "fedxmpp",
    "fedxmpp.tap",
    "A federating XMPP server",
    "fedxmpp",
)
