"""Random VMA lifecycles across processes and threads, for differential tests against smaps.

    python3 -m mpxtrace.randomwork --seed 7 --flag VM_LOCKED [--count 100] [--pause]
    python3 -m mpxtrace.randomwork --flag VM_LOCKED --ops '[{"op": "start", "child": 0}, ...]'
    python3 -m mpxtrace.randomwork --seed 7 --flag VM_LOCKED --print-ops

An orchestrator (this process, which maps nothing of interest itself) drives actor processes
over a Unix socket, one operation at a time, so it knows when they are all quiescent.  The
operations (mpxtrace.randomops) come from (seed, flag) or from an explicit list (a shrunk
one).  At each checkpoint it prints ``CHECK <op index> <pid,pid,...> <actor,actor,...>`` (the
live actors' pids and their ids in the operations) and, with --pause, waits for a line on stdin.  First line: ``OPS <digest> <count>``; last:
``RESULTS <json list, one result per operation>``.  Exit status 0, or 3 if an actor died or
stopped answering (``FAILED <why>`` says which).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from .randomops import FLAGS, Op, generate, ops_digest

ANSWER_TIMEOUT = 180.0  # seconds for one operation (mlockall under emulation is slow)
FAILED_EXIT = 3
IDLE_TIMEOUT = 30.0


class WorkloadFailed(Exception):
    pass


@dataclass
class _Link:
    ident: int
    pid: int
    sock: socket.socket
    reader: Any
    process: Optional["subprocess.Popen[bytes]"] = None  # actors this process started

    def send(self, op: Op) -> None:
        self.sock.sendall((json.dumps(op) + "\n").encode())

    def answer(self) -> Optional[str]:
        line = self.reader.readline()
        return json.loads(line)["r"] if line else None


class Orchestrator:
    def __init__(self, pause: bool) -> None:
        self.pause = pause
        self.name = f"mpxtrace-randomwork-{os.getpid()}"
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind("\0" + self.name)
        self.server.listen(8)
        self.server.settimeout(ANSWER_TIMEOUT)
        self.links: Dict[int, _Link] = {}
        self.results: List[str] = []

    def _welcome(self, ident: int, process: Optional["subprocess.Popen[bytes]"] = None) -> _Link:
        """Accept the hello of actor `ident` (just started, forked or exec'd)."""
        try:
            conn, _ = self.server.accept()
        except socket.timeout:
            raise WorkloadFailed(f"actor {ident} never connected") from None
        conn.settimeout(ANSWER_TIMEOUT)
        reader = conn.makefile("r")
        hello = json.loads(reader.readline() or "null")
        if not hello or hello.get("hello") != ident:
            raise WorkloadFailed(f"expected actor {ident} to say hello, got {hello!r}")
        link = _Link(ident, int(hello["pid"]), conn, reader, process)
        self.links[ident] = link
        return link

    def _ask(self, link: _Link, op: Op) -> str:
        link.send(op)
        try:
            answer = link.answer()
        except socket.timeout:
            raise WorkloadFailed(f"actor {link.ident} (pid {link.pid}) did not answer {op}") from None
        if answer is None:
            raise WorkloadFailed(f"actor {link.ident} (pid {link.pid}) died during {op}")
        return answer

    def _drop(self, link: _Link) -> None:
        link.sock.close()
        del self.links[link.ident]
        if link.process is not None:
            link.process.wait()

    def run_op(self, index: int, op: Op) -> str:
        kind = op["op"]
        if kind == "start":
            argv = [sys.executable, "-m", "mpxtrace.randomwork", "--actor", str(op["child"]), "--sock", self.name]
            self._welcome(op["child"], subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
            return "ok"
        if kind == "check":
            self.checkpoint(index)
            return "ok"
        if kind == "par":
            links = [self.links.get(sub["a"]) for sub in op["ops"]]
            for link, sub in zip(links, op["ops"]):
                if link is not None:
                    link.send(sub)
            answers = []
            for link, sub in zip(links, op["ops"]):
                answer = link.answer() if link is not None else "skip:actor"
                if answer is None:
                    raise WorkloadFailed(f"actor {sub['a']} died during {sub}")
                answers.append(answer)
            return "par:" + ",".join(answers)
        link = self.links.get(op["a"])
        if link is None:
            return "skip:actor"
        answer = self._ask(link, op)
        if kind in ("fork", "spawn") and answer.startswith("ok"):
            self._welcome(op["child"])
        elif kind == "exec":
            if link.answer() is not None:  # the old image's link closes at exec
                raise WorkloadFailed(f"actor {link.ident} answered after exec")
            link.sock.close()
            self._welcome(op["a"], link.process)
        elif kind == "exit":
            self._drop(link)
        return answer

    def checkpoint(self, index: int) -> None:
        links = [link for _, link in sorted(self.links.items())]
        wait_idle([link.pid for link in links])
        print(f"CHECK {index} {','.join(str(link.pid) for link in links)} {','.join(str(link.ident) for link in links)}",
              flush=True)
        if self.pause and not sys.stdin.readline():
            raise WorkloadFailed("the driver went away")

    def run(self, ops: Sequence[Op]) -> None:
        try:
            for index, op in enumerate(ops):
                self.results.append(self.run_op(index, op))
        finally:
            for link in list(self.links.values()):
                try:
                    link.send({"op": "exit", "a": link.ident})
                    link.answer()
                except OSError:
                    pass
                self._drop(link)


def _task_states(pid: int) -> List[str]:
    states = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                states.append(fh.read().rsplit(")", 1)[1].split()[0])
        except OSError:
            pass
    return states


def wait_idle(pids: Sequence[int], timeout: float = IDLE_TIMEOUT) -> None:
    """Wait until every thread of every actor sleeps (in recv, or a worker on its queue).
    An actor has answered before it is back in recv, and Python may map memory on the way
    (under mlockall that is flagged memory): a checkpoint must not race with it."""
    deadline = time.monotonic() + timeout
    calm = 0
    while calm < 2:  # twice in a row
        busy = [pid for pid in pids if any(state != "S" for state in _task_states(pid))]
        calm = 0 if busy else calm + 1
        if busy and time.monotonic() > deadline:
            raise WorkloadFailed(f"actors {busy} still running {timeout} s after their last answer")
        time.sleep(0.002)


def load_ops(text: str) -> List[Op]:
    ops = json.loads(text)
    if not isinstance(ops, list) or not all(isinstance(op, dict) and "op" in op for op in ops):
        raise SystemExit("--ops needs a JSON list of operations (objects with an 'op' key), "
                         "as printed by --print-ops")
    return ops


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m mpxtrace.randomwork", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, help="draw the operations from this seed")
    parser.add_argument("--flag", choices=FLAGS, default="VM_NORESERVE", help="the flag the run is about")
    parser.add_argument("--count", type=int, default=100, help="operations to draw (checkpoints not counted)")
    parser.add_argument("--ops", help="run this JSON list of operations instead (or @FILE)")
    parser.add_argument("--print-ops", action="store_true", help="print the operation list and exit")
    parser.add_argument("--pause", action="store_true", help="wait for a line on stdin at each CHECK")
    parser.add_argument("--actor", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sock", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.actor is not None:
        from .randomactor import actor_main
        return actor_main(args.actor, args.sock)
    if args.ops is not None:
        ops = load_ops(open(args.ops[1:]).read() if args.ops.startswith("@") else args.ops)
    elif args.seed is not None:
        ops = generate(args.seed, args.flag, args.count)
    else:
        parser.error("give --seed or --ops")
    if args.print_ops:
        print(json.dumps(ops))
        return 0
    print(f"OPS {ops_digest(ops)} {len(ops)}", flush=True)
    orchestrator = Orchestrator(args.pause)
    status = 0
    try:
        orchestrator.run(ops)
    except WorkloadFailed as exc:
        print(f"FAILED {exc}", flush=True)
        status = FAILED_EXIT
    print(f"RESULTS {json.dumps(orchestrator.results)}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
