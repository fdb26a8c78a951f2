"""`./run.sh stack` as a user runs it: every service up, the URLs printed and answering,
and Ctrl-C stops everything (here against the session's broker and Redis)."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


async def test_the_stack_prints_its_urls_and_they_answer(stack, prefix, tmp_path):
    env = {**os.environ, **stack.env(BR_TOPIC_PREFIX=prefix, BR_APP_ID=f"{prefix}feedback")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stack.cli", "--dir", str(tmp_path / "stack"), "--port", "0", "--http-port", "0",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out = []
    try:
        while not out or "Ctrl-C stops everything" not in out[-1]:
            line = (await asyncio.wait_for(proc.stdout.readline(), 240)).decode()
            assert line, "the stack ended before it was up:\n" + "".join(out[-40:])
            out.append(line)
        text = "".join(out)
        http = re.search(r"^http: +(http://\S+)/v1 ", text, re.M).group(1)
        dashboard = re.search(r"^dashboard: (http://\S+/dashboard/)$", text, re.M).group(1)
        assert re.search(r"^router: 127\.0\.0\.1:[1-9]\d+ \(gRPC", text, re.M), text
        async with aiohttp.ClientSession() as session:
            for url in (f"{http}/healthz", f"{http}/v1/models", dashboard, f"{dashboard}data"):
                async with session.get(url) as resp:
                    assert resp.status == 200, url
            async with session.get(f"{http}/v1/models") as resp:
                assert "bandit-router" in {m["id"] for m in (await resp.json())["data"]}
        proc.send_signal(signal.SIGINT)
        rest = (await asyncio.wait_for(proc.stdout.read(), 120)).decode()
        assert await proc.wait() == 0 and "stopped in" in rest, rest[-2000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
