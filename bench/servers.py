"""Start and stop the processes a run measures: gunicorn masters and a private Redis."""

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.settings import GUNICORN_CONF
from bench.settings import OUT
from bench.settings import ROOT
from bench.settings import VENV_BIN

#: Seconds a server gets to answer its readiness probe.
START_TIMEOUT = 60


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 right now."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class Process:
    """A child process in its own process group, logging to a file under bench/out."""

    def __init__(self, name: str, argv: list[str], env: dict):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = OUT / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def spawn(self) -> None:
        """Start the process (the child keeps its own copy of the log descriptor)."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_until(self, probe, what: str) -> None:
        """Poll ``probe()`` until true, or fail with the end of the log."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
            if probe():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} never became {what}:\n{self.tail()}")

    def tail(self) -> str:
        """The last lines of the process's log."""
        return Path(self.log_path).read_text(errors="replace")[-3000:]

    def terminate(self) -> None:
        """Ask the whole process group to stop, without waiting."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        """Stop the whole process group: politely, then firmly."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Gunicorn(Process):
    """A WSGI app served by gunicorn with the production config (idp/infra/gunicorn_conf.py)."""

    def __init__(self, name: str, target: str, env: dict, port: int, ready_path: str,
                 worker_class: str | None = None):
        # Every master on a host shares one default control-socket path; several at once would
        # take it from each other, so the benchmark's servers go without it.
        argv = [str(VENV_BIN / "gunicorn"), "--config", str(GUNICORN_CONF), "--no-control-socket"]
        if worker_class:
            argv += ["--worker-class", worker_class]
        super().__init__(name, argv + [target], env)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = ready_path

    def start(self) -> None:
        """Spawn and wait until the readiness path answers 200."""
        self.spawn()
        self.wait_until(lambda: answers(self.url + self.ready_path), "ready")

    def workers(self) -> list[int]:
        """Process ids of the master's workers."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in path.read_text().split()]

    def worker_memory(self) -> list[dict]:
        """Resident set (now and peak) of each worker, in MiB, from /proc."""
        out = []
        for pid in self.workers():
            fields = {}
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    fields[name] = int(value.split()[0]) / 1024
            out.append({"pid": pid, "rss_mib": fields["VmRSS"], "peak_mib": fields["VmHWM"]})
        return out


class Redis(Process):
    """A throwaway Redis for rate-limit counters, on its own port, keeping nothing on disk."""

    def __init__(self, port: int):
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(OUT)]
        super().__init__(f"redis-{port}", argv, dict(os.environ))
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        """Spawn and wait until it accepts connections."""
        self.spawn()
        self.wait_until(self._accepts, "reachable")

    def _accepts(self) -> bool:
        """Whether the port takes a connection and answers PING."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False
