"""Jobs that read /proc beside the trace loop (resync passes, ``trace --verify``).

Under load one smaps read of a big process takes seconds, and a job reads many (5.10 lab,
stress-ng: resync passes of 60 s).  Made in the tracer's loop, a read froze it: no drain, no
snapshot, no interval meanwhile.  So a job is a generator that decides in the loop's thread
and asks for each read by yielding a request; it is sent the result.  `run_here` makes the
reads inline (tests, the trace's last pass); `Background` makes each on a daemon worker
thread (reading /proc releases the GIL) while the loop goes on and polls it.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable, Generator, Generic, Optional, TypeVar

__all__ = ["Job", "run_here", "on_worker", "Background"]

Request = TypeVar("Request")
Result = TypeVar("Result")
Outcome = TypeVar("Outcome")
T = TypeVar("T")

# yields what it wants read, is sent the read, returns its outcome
Job = Generator[Request, Result, Outcome]


def run_here(job: "Job[Request, Result, Outcome]", read: Callable[[Request], Result]) -> Outcome:
    """Drive `job` to its end, making every read it asks for in this thread."""
    try:
        request = next(job)
        while True:
            request = job.send(read(request))
    except StopIteration as done:
        outcome: Outcome = done.value
        return outcome


def on_worker(work: Callable[[], T], name: str) -> "Future[T]":
    """`work()` on a daemon thread: a trace that ends does not wait for a read in flight."""
    result: "Future[T]" = Future()

    def run() -> None:
        try:
            result.set_result(work())
        except BaseException as err:  # noqa: BLE001 - raised again in the loop's thread by poll()
            result.set_exception(err)
    threading.Thread(target=run, name=name, daemon=True).start()
    return result


class Background(Generic[Request, Result, Outcome]):
    """A job whose reads run on worker threads, one at a time; the loop calls poll().

    start() and poll() return True once the job has ended (its outcome in `outcome`).  An
    error raised by the job, or by a read, comes out of start() or poll(), and the job is over.
    """

    def __init__(self, job: "Job[Request, Result, Outcome]", read: Callable[[Request], Result],
                 thread_name: str) -> None:
        self._job: Optional["Job[Request, Result, Outcome]"] = job
        self._read = read
        self._thread_name = thread_name
        self._reading: Optional["Future[Result]"] = None
        self.outcome: Optional[Outcome] = None

    @property
    def ended(self) -> bool:
        return self._job is None

    def start(self) -> bool:
        """Run the job up to its first read (True: it ended without one)."""
        return self._step(lambda job: next(job))

    def poll(self) -> bool:
        """Once the read under way is done, hand it to the job and run it up to its next read."""
        if self._reading is None or not self._reading.done():
            return self._job is None
        reading, self._reading = self._reading, None
        try:
            result = reading.result()
        except BaseException:
            self.abandon()
            raise
        return self._step(lambda job: job.send(result))

    def abandon(self) -> None:
        """Stop here: a read in flight finishes alone, its result unused."""
        if self._job is not None:
            self._job.close()
            self._job, self._reading = None, None

    def _step(self, advance: Callable[["Job[Request, Result, Outcome]"], Request]) -> bool:
        assert self._job is not None, "the job has ended"
        job = self._job
        try:
            request = advance(job)
        except StopIteration as done:
            self._job, self.outcome = None, done.value
            return True
        except BaseException:
            self._job = None
            raise
        self._reading = on_worker(lambda: self._read(request), self._thread_name)
        return False
