"""Start, talk to, cancel and stop a BreastFusion worker process (standard library only).

The 3D Slicer module drives it from a QTimer (``poll``), scripts block on ``wait_for``. The worker
is started in a process group of its own with a pipe on its standard input, so that:

- ``stop`` first closes that pipe (the worker exits when its input ends, on every platform and
  also through a launcher such as ``PythonSlicer``, which hands its input on to its Python child),
  then kills the whole group (POSIX: ``killpg``; Windows: ``taskkill /T``) if it is still running;
- when the client's process dies (Slicer crashes), the pipe closes and the worker exits by itself.

Output is read as bytes by a thread and decoded leniently (a non-UTF-8 byte never kills the
reader); the reader ends with an ``EXIT`` event that carries the return code.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional

from BreastFusionLib.serving.protocol import DONE, READY, Event, parse_line, request_line

EXIT = "EXIT"  # the worker ended: payload {"returncode": int}
LOG = "LOG"  # a line of log text: payload {"text": str}


SLEEPING_OPENMP_THREADS = ("OMP_WAIT_POLICY", "PASSIVE")  # libgomp reads it once, when torch is imported


def worker_environment(base: Dict[str, str], device: str) -> Dict[str, str]:
    """The worker's environment: ``base`` with UTF-8 output, no GPU for a CPU worker, and OpenMP threads that
    sleep rather than spin while they wait (unless ``base`` sets ``OMP_WAIT_POLICY``).

    The worker shares the CPU with 3D Slicer's own threads; PyTorch's spinning OpenMP threads then turned
    0.2 s cases into 12-36 s on a busy 2-core machine, and cost 0.03-0.05 s per case there when it is quiet
    (docs/INFERENCE.md, ``training/bench_cold_start.py``).
    """
    environment = dict(base)
    environment["PYTHONIOENCODING"] = "utf-8"  # the worker's messages reach the log intact on every platform
    environment.setdefault(*SLEEPING_OPENMP_THREADS)
    if device == "cpu":
        environment["CUDA_VISIBLE_DEVICES"] = "-1"
    return environment


class WorkerError(RuntimeError):
    """The worker is not running, ended, or did not answer in time."""


class WorkerProcess:
    """One worker process and the events it printed, in order."""

    def __init__(self, command: List[str], environment: Optional[Dict[str, str]] = None,
                 cwd: Optional[str] = None) -> None:
        self.command = list(command)
        self.environment = environment
        self.cwd = cwd
        self.process: Optional[subprocess.Popen] = None
        self.events: "queue.Queue[Event]" = queue.Queue()
        self.ready: Optional[dict] = None
        self._reader: Optional[threading.Thread] = None
        self._write_lock = threading.Lock()

    # --- life cycle ---------------------------------------------------------------------------------

    def start(self) -> "WorkerProcess":
        """Start the worker (returns at once; READY comes as an event once the models are warm)."""
        options: dict = {}
        if sys.platform == "win32":
            startup = subprocess.STARTUPINFO()
            startup.dwFlags |= subprocess.STARTF_USESHOWWINDOW  # no console window
            options.update(startupinfo=startup, creationflags=subprocess.CREATE_NEW_PROCESS_GROUP)
        else:
            options.update(start_new_session=True)  # its own process group: killpg reaches launcher and child
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, env=self.environment, cwd=self.cwd, **options)
        self._reader = threading.Thread(target=self._read_output, name="BreastFusionWorkerReader", daemon=True)
        self._reader.start()
        return self

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_seconds: float = 3.0) -> Optional[int]:
        """Close the worker's input, wait up to ``grace_seconds``, then kill its whole process tree."""
        if self.process is None:
            return None
        try:
            if self.process.stdin and not self.process.stdin.closed:
                self.process.stdin.close()
        except OSError:
            pass  # already gone
        try:
            return self.process.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            pass
        kill_process_tree(self.process)
        try:
            return self.process.wait(10.0)
        except subprocess.TimeoutExpired:
            return None

    # --- requests and events ------------------------------------------------------------------------

    def send(self, request: dict) -> None:
        """Write one request (a dict with an "id"); raises ``WorkerError`` when the worker has ended."""
        if not self.is_running():
            raise WorkerError("the BreastFusion worker is not running")
        try:
            with self._write_lock:
                self.process.stdin.write(request_line(request).encode("utf-8"))
                self.process.stdin.flush()
        except (OSError, ValueError) as error:  # broken pipe, closed file
            raise WorkerError(f"the BreastFusion worker stopped reading requests ({error})") from None

    def poll(self) -> List[Event]:
        """Every event printed since the last call, without blocking."""
        found = []
        while True:
            try:
                found.append(self.events.get_nowait())
            except queue.Empty:
                return found

    def wait_for(self, request_id: str, timeout_seconds: float = 600.0,
                 on_event: Optional[Callable[[Event], None]] = None) -> dict:
        """Block until the DONE event of ``request_id``; returns its payload. Other events go to ``on_event``."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerError(f"no answer from the BreastFusion worker within {timeout_seconds:.0f} s")
            try:
                event = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if on_event is not None:
                on_event(event)
            if event.kind == DONE and str(event.payload.get("id")) == str(request_id):
                return event.payload
            if event.kind == EXIT:
                raise WorkerError(f"the BreastFusion worker ended (exit code {event.payload['returncode']}) "
                                  f"before answering request {request_id}")

    def _read_output(self) -> None:
        stream = self.process.stdout
        try:
            for raw in iter(stream.readline, b""):
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                event = parse_line(text)
                if event is not None and event.kind == READY:
                    self.ready = event.payload
                self.events.put(event if event is not None else Event(LOG, {"text": text}))
        except (OSError, ValueError) as error:  # the pipe broke: report it, then the exit
            self.events.put(Event(LOG, {"text": f"reading the worker's output failed: {error}"}))
        finally:
            self.events.put(Event(EXIT, {"returncode": self.process.wait()}))


def kill_process_tree(process: subprocess.Popen) -> None:
    """Kill ``process`` and everything it started (it must lead its own process group, as ``start`` makes it)."""
    if process.poll() is not None and sys.platform == "win32":
        return
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the group's id is the leader's pid (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass  # the whole group is already gone
