"""A room's configuration, its ``muc#roomconfig`` form (§10.2) and its
``muc#roominfo`` form (XEP-0128, §6.4)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from twisted.words.xish import domish

from fedxmpp.config import MucConfig
from fedxmpp.features import forms
from fedxmpp.features.forms import Field, Form, FormError
from fedxmpp.muc.stanzas import ROOMCONFIG, ROOMINFO

WHOIS = ("moderators", "anyone")
# muc#roomconfig_allowpm: whose private messages and iqs to other occupants the room passes on.
ALLOW_PM = ("anyone", "participants", "moderators", "none")


@dataclass(frozen=True)
class RoomConfig:
    name: str = ""
    description: str = ""
    persistent: bool = False
    public: bool = True
    members_only: bool = False
    password: str = ""
    moderated: bool = False
    max_occupants: int = 200
    whois: str = "moderators"
    change_subject: bool = False
    # Whether groupchat messages go to the room's archive (XEP-0313) when the service has one.
    archiving: bool = True
    allow_pm: str = "anyone"

    @property
    def non_anonymous(self) -> bool:
        return self.whois == "anyone"

    @classmethod
    def defaults(cls, muc: MucConfig) -> RoomConfig:
        return cls(persistent=muc.default_persistent, public=muc.default_public,
                   members_only=muc.default_members_only, moderated=muc.default_moderated,
                   max_occupants=muc.max_occupants, whois=muc.default_whois,
                   change_subject=muc.default_change_subject, archiving=muc.default_archiving)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, muc: MucConfig) -> RoomConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in json.loads(text).items() if k in known}
        return dataclasses.replace(cls.defaults(muc), **values)

    def disco_features(self) -> list[str]:
        return ["muc_persistent" if self.persistent else "muc_temporary",
                "muc_public" if self.public else "muc_hidden",
                "muc_membersonly" if self.members_only else "muc_open",
                "muc_passwordprotected" if self.password else "muc_unsecured",
                "muc_moderated" if self.moderated else "muc_unmoderated",
                "muc_nonanonymous" if self.non_anonymous else "muc_semianonymous"]


def _bool(value: bool) -> list[str]:
    return ["1" if value else "0"]


def config_form(config: RoomConfig, limit: int) -> domish.Element:
    """The form an owner is sent to configure the room, filled with *config*."""
    whois = Field("muc#roomconfig_whois", "list-single", [config.whois], "Who may discover real JIDs",
                  options=[("moderators", "Moderators only"), ("anyone", "Anyone")])
    maxusers = Field("muc#roomconfig_maxusers", "list-single", [str(config.max_occupants)],
                     "Maximum number of occupants",
                     options=[(str(n), None) for n in sorted({n for n in (10, 20, 50, 100, 200, 500, 1000)
                                                               if n <= limit} | {limit})])
    return forms.build("form", ROOMCONFIG, [
        Field("muc#roomconfig_roomname", "text-single", [config.name], "Name"),
        Field("muc#roomconfig_roomdesc", "text-single", [config.description], "Description"),
        Field("muc#roomconfig_persistentroom", "boolean", _bool(config.persistent), "Persistent"),
        Field("muc#roomconfig_publicroom", "boolean", _bool(config.public), "Listed in the directory"),
        Field("muc#roomconfig_membersonly", "boolean", _bool(config.members_only), "Members only"),
        Field("muc#roomconfig_passwordprotectedroom", "boolean", _bool(bool(config.password)),
              "Password protected"),
        Field("muc#roomconfig_roomsecret", "text-private", [config.password] if config.password else [],
              "Password"),
        Field("muc#roomconfig_moderatedroom", "boolean", _bool(config.moderated), "Moderated"),
        maxusers,
        whois,
        Field("muc#roomconfig_changesubject", "boolean", _bool(config.change_subject),
              "Occupants may change the subject"),
        Field("muc#roomconfig_allowpm", "list-single", [config.allow_pm],
              "Who may send private messages and queries to occupants",
              options=[("anyone", "Anyone"), ("participants", "Participants and moderators"),
                       ("moderators", "Moderators only"), ("none", "Nobody")]),
        Field("muc#roomconfig_enablearchiving", "boolean", _bool(config.archiving), "Archive messages"),
    ])


def apply_form(config: RoomConfig, form: Form, limit: int) -> RoomConfig:
    """*config* changed by the submitted *form*; FormError for a value that cannot be."""
    if form.form_type not in (None, ROOMCONFIG):
        raise FormError(f"the form is not {ROOMCONFIG}")
    values: dict[str, Any] = {}

    def boolean(var: str, key: str) -> None:
        if var in form.fields and form.fields[var].values:
            values[key] = forms.boolean(form.value(var))

    if "muc#roomconfig_roomname" in form.fields:
        values["name"] = form.value("muc#roomconfig_roomname") or ""
    if "muc#roomconfig_roomdesc" in form.fields:
        values["description"] = form.value("muc#roomconfig_roomdesc") or ""
    boolean("muc#roomconfig_persistentroom", "persistent")
    boolean("muc#roomconfig_publicroom", "public")
    boolean("muc#roomconfig_membersonly", "members_only")
    boolean("muc#roomconfig_moderatedroom", "moderated")
    boolean("muc#roomconfig_changesubject", "change_subject")
    boolean("muc#roomconfig_enablearchiving", "archiving")
    password = config.password
    if "muc#roomconfig_roomsecret" in form.fields:
        password = form.value("muc#roomconfig_roomsecret") or ""
    protected = "muc#roomconfig_passwordprotectedroom"
    if protected in form.fields and form.fields[protected].values and not forms.boolean(form.value(protected)):
        password = ""
    elif protected in form.fields and form.fields[protected].values and not password:
        raise FormError("a password-protected room needs muc#roomconfig_roomsecret")
    values["password"] = password
    if form.value("muc#roomconfig_maxusers"):
        try:
            maxusers = int(form.value("muc#roomconfig_maxusers") or "")
        except ValueError:
            raise FormError("muc#roomconfig_maxusers is not a number") from None
        if not 1 <= maxusers <= limit:
            raise FormError(f"muc#roomconfig_maxusers must be between 1 and {limit}")
        values["max_occupants"] = maxusers
    if form.value("muc#roomconfig_whois"):
        whois = form.value("muc#roomconfig_whois")
        if whois not in WHOIS:
            raise FormError(f"muc#roomconfig_whois is one of {', '.join(WHOIS)}")
        values["whois"] = whois
    if form.value("muc#roomconfig_allowpm"):
        allow_pm = form.value("muc#roomconfig_allowpm")
        if allow_pm not in ALLOW_PM:
            raise FormError(f"muc#roomconfig_allowpm is one of {', '.join(ALLOW_PM)}")
        values["allow_pm"] = allow_pm
    return dataclasses.replace(config, **values)


def info_form(config: RoomConfig, occupants: int, subject: str, avatar_hash: str = "") -> domish.Element:
    avatar = [Field("muc#roominfo_avatarhash", None, [avatar_hash], "Avatar hash")] if avatar_hash else []
    return forms.build("result", ROOMINFO, [*avatar,
        Field("muc#roominfo_description", None, [config.description], "Description"),
        Field("muc#roomconfig_roomname", None, [config.name], "Name"),
        Field("muc#roominfo_occupants", None, [str(occupants)], "Number of occupants"),
        Field("muc#roominfo_subject", None, [subject], "Subject"),
        Field("muc#roominfo_changesubject", None, _bool(config.change_subject), "Occupants may change the subject"),
    ])
