"""Test helpers that talk to the real broker."""
from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Callable

from prometheus_client.parser import text_string_to_metric_families

from common.kafka import make_consumer


async def read_topic(bootstrap: str, topic: str, until: Callable[[list], bool], timeout: float = 30.0,
                     decode: Callable | None = None) -> list:
    """Read a topic from the beginning until `until(messages)` holds; returns what was read."""
    consumer = make_consumer(bootstrap, topic, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    seen: list = []
    deadline = time.monotonic() + timeout
    try:
        while not until(seen):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: condition not met within {timeout}s; read {len(seen)} messages")
            batches = await consumer.getmany(timeout_ms=300)
            for recs in batches.values():
                seen += [decode(r.value) if decode else r for r in recs]
    finally:
        await consumer.stop()
    return seen


async def eventually(check: Callable, timeout: float = 30.0, interval: float = 0.2):
    """Await `check()` (sync or async) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def bounded(step, seconds: float, what: str):
    """Await a teardown step; when it overruns, print every task's stack, then fail loudly."""
    try:
        return await asyncio.wait_for(step, seconds)
    except asyncio.TimeoutError:
        for task in asyncio.all_tasks():
            print(f"--- task {task.get_name()}")
            task.print_stack(limit=12)
        raise AssertionError(f"{what} did not finish within {seconds}s (task stacks above)") from None


async def scrape(port: int, name: str, **labels: str) -> float:
    """The sum of a Prometheus metric's samples (matching `labels`) on 127.0.0.1:port/metrics."""
    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            return resp.read().decode()

    text = await asyncio.to_thread(fetch)
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


async def read_to_end(bootstrap: str, topic: str, decode: Callable | None = None, timeout: float = 30.0) -> list:
    """Everything on a topic now: every partition read up to its end offset at the call."""
    consumer = make_consumer(bootstrap, topic, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    records: list = []
    deadline = time.monotonic() + timeout
    try:
        while not consumer.assignment():               # no group: every partition, once metadata is in
            if time.monotonic() > deadline:
                return []                               # the topic does not exist (yet)
            batches = await consumer.getmany(timeout_ms=300)
            records += [r for recs in batches.values() for r in recs]
        ends = await consumer.end_offsets(list(consumer.assignment()))

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: not read to its end within {timeout}s; read {len(records)}")
            batches = await consumer.getmany(timeout_ms=300)
            records += [r for recs in batches.values() for r in recs]
    finally:
        await consumer.stop()
    return [decode(r.value) if decode else r for r in records]


@contextmanager
def running(procs: dict, ready_s: float = 180.0, tail: int = 4000):
    """Spawn every service, wait until each is READY; stop them all after, printing each
    log's tail (pytest shows it only when the test failed)."""
    try:
        for p in procs.values():
            p.spawn()
        for p in procs.values():
            p.wait_ready(ready_s)
        yield procs
    finally:
        for p in procs.values():
            p.stop()
        for name, p in procs.items():
            print(f"----- {name} log (tail) -----\n{p.log_tail(tail)}")


@contextmanager
def prometheus(jobs: dict[str, list[int]], data_dir: Path):
    """A real Prometheus (Debian's, installed by run.sh) scraping 127.0.0.1:<port>/metrics
    for each job's ports every second; yields its base URL."""
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus is not installed (./run.sh test installs it)"
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "prometheus.yml"
    config.write_text(json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": [
        {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}]}
        for job, ports in jobs.items()]}))            # JSON is YAML
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={data_dir / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=open(data_dir / "prometheus.log", "wb"))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


async def prometheus_api(base: str, path: str, **params) -> dict | None:
    """GET a Prometheus HTTP API path; its `data`, or None while the server is not up yet."""
    url = f"{base}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")

    def fetch():
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.loads(resp.read())["data"]
        except OSError:
            return None

    return await asyncio.to_thread(fetch)


@asynccontextmanager
async def serve(app):
    """Serve an aiohttp application on a free loopback port (the stand-ins of paid APIs);
    yields its base URL."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    finally:
        await runner.cleanup()
