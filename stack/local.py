"""The local stack: Kafka and Redis (started here unless configured), plus the service processes.

Used by the demo, `bandit-stack up` and the tests, so all three start things the same way.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .kafka_broker import KafkaBroker
from .procs import stop_process
from .redis_server import RedisServer

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent


class LocalStack:
    """Kafka + Redis. External ones are used when BR_KAFKA_BOOTSTRAP / BR_REDIS_URL are set."""

    def __init__(self, data_dir: Path | None = None, kafka_bootstrap: str | None = None,
                 redis_url: str | None = None):
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="bandit-stack-")
            data_dir = Path(self._tmp.name)
        self.data_dir = Path(data_dir).resolve()
        self.kafka_bootstrap = kafka_bootstrap or os.environ.get("BR_KAFKA_BOOTSTRAP")
        self.redis_url = redis_url or os.environ.get("BR_REDIS_URL")
        self.kafka: KafkaBroker | None = None
        self.redis: RedisServer | None = None

    def start(self) -> "LocalStack":
        if not self.kafka_bootstrap:
            self.kafka = KafkaBroker(self.data_dir / "kafka").start()
            self.kafka_bootstrap = self.kafka.bootstrap
        if not self.redis_url:
            self.redis = RedisServer(self.data_dir / "redis").start()
            self.redis_url = self.redis.url
        return self

    def stop(self) -> None:
        if self.kafka:
            self.kafka.stop()
        if self.redis:
            self.redis.stop()
        if self._tmp:
            self._tmp.cleanup()

    def env(self, **extra) -> dict[str, str]:
        return {"BR_KAFKA_BOOTSTRAP": self.kafka_bootstrap, "BR_REDIS_URL": self.redis_url,
                **{k: str(v) for k, v in extra.items()}}

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ServiceProcess:
    """One service (`router_svc.main`, `workers.main`, `feedback.main`) as a child process.

    Waits for the service's READY line; its output goes to a log file.
    """

    def __init__(self, module: str, env: dict[str, str], log_path: Path, name: str | None = None,
                 cpus: set[int] | None = None):
        self.module = module
        self.env = env
        self.cpus = cpus            # pinned to these cores (its threads too), as a container's CPU set would
        self.log_path = Path(log_path)
        self.name = name or module
        self.proc: subprocess.Popen | None = None
        self.ready_line = ""

    def start(self, timeout: float = 120.0) -> "ServiceProcess":
        return self.spawn().wait_ready(timeout)

    def spawn(self) -> "ServiceProcess":
        """Start the process without waiting (start several, then wait for each)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen([sys.executable, "-m", self.module], env=env, cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        if self.cpus:               # before the interpreter has started its threads: they inherit it
            os.sched_setaffinity(self.proc.pid, self.cpus)
        self._ready = threading.Event()

        def pump() -> None:   # copy output to the log; note the READY line
            for line in self.proc.stdout:
                log_file.write(line)
                log_file.flush()
                if b"READY " in line:
                    self.ready_line = line.decode()[line.index(b"READY "):].strip()
                    self._ready.set()
            log_file.close()

        threading.Thread(target=pump, daemon=True, name=f"log-{self.name}").start()
        return self

    def wait_ready(self, timeout: float = 120.0) -> "ServiceProcess":
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not become ready (exit {self.proc.returncode}):\n"
                                   f"{self.log_tail()}")
        return self

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def field(self, key: str) -> str:
        """A `key=value` field of the READY line (e.g. the router's port)."""
        for part in self.ready_line.split():
            if part.startswith(key + "="):
                return part.split("=", 1)[1]
        raise KeyError(key)

    def stop(self, timeout: float = 20.0) -> None:
        stop_process(self.proc, timeout)
