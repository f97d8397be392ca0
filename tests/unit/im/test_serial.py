"""One job at a time per key, in arrival order."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred
from twisted.logger import LogLevel, globalLogPublisher

from fedxmpp.im.serial import SerialJobs


def test_idle_key_runs_at_once():
    """A job for an idle key runs synchronously, and the key is idle again after."""
    jobs = SerialJobs()
    ran = []
    jobs.run("k", ran.append, 1)
    assert ran == [1] and not jobs.busy("k")


def test_jobs_wait_for_the_async_job_before_them():
    """Jobs behind a job that is waiting (on storage, say) wait too, and then run in
    submission order; another key is not held up."""
    jobs = SerialJobs()
    order: list[str] = []
    gate: Deferred[None] = Deferred()

    async def slow() -> None:
        order.append("slow-start")
        await gate
        order.append("slow-end")

    jobs.run("k", slow)
    jobs.run("k", order.append, "second")
    jobs.run("k", order.append, "third")
    jobs.run("other", order.append, "other-key")
    assert order == ["slow-start", "other-key"]
    assert jobs.busy("k") and not jobs.busy("other")
    gate.callback(None)
    assert order == ["slow-start", "other-key", "slow-end", "second", "third"]
    assert not jobs.busy("k")


def test_call_returns_the_result_or_the_failure():
    """call() gives the caller the job's result, or its exception."""
    jobs = SerialJobs()

    async def value() -> int:
        return 42

    def boom() -> None:
        raise KeyError("x")

    results: list[object] = []
    jobs.call("k", value).addCallback(results.append)
    d = jobs.call("k", boom)
    d.addErrback(lambda f: results.append(f.type))
    assert results == [42, KeyError]


def test_a_failing_job_is_logged_and_the_queue_goes_on():
    """A job that raises is logged; the jobs after it still run."""
    jobs = SerialJobs()
    logged: list[dict] = []
    observer = logged.append
    globalLogPublisher.addObserver(observer)
    try:
        gate: Deferred[None] = Deferred()

        async def fails_later() -> None:
            await gate
            raise RuntimeError("storage broke")

        ran: list[int] = []
        jobs.run("k", fails_later)
        jobs.run("k", ran.append, 1)
        gate.callback(None)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert ran == [1]
    assert any(e.get("log_level") == LogLevel.critical and "log_failure" in e for e in logged)


def test_many_quick_jobs_behind_a_slow_one_do_not_recurse():
    """Thousands of jobs finishing synchronously after a slow one drain in a loop,
    not on the stack."""
    jobs = SerialJobs()
    gate: Deferred[None] = Deferred()

    async def slow() -> None:
        await gate

    count = []
    jobs.run("k", slow)
    for _ in range(20_000):
        jobs.run("k", count.append, 1)
    gate.callback(None)
    assert len(count) == 20_000


@pytest.mark.parametrize("n", [1, 3])
def test_jobs_submitted_by_a_job_run_after_it(n):
    """A job may submit more work for its own key: it runs after the current job."""
    jobs = SerialJobs()
    order: list[str] = []

    def first() -> None:
        for i in range(n):
            jobs.run("k", order.append, f"child{i}")
        order.append("first-done")

    jobs.run("k", first)
    assert order == ["first-done"] + [f"child{i}" for i in range(n)]
