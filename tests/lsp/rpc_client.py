"""A small LSP client for the tests: JSON-RPC over the stdio of a `noma lsp` process.

Owns: starting the server, framing (Content-Length headers), matching responses to requests and
collecting published diagnostics per document URI. Every wait has a timeout, so a server that
dies or stops answering fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[2]


class ServerError(Exception):
    """A JSON-RPC error response."""


class LspClient:
    def __init__(self, *args: str):
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        # `--stdio`: vscode-languageclient appends it to the server's command line
        self.proc = subprocess.Popen([sys.executable, "-m", "noma", *args, "lsp", "--stdio"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
        self.next_id = 0
        self.responses: dict[int, "queue.Queue[dict]"] = {}
        self.diagnostics: dict[str, "queue.Queue[dict]"] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        self.stderr: list[bytes] = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    # ------------------------------------------------------------------ wire

    def _send(self, message: dict) -> None:
        body = json.dumps(message).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                line = line.strip()
                if not line:
                    break
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            if length is None:
                continue
            message = json.loads(out.read(length))
            if "id" in message and "method" not in message:
                self._queue(self.responses, message["id"]).put(message)
            elif message.get("method") == "textDocument/publishDiagnostics":
                self._queue(self.diagnostics, message["params"]["uri"]).put(message["params"])
            elif "id" in message:  # a request from the server (e.g. registerCapability): accept it
                self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})

    def _queue(self, table: dict, key: Any) -> "queue.Queue[dict]":
        with self.lock:
            return table.setdefault(key, queue.Queue())

    # ------------------------------------------------------------------ API

    def request(self, method: str, params: Any, timeout: float = 60) -> Any:
        self.next_id += 1
        rid = self.next_id
        box = self._queue(self.responses, rid)
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        try:
            reply = box.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no answer to {method} within {timeout} s; server alive: "
                                 f"{self.proc.poll() is None}; stderr: {self.stderr_text()[-2000:]}") from None
        if "error" in reply:
            raise ServerError(reply["error"].get("message", ""))
        return reply.get("result")

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def initialize(self) -> dict:
        result = self.request("initialize", {"processId": os.getpid(), "rootUri": ROOT.as_uri(),
                                             "capabilities": {}})
        self.notify("initialized", {})
        return result

    def open(self, uri: str, text: str, version: int = 1) -> dict:
        """Open a document; the diagnostics published for it."""
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "noma", "version": version, "text": text}})
        return self.wait_diagnostics(uri, version)

    def change(self, uri: str, text: str, version: int) -> dict:
        self.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                               "contentChanges": [{"text": text}]})
        return self.wait_diagnostics(uri, version)

    def close(self, uri: str) -> None:
        self.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        self.wait_diagnostics(uri, None)

    def wait_diagnostics(self, uri: str, version: Optional[int], timeout: float = 60) -> dict:
        box = self._queue(self.diagnostics, uri)
        while True:
            try:
                params = box.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no diagnostics for {uri} v{version}; "
                                     f"stderr: {self.stderr_text()[-2000:]}") from None
            if params.get("version") == version:
                return params

    def at(self, uri: str, line: int, character: int) -> dict:
        return {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}

    def stderr_text(self) -> str:
        return b"".join(self.stderr).decode(errors="replace")

    def shutdown(self) -> int:
        try:
            self.request("shutdown", None, timeout=30)
            self.notify("exit", None)
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
