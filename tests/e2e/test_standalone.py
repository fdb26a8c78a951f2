"""The repository stands alone: a copy of it with nothing beside it runs the demo and the tests.

The copy holds exactly the files git tracks (plus new ones it does not ignore), in an
empty temporary folder, so nothing outside the repository (no data folder next to the
checkout, no build output) can be read by accident.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = "../" + "shared"          # spelled apart so that this file does not match itself


def repository_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                         check=True, capture_output=True).stdout.decode()
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def copy_repository(dest: Path) -> Path:
    for f in repository_files():
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)
    return dest


def test_no_file_reads_outside_the_repository():
    offenders = []
    for f in repository_files():
        if f == "tests/e2e/test_standalone.py" or f.endswith((".gz", ".png")):
            continue
        text = (ROOT / f).read_text(errors="replace")
        if OUTSIDE in text or "parent.parent.parent" in text:
            offenders.append(f)
    assert offenders == [], f"these files point outside the repository: {offenders}"


def test_a_lone_copy_runs_the_demo_and_the_unit_tests(tmp_path, stack, prefix):
    alone = copy_repository(tmp_path / "empty" / "bandit-router")
    assert sorted(p.name for p in alone.parent.iterdir()) == ["bandit-router"]   # nothing beside it
    env = {k: v for k, v in os.environ.items() if not k.startswith("BR_") and k != "PYTHONPATH"}
    env.update(stack.env(BR_TOPIC_PREFIX=prefix, BR_APP_ID=f"{prefix}feedback"), PYTHONPATH=str(alone))

    demo = subprocess.run([sys.executable, "-m", "stack.demo", "--queries", "40", "--warm-rows", "200", "--concurrency", "8",
                           "--out", str(tmp_path / "demo-out")], cwd=alone, env=env, capture_output=True,
                          text=True, timeout=420)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    summary = json.loads((tmp_path / "demo-out" / "summary.json").read_text())
    assert summary["dataset"] == "llmrouter_9models" and summary["queries"] == 40, summary
    assert summary["warm_start_rows"] == 200 and "warm start: grouped_ts learned from 200" in demo.stdout
    assert summary["hints"] == ["task"] and "hints: task" in demo.stdout
    assert summary["errors"] == {} and (tmp_path / "demo-out" / "demo.png").stat().st_size > 0

    unit = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"],
                          cwd=alone, env=env, capture_output=True, text=True, timeout=600)
    assert unit.returncode == 0, unit.stdout[-4000:] + unit.stderr[-2000:]
    assert " passed" in unit.stdout.splitlines()[-1]


def test_a_missing_data_file_is_one_line_naming_it(tmp_path):
    for module in ("stack.demo", "simulations.replay"):
        args = ["--data", str(tmp_path / "nowhere.jsonl")] + (["--out", str(tmp_path)] if "replay" in module else [])
        run = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 1, (module, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in run.stderr, (module, run.stderr)
        assert "nowhere.jsonl: no such file" in lines[0] and "bundled data/llmrouter_9models.jsonl.gz" in lines[0]
