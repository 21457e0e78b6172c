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
    compile_s: float = 20.0  # parse, check, generate code, JIT
    run_s: float = 3.0  # native code
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

    def _start(self) -> None:
        self.buffer = b""
        self.log.seek(0)
        self.log.truncate()
        self.proc = subprocess.Popen([sys.executable, str(WORKER), str(DATA_DIR)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=environment(self.limits),
                                     preexec_fn=_preexec(self.limits))
        self.runs = 0
        self.started += 1
        message = self._message(time.monotonic() + 120)
        if message != {"ready": True}:
            raise RuntimeError(f"fuzz worker did not start: {message!r}; log: {self._log_tail()}")

    def _log_tail(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-2000:]

    def _message(self, deadline: float) -> Optional[dict[str, Any]]:
        """The next JSON line; None at end of file or when the deadline passes ("timeout" key)."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return {"timeout": True}
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None:
            _kill(self.proc)
            self.proc = None
        self.log.close()
        os.unlink(self.log.name)

    def run(self, program: bytes) -> tuple[Outcome, str]:
        if self.proc is None or self.runs >= self.limits.recycle_after:
            if self.proc is not None:
                _kill(self.proc)
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        self.runs += 1
        self.proc.stdin.write(json.dumps({"program": base64.b64encode(program).decode()}).encode() + b"\n")
        self.proc.stdin.flush()
        phase = "compile"
        deadline = time.monotonic() + self.limits.compile_s
        while True:
            message = self._message(deadline)
            if message is None:  # the worker died
                code = self.proc.wait()
                tail = self._log_tail()
                self.proc = None
                if code < 0:
                    return Outcome("signal", f"killed by signal {-code} in phase {phase}"), tail
                return Outcome("worker-died", f"exit status {code} in phase {phase}: {tail[-300:]}"), tail
            if message.get("timeout"):
                _kill(self.proc)
                self.proc = None
                return classify(None, "", program, timed_out=True, phase=phase), ""
            if message.get("phase") == "run":
                phase = "run"
                deadline = time.monotonic() + self.limits.run_s
                continue
            return classify(message["rc"], message["stderr"], program), message["stderr"]


def run_cli(program: bytes, limits: Limits) -> tuple[Outcome, str]:
    """`python -m noma run prog.noma` in a fresh directory with data/, under the limits."""
    work = Path(tempfile.mkdtemp(prefix="noma-fuzz-cli-"))
    try:
        shutil.copytree(DATA_DIR, work / "data")
        (work / "prog.noma").write_bytes(program)
        proc = subprocess.Popen([sys.executable, "-m", "noma", "run", "prog.noma"], cwd=work,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment(limits),
                                preexec_fn=_preexec(limits))
        try:
            _, err = proc.communicate(timeout=limits.compile_s + limits.run_s + 10)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return classify(None, "", program, timed_out=True, phase="unknown"), ""
        stderr = err.decode("utf-8", errors="replace")
        return classify(proc.returncode, stderr, program), stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)
