"""XEP-0004 data forms as the features read and write them (fedxmpp.features.forms)."""

from __future__ import annotations

import pytest

from fedxmpp.features import forms
from tests.unit.features.world import xml

FORM = ("<x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>"
        "<field var='with'><value>juliet@capulet.lit</value></field>"
        "<field var='ids'><value>a</value><value>b</value></field>"
        "<field type='fixed'><value>a note</value></field>"
        "</x>")


def test_parse_reads_type_form_type_and_values():
    """A submitted form gives its type, FORM_TYPE and every field's values in order;
    a 'fixed' field without a var is skipped."""
    form = forms.parse(xml(FORM))
    assert form.type == "submit" and form.form_type == "urn:xmpp:mam:2"
    assert form.value("with") == "juliet@capulet.lit"
    assert form.values("ids") == ["a", "b"]
    assert form.submitted() == {"with": ["juliet@capulet.lit"], "ids": ["a", "b"]}
    assert form.value("missing") is None and form.values("missing") == []


@pytest.mark.parametrize("text, words", [
    ("<x xmlns='jabber:x:data' type='bogus'/>", "type"),
    ("<x xmlns='jabber:x:data' type='submit'><field><value>1</value></field></x>", "no 'var'"),
    ("<x xmlns='jabber:x:data' type='submit'><field var='a'/><field var='a'/></x>", "twice"),
    ("<x xmlns='urn:other' type='submit'/>", "not a data form"),
])
def test_parse_refuses_what_is_not_a_form(text, words):
    """Bad form types, fields without 'var' and repeated vars are FormError."""
    with pytest.raises(forms.FormError) as info:
        forms.parse(xml(text))
    assert words in str(info.value)


@pytest.mark.parametrize("text, value", [("1", True), ("true", True), ("0", False), ("false", False)])
def test_boolean_values(text, value):
    """XEP-0004 §3.3: the four spellings of a boolean."""
    assert forms.boolean(text) is value


def test_boolean_refuses_anything_else():
    """'yes' is not a boolean."""
    with pytest.raises(forms.FormError):
        forms.boolean("yes")


def test_build_round_trips_through_parse():
    """A built form parses back to the same fields, FORM_TYPE first and hidden, with
    options written as <option/>."""
    el = forms.build("form", "urn:test", [forms.Field("a", "list-single", ["x"], "A", [("x", "Ex"), ("y", None)]),
                                          forms.Field("b", "boolean", ["true"])])
    first = next(el.elements())
    assert (first["var"], first["type"]) == ("FORM_TYPE", "hidden")
    options = [o for f in el.elements() for o in f.elements() if o.name == "option"]
    assert [(o.getAttribute("label"), str(next(o.elements()))) for o in options] == [("Ex", "x"), (None, "y")]
    form = forms.parse(el)
    assert form.type == "form" and form.form_type == "urn:test"
    assert form.submitted() == {"a": ["x"], "b": ["true"]}
    assert form.fields["a"].label == "A"
