"""A Redis server on loopback, installed from Debian's packages when it is missing."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from .procs import free_port, stop_process, wait_port

log = logging.getLogger(__name__)


def ensure_redis_binary() -> str:
    path = shutil.which("redis-server")
    if path:
        return path
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError("redis-server is not installed and cannot be installed here "
                           "(needs apt-get as root); install it or point BR_REDIS_URL at a server")
    log.info("installing redis-server with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "-q", "redis-server"], env=env,
                      capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "redis-server"], env=env, check=True,
                       capture_output=True)
    return shutil.which("redis-server")


class RedisServer:
    """Append-only persistence in data_dir, so a restart keeps the snapshots."""

    def __init__(self, data_dir: Path, port: int = 0):
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> "RedisServer":
        binary = ensure_redis_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.data_dir / "redis.log"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
             "--logfile", str(log_file), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.port, self.proc, timeout, "redis-server", log_file)
        log.info("Redis on %s", self.url)
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
