"""The [c2s] keys of stream management (XEP-0198) and client state indication (XEP-0352)."""

from __future__ import annotations

import pytest

from fedxmpp import config
from fedxmpp.config import ConfigError


def test_defaults():
    """Resumable for 300 s, 1000 stanzas queued, an ack asked every 5 stanzas or
    30 s, 500 held updates."""
    c2s = config.load(None).c2s
    assert (c2s.sm_resume_timeout, c2s.sm_max_queue, c2s.sm_ack_request_every, c2s.sm_ack_request_delay,
            c2s.csi_max_held) == (300.0, 1000, 5, 30.0, 500)


def test_values_are_read(tmp_path):
    """Each key is read; 0 turns resumption and the timed ack request off."""
    path = tmp_path / "f.toml"
    path.write_text("[c2s]\nsm_resume_timeout = 0\nsm_max_queue = 10\nsm_ack_request_every = 10\n"
                    "sm_ack_request_delay = 0\ncsi_max_held = 7\n")
    c2s = config.load(path).c2s
    assert (c2s.sm_resume_timeout, c2s.sm_max_queue, c2s.sm_ack_request_every, c2s.sm_ack_request_delay,
            c2s.csi_max_held) == (0.0, 10, 10, 0.0, 7)


@pytest.mark.parametrize("text, key, words", [
    ("sm_resume_timeout = -1", "c2s.sm_resume_timeout", "between 0"),
    ("sm_resume_timeout = 100000", "c2s.sm_resume_timeout", "86400"),
    ("sm_max_queue = 0", "c2s.sm_max_queue", "between 1"),
    ("sm_max_queue = 5\nsm_ack_request_every = 6", "c2s.sm_ack_request_every", "sm_max_queue (5)"),
    ("sm_ack_request_every = 0", "c2s.sm_ack_request_every", "between 1"),
    ("sm_ack_request_delay = -2", "c2s.sm_ack_request_delay", "negative"),
    ("csi_max_held = 0", "c2s.csi_max_held", "between 1"),
    ("sm_max_queue = 'many'", "c2s.sm_max_queue", "whole number"),
])
def test_bad_values(tmp_path, text, key, words):
    """Bad values are one-line errors naming the key."""
    path = tmp_path / "f.toml"
    path.write_text(f"[c2s]\n{text}\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert key in str(info.value) and words in str(info.value)
