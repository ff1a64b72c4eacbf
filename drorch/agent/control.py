"""The agent's local control socket: one JSON request per line, one JSON answer.

    {"op": "status"}                     -> the last cycle's report
    {"op": "maintenance", "on": true}    -> maintenance mode on/off (persisted)

Unix socket, mode 0600: only root (or the agent's user) on this node may ask. A bad
request gets an error answer and that connection is closed; the agent keeps serving."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drorch.accepting import AcceptBackoff

log = logging.getLogger("drorch.agent.control")

MAX_REQUEST = 4096

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class AgentControl:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._stop = threading.Event()
        if path.is_socket():
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(str(path))
                except OSError:
                    path.unlink()
                else:
                    raise OSError(f"{path}: another agent is running on this node")
        self._srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._srv.bind(str(path))
        os.chmod(path, 0o600)
        self._srv.listen(8)
        self._srv.settimeout(0.2)
        self._thread = threading.Thread(target=self._loop, name="agent-control", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        backoff = AcceptBackoff("agent control socket", log)
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                pause = backoff.pause_for(exc)
                if pause is None:  # closed: the agent is stopping
                    return
                self._stop.wait(pause)
                continue
            backoff.accepted()
            with conn:
                conn.settimeout(2.0)
                try:
                    raw = conn.recv(MAX_REQUEST)
                    request = json.loads(raw.decode())
                    if not isinstance(request, dict):
                        raise ValueError("a request is a JSON object")
                    answer = self.handler(request)
                except (OSError, ValueError, UnicodeDecodeError) as e:
                    answer = {"error": f"bad request: {e}"}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(answer, default=str).encode() + b"\n")

    def close(self) -> None:
        self._stop.set()
        self._srv.close()
        self._thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def ask(path: Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps(request).encode())
        data = b""
        for _ in range(1024):  # bounded: answers are a few KiB
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if data.endswith(b"\n"):
                break
    answer = json.loads(data.decode())
    if not isinstance(answer, dict):
        raise ValueError("the agent answered something that is not an object")
    return answer
