"""Regenerate the protobuf/gRPC Python modules: `python -m proto.gen [--check]`.

The generated *_pb2*.py files are checked in; `--check` regenerates into a temporary
folder and fails when they differ, so CI catches a .proto edited without regenerating.
"""
from __future__ import annotations

import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ["proto/events.proto", "proto/router.proto"]
SERVICES = ["proto/router.proto"]      # events.proto has messages only: no gRPC stubs for it


def generate(out_dir: Path) -> None:
    include = Path(protoc.__file__).parent / "_proto"
    base = ["protoc", f"-I{ROOT}", f"-I{include}"]
    for args in ([f"--python_out={out_dir}", f"--pyi_out={out_dir}", *PROTOS],
                 [f"--grpc_python_out={out_dir}", *SERVICES]):
        if protoc.main(base + args) != 0:
            raise SystemExit("protoc failed")


def main() -> None:
    if "--check" not in sys.argv:
        generate(ROOT)
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = [f for f in sorted(Path(tmp, "proto").iterdir())
                 if not filecmp.cmp(f, ROOT / "proto" / f.name, shallow=False)]
    if stale:
        raise SystemExit(f"generated stubs are stale, run `python -m proto.gen`: {[f.name for f in stale]}")
    print("generated stubs are up to date")


if __name__ == "__main__":
    main()
