"""Failed authentications per client address (fedxmpp.c2s.throttle)."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.task import Clock

from fedxmpp.c2s.throttle import MAX_DELAY_FACTOR, AuthThrottle, address_key


@dataclass
class Settings:
    failure_delay: float = 1.0
    block_after: int = 5
    block_time: float = 600.0
    account_block_after: int = 0


def test_delay_doubles_per_failure_up_to_a_cap():
    throttle = AuthThrottle(Clock())
    delays = [throttle.failed("192.0.2.1", Settings(block_after=100)) for _ in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, MAX_DELAY_FACTOR * 1.0, MAX_DELAY_FACTOR * 1.0]
    assert throttle.failed("192.0.2.2", Settings(block_after=100)) == 1.0  # another address
    assert throttle.failed("192.0.2.3", Settings(failure_delay=0, block_after=100)) == 0.0


def test_an_address_is_blocked_after_block_after_failures_for_block_time():
    clock = Clock()
    throttle = AuthThrottle(clock)
    for _ in range(4):
        throttle.failed("198.51.100.9", Settings())
    assert not throttle.blocked("198.51.100.9")
    throttle.failed("198.51.100.9", Settings())
    assert throttle.blocked("198.51.100.9") and not throttle.blocked("198.51.100.10")
    clock.advance(599)
    assert throttle.blocked("198.51.100.9")
    clock.advance(1)
    assert not throttle.blocked("198.51.100.9")
    # The failures went with the block: counting starts afresh.
    assert throttle.failed("198.51.100.9", Settings()) == 1.0


def test_failures_older_than_block_time_are_forgotten():
    clock = Clock()
    throttle = AuthThrottle(clock)
    for _ in range(4):
        throttle.failed("192.0.2.1", Settings())
        clock.advance(200)
    # The first failure is 800 s old: only 4 within the last 600 s.
    throttle.failed("192.0.2.1", Settings())
    assert not throttle.blocked("192.0.2.1")


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4():
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("192.0.2.1") == "192.0.2.1"


def test_an_account_is_blocked_after_failures_from_many_addresses():
    clock = Clock()
    throttle = AuthThrottle(clock)
    settings = Settings(block_after=100, account_block_after=3)
    throttle.succeeded("alice@example.test", "192.0.2.7")
    for n in range(3):
        assert not throttle.account_blocked("alice@example.test", "203.0.113.1")
        throttle.failed(f"198.51.100.{n}", settings, "alice@example.test")
    assert throttle.account_blocked("alice@example.test", "203.0.113.1")
    # Not the owner's known address, and not another account.
    assert not throttle.account_blocked("alice@example.test", "192.0.2.7")
    assert not throttle.account_blocked("bob@example.test", "203.0.113.1")
    # No address got blocked by these three.
    assert not any(throttle.blocked(f"198.51.100.{n}") for n in range(3))
    clock.advance(600)
    assert not throttle.account_blocked("alice@example.test", "203.0.113.1")


def test_account_failures_grow_the_delay_across_addresses():
    throttle = AuthThrottle(Clock())
    settings = Settings(block_after=100, account_block_after=100)
    delays = [throttle.failed(f"198.51.100.{n}", settings, "alice@example.test") for n in range(3)]
    assert delays == [1.0, 2.0, 4.0]
    assert throttle.failed("198.51.100.99", settings) == 1.0  # no account named: the address alone


def test_account_blocking_off_at_zero():
    throttle = AuthThrottle(Clock())
    for n in range(10):
        throttle.failed(f"198.51.100.{n}", Settings(block_after=100), "alice@example.test")
    assert not throttle.account_blocked("alice@example.test", "203.0.113.1")
