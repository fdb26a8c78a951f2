#!/usr/bin/env bash
# bandit-router's one entry point on a fresh machine.
#   ./run.sh demo [--queries N ...]   install everything, start the stack, run the demo
#   ./run.sh test [pytest args]       install everything, check generated code, run the tests
#   ./run.sh stack                    install everything, run the local stack until Ctrl-C
#   ./run.sh bench                    benchmarks (bench/): ratios against a baseline run beside them
#   ./run.sh bench soak --minutes M   the whole stack at a fixed rate while its parts are killed
#   ./run.sh bench load [--json F]    a decision's cost beside its embedding; 1 and 2 routers on one port
#   ./run.sh replay --data F --out D  replay a routing data set through the policies (simulations/)
#   ./run.sh export-logs / ope ...    export logged decisions from Kafka / estimate a policy on them
#   ./run.sh warmstart --data F ...   train a policy on labelled rows, publish it as the first snapshot
#   ./run.sh promote --candidate NAME serve a shadow policy if the logged traffic shows it is better
#   ./run.sh rollback [--to V]        serve an earlier policy snapshot (--promotion: undo a promotion)
#   ./run.sh keys add --tenant T --file F  mint an API key for a tenant (prints it once; F keeps its hash)
#   ./run.sh setup                    install only
# The Python environment lives in $BR_CACHE_DIR (default ~/.cache/bandit-router), keyed by
# the hash of pyproject.toml, so it is built once per machine and dependency set.
set -euo pipefail
cd "$(dirname "$0")"
export BR_CACHE_DIR="${BR_CACHE_DIR:-$HOME/.cache/bandit-router}"
PY="${PYTHON:-python3}"
VENV="${BR_VENV:-$BR_CACHE_DIR/venv-$(sha256sum pyproject.toml | cut -c1-12)}"

need_apt() {  # install Debian packages when a command is missing (as root, or with sudo)
  local cmd=$1; shift
  command -v "$cmd" >/dev/null && return 0
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing $* (for $cmd)" >&2
  $sudo apt-get install -y -q "$@" >/dev/null || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$@" >/dev/null; }
}

setup() {
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 is needed (set PYTHON=...)" >&2; exit 1; }
  need_apt java openjdk-17-jre-headless
  need_apt mvn maven
  need_apt redis-server redis-server
  need_apt tesseract tesseract-ocr tesseract-ocr-eng
  if [ ! -f "$VENV/.complete" ]; then
    echo "creating the Python environment in $VENV (one pip resolution; torch is large)" >&2
    rm -rf "$VENV"; mkdir -p "$BR_CACHE_DIR"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q ".[test,bench]"
    touch "$VENV/.complete"
  fi
  # Open Bandit Pipeline, the OPE reference the tests compare with: its own pinned
  # dependencies do not build on Python 3.11; the ones it needs are installed above.
  "$VENV/bin/python" -c "import obp" 2>/dev/null || "$VENV/bin/pip" install -q --no-deps obp==0.4.1
  # This checkout's code, without touching the pinned dependencies.
  "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e . >"$BR_CACHE_DIR/editable.log" 2>&1 || { cat "$BR_CACHE_DIR/editable.log"; exit 1; }
  "$VENV/bin/python" -m stack.prepare
}

cmd="${1:-help}"; shift || true
case "$cmd" in
  setup) setup ;;
  demo)  setup; exec "$VENV/bin/python" -m stack.demo "$@" ;;
  stack) setup; exec "$VENV/bin/python" -m stack.cli "$@" ;;
  bench)
    setup
    case "${1:-}" in
      soak) shift; exec "$VENV/bin/python" -m bench.soak "$@" ;;
      load) shift; exec "$VENV/bin/python" -m bench.load "$@" ;;
      *) exec "$VENV/bin/python" -m bench.policies "$@" ;;
    esac ;;
  replay) setup; exec "$VENV/bin/python" -m simulations.replay "$@" ;;
  export-logs) setup; exec "$VENV/bin/python" -m simulations.logs "$@" ;;
  ope) setup; exec "$VENV/bin/python" -m simulations.offpolicy "$@" ;;
  warmstart) setup; exec "$VENV/bin/python" -m simulations.warmstart "$@" ;;
  promote) setup; exec "$VENV/bin/python" -m simulations.promote "$@" ;;
  rollback) setup; exec "$VENV/bin/python" -m feedback.rollback "$@" ;;
  keys) setup; exec "$VENV/bin/python" -m router_svc.auth "$@" ;;
  test)
    setup
    need_apt chromium chromium     # the dashboard's browser test (headless)
    need_apt prometheus prometheus # a real Prometheus scrapes the services in the whole-loop test
    "$VENV/bin/python" -m proto.gen --check
    exec "$VENV/bin/python" -m pytest "$@" ;;
  *) sed -n '2,15p' "$0"; exit 2 ;;
esac
