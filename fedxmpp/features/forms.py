"""XEP-0004 data forms: the little of them that the server's features read and write.

Not a feature (nothing here hooks anything).  Written here rather than using
wokkel's ``data_form`` through :mod:`fedxmpp.compat` (which does not export it,
and whose forms work on twisted.words JIDs): the features need only this much —
a form's type, its ``FORM_TYPE`` and, per field ``var``, a type and a list of
values:

* :func:`parse` reads a ``<x xmlns='jabber:x:data'/>``; :class:`FormError` for a
  form that is not one (unknown form type, a field without 'var', the same 'var'
  twice);
* :func:`build` writes one, hidden ``FORM_TYPE`` field first;
* :func:`boolean` reads a boolean field value (XEP-0004 §3.3: 0/1/false/true).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from twisted.words.xish import domish

DATA = "jabber:x:data"
FORM_TYPES = ("form", "submit", "cancel", "result")


class FormError(ValueError):
    """The element is not a usable data form; the message says why."""


@dataclass
class Field:
    var: str
    type: str | None = None
    values: list[str] = field(default_factory=list)
    label: str | None = None
    #: For list fields: the options offered, as (value, label).
    options: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def value(self) -> str | None:
        return self.values[0] if self.values else None


@dataclass
class Form:
    type: str
    fields: dict[str, Field] = field(default_factory=dict)

    @property
    def form_type(self) -> str | None:
        f = self.fields.get("FORM_TYPE")
        return f.value if f is not None else None

    def value(self, var: str) -> str | None:
        f = self.fields.get(var)
        return f.value if f is not None else None

    def values(self, var: str) -> list[str]:
        f = self.fields.get(var)
        return list(f.values) if f is not None else []

    def submitted(self) -> dict[str, list[str]]:
        """Every field but FORM_TYPE, as var -> values."""
        return {var: list(f.values) for var, f in self.fields.items() if var != "FORM_TYPE"}


def find(parent: domish.Element) -> domish.Element | None:
    """The first data form child of *parent*."""
    for child in parent.elements():
        if child.uri == DATA and child.name == "x":
            return child
    return None


def parse(element: domish.Element) -> Form:
    if element.uri != DATA or element.name != "x":
        raise FormError("not a data form")
    ftype = element.getAttribute("type")
    if ftype not in FORM_TYPES:
        raise FormError(f"a form's type is one of {', '.join(FORM_TYPES)}")
    form = Form(ftype)
    for child in element.elements():
        if child.uri != DATA or child.name != "field":
            continue
        var = child.getAttribute("var")
        kind = child.getAttribute("type")
        if not var:
            if kind == "fixed":
                continue
            raise FormError("a field has no 'var'")
        if var in form.fields:
            raise FormError(f"the field {var!r} appears twice")
        values = [str(v) for v in child.elements() if v.uri == DATA and v.name == "value"]
        form.fields[var] = Field(var, kind, values, child.getAttribute("label"))
    return form


def boolean(text: str | None) -> bool:
    """XEP-0004 §3.3 boolean: '1'/'true' or '0'/'false'; FormError otherwise."""
    if text in ("1", "true"):
        return True
    if text in ("0", "false"):
        return False
    raise FormError(f"{text!r} is not a boolean")


def build(ftype: str, form_type: str | None, fields: Iterable[Field]) -> domish.Element:
    """A ``<x xmlns='jabber:x:data'/>`` of type *ftype* with a hidden FORM_TYPE
    (when given) and *fields* in order."""
    x = domish.Element((DATA, "x"))
    x["type"] = ftype
    if form_type is not None:
        hidden = x.addElement("field")
        hidden["var"] = "FORM_TYPE"
        hidden["type"] = "hidden"
        hidden.addElement("value", content=form_type)
    for f in fields:
        el = x.addElement("field")
        el["var"] = f.var
        if f.type:
            el["type"] = f.type
        if f.label:
            el["label"] = f.label
        for value, label in f.options:
            option = el.addElement("option")
            if label:
                option["label"] = label
            option.addElement("value", content=value)
        for value in f.values:
            el.addElement("value", content=value)
    return x
