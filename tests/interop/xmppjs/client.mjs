// One xmpp.js (@xmpp/client) session that tests/interop/test_xmppjs.py drives.
//
// Configuration comes from the environment: XMPP_SERVICE (xmpp://HOST:PORT for
// STARTTLS, xmpps://HOST:PORT for direct TLS), XMPP_DOMAIN, XMPP_USERNAME,
// XMPP_PASSWORD, XMPP_RESOURCE; NODE_EXTRA_CA_CERTS names the certificate to trust.
// Commands arrive on stdin, one JSON object a line; what happens goes to stdout,
// one JSON object a line ({"event": ...}).

import { createInterface } from "node:readline";

import { client, xml } from "@xmpp/client";
import ConnectionTLS from "@xmpp/tls/lib/Connection.js";

const env = process.env;
const domain = env.XMPP_DOMAIN;

// The test's server listens on 127.0.0.1, which its certificate does not name:
// check the certificate against the XMPP domain (as with STARTTLS, where xmpp.js
// itself does so), not against the address connected to.
const socketParameters = ConnectionTLS.prototype.socketParameters;
ConnectionTLS.prototype.socketParameters = function (service) {
  const params = socketParameters.call(this, service);
  return params && { ...params, servername: domain };
};

function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

const xmpp = client({
  service: env.XMPP_SERVICE,
  domain,
  username: env.XMPP_USERNAME,
  password: env.XMPP_PASSWORD,
  resource: env.XMPP_RESOURCE,
});

const MAM = "urn:xmpp:mam:2";
const archive = new Map(); // queryid -> [{from, body}]

xmpp.on("error", (err) => emit("error", { message: String(err && err.message ? err.message : err) }));
xmpp.on("offline", () => emit("offline"));
xmpp.on("online", (jid) => {
  const socket = xmpp.socket && xmpp.socket.socket;
  emit("online", { jid: jid.toString(), tls: socket && socket.getProtocol ? socket.getProtocol() : null });
});
xmpp.streamManagement.on("resumed", () => emit("resumed", { id: xmpp.streamManagement.id }));

xmpp.on("stanza", (stanza) => {
  if (!stanza.is("message")) return;
  const result = stanza.getChild("result", MAM);
  if (result) {
    const forwarded = result.getChild("forwarded", "urn:xmpp:forward:0");
    const inner = forwarded && forwarded.getChild("message");
    const items = archive.get(result.attrs.queryid);
    if (items && inner) items.push({ from: inner.attrs.from, body: inner.getChildText("body") });
    return;
  }
  if (stanza.getChild("body")) {
    emit("message", { from: stanza.attrs.from, type: stanza.attrs.type || "normal", body: stanza.getChildText("body") });
  }
});

async function roster() {
  const reply = await xmpp.iqCaller.get(xml("query", { xmlns: "jabber:iq:roster" }));
  const items = reply.getChildren("item").map((item) => ({
    jid: item.attrs.jid, subscription: item.attrs.subscription, name: item.attrs.name || null,
  }));
  emit("roster", { items });
}

async function mam(withJid) {
  const queryid = `q${archive.size + 1}`;
  archive.set(queryid, []);
  const fields = [
    xml("field", { var: "FORM_TYPE", type: "hidden" }, xml("value", {}, MAM)),
  ];
  if (withJid) fields.push(xml("field", { var: "with" }, xml("value", {}, withJid)));
  const reply = await xmpp.iqCaller.request(
    xml("iq", { type: "set" },
      xml("query", { xmlns: MAM, queryid }, xml("x", { xmlns: "jabber:x:data", type: "submit" }, ...fields))),
  );
  const fin = reply.getChild("fin", MAM);
  emit("mam", { items: archive.get(queryid), complete: Boolean(fin) && fin.attrs.complete === "true" });
}

async function run(command) {
  switch (command.cmd) {
    case "send":
      await xmpp.send(xml("message", { to: command.to, type: command.type || "chat" }, xml("body", {}, command.body)));
      emit("sent", { body: command.body });
      break;
    case "presence":
      await xmpp.send(xml("presence"));
      emit("sent", { presence: true });
      break;
    case "roster":
      await roster();
      break;
    case "mam":
      await mam(command.with);
      break;
    case "drop":
      // The network dies: no </stream:stream>, no TLS close_notify.  xmpp.js
      // reconnects by itself and resumes the session (XEP-0198).
      xmpp.socket.socket.destroy();
      emit("dropped");
      break;
    case "quit":
      await xmpp.stop();
      emit("stopped");
      process.exit(0);
      break;
    default:
      emit("error", { message: `unknown command ${command.cmd}` });
  }
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) return;
  run(JSON.parse(line)).catch((err) => emit("error", { message: String(err && err.message ? err.message : err) }));
});
lines.on("close", () => process.exit(0));

xmpp.start().catch((err) => {
  emit("error", { message: String(err && err.message ? err.message : err) });
  process.exit(1);
});
