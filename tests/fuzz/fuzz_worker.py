"""The fuzz tests' in-process runner: a long-lived process that runs programs through the
`noma run` code path (noma.cli.main(["run", FILE]), one fresh Session each) and reports each
outcome on its stdout as one JSON line.

Protocol: it prints {"ready": true} once imported, then reads one JSON request per line on stdin,
{"program": BASE64}, and answers {"phase": "run"} when the program's native code starts (the
compile phase is over) and then {"rc": EXIT, "stdout": TEXT, "stderr": TEXT}. Each program runs
in a fresh directory holding a copy of DATA_DIR as data/; file descriptors 1 and 2 are captured
too (what native code writes). A signal, a hang or running out of memory ends the process: the
parent (fuzz_pool) sees that, records it and starts a new worker. The parent sets the limits.

Usage: python fuzz_worker.py DATA_DIR [WORK_DIR]   (WORK_DIR: where programs run; the parent
removes it; without it, a new temporary directory)
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import traceback
from typing import Any


def main() -> None:
    data_dir = os.path.abspath(sys.argv[1])
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)

    def send(message: dict[str, Any]) -> None:
        proto.write(json.dumps(message) + "\n")
        proto.flush()

    from noma import cli
    from noma.session.core import Session

    original_run = Session._run

    def announced_run(self: Session, *args: Any, **kwargs: Any) -> Any:
        send({"phase": "run"})
        return original_run(self, *args, **kwargs)

    Session._run = announced_run  # type: ignore[method-assign]
    base = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="noma-fuzz-worker-")
    capture_path = os.path.join(base, "fds.txt")
    send({"ready": True})
    for line in sys.stdin:
        program = base64.b64decode(json.loads(line)["program"])
        work = os.path.join(base, "run")
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(data_dir, os.path.join(work, "data"))
        with open(os.path.join(work, "prog.noma"), "wb") as f:
            f.write(program)
        os.chdir(work)
        capture = os.open(capture_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        saved_err = os.dup(2)
        os.dup2(capture, 1)
        os.dup2(capture, 2)
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = cli.main(["run", "prog.noma"])
        except BaseException:  # noqa: BLE001 - anything escaping the CLI is what the fuzzer looks for
            rc = 99
            err.write(traceback.format_exc())
        os.dup2(devnull, 1)
        os.dup2(saved_err, 2)
        os.close(saved_err)
        os.close(capture)
        with open(capture_path, encoding="utf-8", errors="replace") as f:
            native = f.read(20000)
        os.chdir(base)
        shutil.rmtree(work, ignore_errors=True)
        send({"rc": rc, "stdout": out.getvalue()[:4000], "stderr": (err.getvalue() + native)[:50000]})


if __name__ == "__main__":
    main()
