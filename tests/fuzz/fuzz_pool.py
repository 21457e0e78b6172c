"""Running fuzzed programs under a time and memory bound: in-process (a fuzz_worker process
reused across programs) and as `python -m noma run FILE` in a subprocess.

Owns: Limits (time per phase, address space, NOMA_MEMORY_LIMIT), InProcess (the worker: start,
run one program, notice a death or a hang, replace the worker) and run_cli (one subprocess).
Both return a fuzz_outcome.Outcome and the run's stderr.
Imports: fuzz_outcome.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from fuzz_outcome import Outcome, classify

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT / "tests" / "programs" / "data"
WORKER = Path(__file__).resolve().parent / "fuzz_worker.py"


@dataclass(frozen=True)
class Limits:
    """Time bounds are CPU seconds of the process that runs the program (a shared, loaded
    machine stretches wall time, not CPU time); a run that uses little CPU but never answers
    (blocked) is stopped after wall_s."""

    compile_s: float = 20.0  # parse, check, generate code, JIT
    run_s: float = 3.0  # native code
    wall_s: float = 90.0
    address_space: int = 3 << 30  # RLIMIT_AS of every process that runs a program
    noma_memory: str = str(256 << 20)  # NOMA_MEMORY_LIMIT: the runtime's own allocation limit
    recycle_after: int = 150  # programs per worker (each leaves a JIT behind)


def _preexec(limits: Limits) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limits.address_space, limits.address_space))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setpgrp()  # its own process group: a kill reaches whatever it started
    return apply


def environment(limits: Limits) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NOMA_DEBUG", None)  # the CLI would re-raise internal errors as tracebacks
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["NOMA_MEMORY_LIMIT"] = limits.noma_memory
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _kill(proc: subprocess.Popen[Any]) -> None:
    try:
        os.killpg(proc.pid, 9)
    except ProcessLookupError:
        pass
    proc.wait()


class InProcess:
    """Programs run one after another in a worker process; a dead or hung worker is replaced."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.runs = 0
        self.buffer = b""
        self.log = tempfile.NamedTemporaryFile(prefix="noma-fuzz-worker-", suffix=".log", delete=False)
        self.started = 0
        self.work: Optional[str] = None  # the running worker's directory

    def _stop(self) -> None:
        """Kill the worker (if any) and remove its directory."""
        if self.proc is not None:
            _kill(self.proc)
            self.proc = None
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None

    def _start(self) -> None:
        self._stop()
        self.work = tempfile.mkdtemp(prefix="noma-fuzz-worker-")
        self.buffer = b""
        self.log.seek(0)
        self.log.truncate()
        self.proc = subprocess.Popen([sys.executable, str(WORKER), str(DATA_DIR), self.work], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=environment(self.limits),
                                     preexec_fn=_preexec(self.limits))
        self.runs = 0
        self.started += 1
        message = self._message(float("inf"), time.monotonic() + 300)
        if message != {"ready": True}:
            raise RuntimeError(f"fuzz worker did not start: {message!r}; log: {self._log_tail()}")

    def _log_tail(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-2000:]

    def _message(self, cpu_limit: float, wall_deadline: float) -> Optional[dict[str, Any]]:
        """The next JSON line; None at end of file; {"timeout": True} once the worker has used
        cpu_limit CPU seconds (in total) or wall_deadline has passed."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            if time.monotonic() >= wall_deadline or cpu_seconds(self.proc.pid) >= cpu_limit:
                return {"timeout": True}
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        self._stop()
        self.log.close()
        os.unlink(self.log.name)

    def run(self, program: bytes) -> tuple[Outcome, str]:
        if self.proc is None or self.runs >= self.limits.recycle_after:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        self.runs += 1
        self.proc.stdin.write(json.dumps({"program": base64.b64encode(program).decode()}).encode() + b"\n")
        self.proc.stdin.flush()
        phase = "compile"
        cpu_limit = cpu_seconds(self.proc.pid) + self.limits.compile_s
        wall_deadline = time.monotonic() + self.limits.wall_s
        while True:
            message = self._message(cpu_limit, wall_deadline)
            if message is None:  # the worker died
                code = self.proc.wait()
                tail = self._log_tail()
                self._stop()
                if code < 0:
                    return Outcome("signal", f"killed by signal {-code} in phase {phase}"), tail
                return Outcome("worker-died", f"exit status {code} in phase {phase}: {tail[-300:]}"), tail
            if message.get("timeout"):
                self._stop()
                return classify(None, "", program, timed_out=True, phase=phase), ""
            if message.get("phase") == "run":
                phase = "run"
                cpu_limit = cpu_seconds(self.proc.pid) + self.limits.run_s
                continue
            return classify(message["rc"], message["stderr"], program), message["stderr"]


def run_cli(program: bytes, limits: Limits) -> tuple[Outcome, str]:
    """`python -m noma run prog.noma` in a fresh directory with data/, under the limits."""
    work = Path(tempfile.mkdtemp(prefix="noma-fuzz-cli-"))
    try:
        shutil.copytree(DATA_DIR, work / "data")
        (work / "prog.noma").write_bytes(program)
        with open(work / "stdout.txt", "wb") as out, open(work / "stderr.txt", "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "noma", "run", "prog.noma"], cwd=work,
                                    stdout=out, stderr=err, env=environment(limits),
                                    preexec_fn=_preexec(limits))
        # start-up, compile and run, in CPU seconds; output goes to files (no pipe to fill)
        cpu_limit = limits.compile_s + limits.run_s + 10
        wall_deadline = time.monotonic() + limits.wall_s
        while proc.poll() is None:
            if cpu_seconds(proc.pid) >= cpu_limit or time.monotonic() >= wall_deadline:
                _kill(proc)
                return classify(None, "", program, timed_out=True, phase="unknown"), ""
            time.sleep(0.2)
        stderr = (work / "stderr.txt").read_text(errors="replace")
        return classify(proc.returncode, stderr, program), stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)
