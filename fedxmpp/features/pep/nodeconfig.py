"""A PEP node's configuration: the XEP-0060 ``pubsub#node_config`` fields this
service honours, their defaults (XEP-0163 §7), and how forms change them.

Values are compared after normalising (``1``/``true``, ``max`` for the
service's item limit), so a client's publish-options match what it configured.
Fields this service does not know are ignored, in publish-options and in
configuration forms alike.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from twisted.words.xish import domish

from fedxmpp.features import forms

PUBSUB = "http://jabber.org/protocol/pubsub"
NODE_CONFIG = f"{PUBSUB}#node_config"
PUBLISH_OPTIONS = f"{PUBSUB}#publish-options"

ACCESS_MODELS = ("open", "presence", "whitelist")
SEND_LAST = ("never", "on_sub", "on_sub_and_presence")
PUBLISH_MODELS = ("publishers",)


class ConfigValueError(ValueError):
    """A field value this service cannot take; *var* names the field."""

    def __init__(self, var: str, problem: str) -> None:
        super().__init__(f"{var}: {problem}")
        self.var = var


@dataclass(frozen=True)
class NodeConfig:
    access_model: str = "presence"
    persist_items: bool = True
    #: None: as many as the service allows ('max').
    max_items: int | None = 1
    send_last_published_item: str = "on_sub_and_presence"
    deliver_notifications: bool = True
    deliver_payloads: bool = True
    notify_retract: bool = True
    notify_delete: bool = True
    notify_config: bool = False
    publish_model: str = "publishers"
    title: str = ""
    type: str = ""

    def effective_max(self, limit: int) -> int:
        """How many items the node keeps: only the last when items do not persist
        (it is still sent to newly available resources)."""
        if not self.persist_items:
            return 1
        return limit if self.max_items is None else min(self.max_items, limit)

    def values(self) -> dict[str, str]:
        """Every field as its ``pubsub#`` var and normalised text."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif value is None:
                text = "max"
            else:
                text = str(value)
            out[f"pubsub#{f.name}"] = text
        return out

    @classmethod
    def from_values(cls, values: dict[str, str], limit: int = 1 << 30) -> NodeConfig:
        """The configuration stored as :meth:`values`; what cannot be read keeps its default."""
        config = cls()
        for var, text in values.items():
            try:
                config = config.apply({var: [text]}, limit)
            except ConfigValueError:
                continue
        return config

    def apply(self, submitted: dict[str, list[str]], limit: int) -> NodeConfig:
        """This configuration changed by the fields of a form; ConfigValueError for a
        value this service cannot take (unknown fields are ignored)."""
        changes: dict[str, Any] = {}
        for var, texts in submitted.items():
            if not var.startswith("pubsub#"):
                continue
            name = var[len("pubsub#"):]
            if name not in _FIELD_NAMES:
                continue
            text = texts[0].strip() if texts else ""
            changes[name] = _parse(var, name, text, limit)
        return replace(self, **changes) if changes else self

    def mismatch(self, options: dict[str, list[str]], limit: int) -> str | None:
        """The first publish-option that this configuration does not satisfy (its
        var), or None (XEP-0060 §7.1.5)."""
        for var in sorted(options):
            try:
                wanted = self.apply({var: options[var]}, limit)
            except ConfigValueError:
                return var
            if wanted != self:
                return var
        return None

    def form(self, limit: int) -> domish.Element:
        """The configuration as a form to fill in (XEP-0060 §8.2)."""
        v = self.values()
        return forms.build("form", NODE_CONFIG, [
            forms.Field("pubsub#access_model", "list-single", [v["pubsub#access_model"]], "Who may subscribe and "
                        "retrieve items", [(m, None) for m in ACCESS_MODELS]),
            forms.Field("pubsub#persist_items", "boolean", [v["pubsub#persist_items"]], "Persist items"),
            forms.Field("pubsub#max_items", "text-single", [v["pubsub#max_items"]],
                        f"Items to keep (at most {limit}, or 'max')"),
            forms.Field("pubsub#send_last_published_item", "list-single", [v["pubsub#send_last_published_item"]],
                        "When to send the last published item", [(m, None) for m in SEND_LAST]),
            forms.Field("pubsub#deliver_notifications", "boolean", [v["pubsub#deliver_notifications"]],
                        "Deliver event notifications"),
            forms.Field("pubsub#deliver_payloads", "boolean", [v["pubsub#deliver_payloads"]],
                        "Deliver payloads with event notifications"),
            forms.Field("pubsub#notify_retract", "boolean", [v["pubsub#notify_retract"]],
                        "Notify when items are removed"),
            forms.Field("pubsub#notify_delete", "boolean", [v["pubsub#notify_delete"]],
                        "Notify when the node is deleted"),
            forms.Field("pubsub#notify_config", "boolean", [v["pubsub#notify_config"]],
                        "Notify when the configuration changes"),
            forms.Field("pubsub#publish_model", "list-single", [v["pubsub#publish_model"]], "Who may publish",
                        [(m, None) for m in PUBLISH_MODELS]),
            forms.Field("pubsub#title", "text-single", [v["pubsub#title"]], "A name for the node"),
            forms.Field("pubsub#type", "text-single", [v["pubsub#type"]], "The type of payload"),
        ])


_FIELD_NAMES = frozenset(f.name for f in fields(NodeConfig))


def _parse(var: str, name: str, text: str, limit: int) -> Any:
    if name in ("persist_items", "deliver_notifications", "deliver_payloads", "notify_retract", "notify_delete",
                "notify_config"):
        try:
            return forms.boolean(text)
        except forms.FormError:
            raise ConfigValueError(var, f"{text!r} is not a boolean") from None
    if name == "max_items":
        if text == "max":
            return None
        if not text.isdigit() or not 1 <= int(text) <= limit:
            raise ConfigValueError(var, f"must be 'max' or a number from 1 to {limit}")
        return int(text)
    choices = {"access_model": ACCESS_MODELS, "send_last_published_item": SEND_LAST,
               "publish_model": PUBLISH_MODELS}.get(name)
    if choices is not None and text not in choices:
        raise ConfigValueError(var, f"must be one of {', '.join(choices)}")
    if len(text) > 1024:
        raise ConfigValueError(var, "is too long")
    return text
