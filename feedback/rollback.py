"""`./run.sh rollback [--to VERSION] [--list]`: serve an earlier policy snapshot.

A bad model is undone without a deploy: the snapshot store keeps the last versions in
Redis, and moving `current` back makes every router and learner load that version
(announced on the versions channel, polled as a backstop). The learner goes on from the
rolled-back state. Without --to, the version before the current one is served.
Redis, the key prefix and the policy come from the same BR_* settings as the services.
"""
from __future__ import annotations

import argparse
import asyncio

from common.redis_client import connect
from common.cli import add_deployment_args, settings_from
from common.snapshots import SnapshotStore


async def rollback(store: SnapshotStore, to: int | None) -> tuple[int, int]:
    """Serve version `to` (default: the one before the current); returns (from, to)."""
    current, history = await store.current_version(), await store.history()
    if not current:
        raise SystemExit("error: no policy snapshot is stored yet: nothing to roll back")
    if to is None:
        older = [v for v in history if v < current]
        if not older:
            raise SystemExit(f"error: version {current} is the oldest retained: nothing to roll back to")
        to = older[0]
    if to not in history:
        raise SystemExit(f"error: version {to} is not retained; retained versions: {history}")
    await store.rollback(to)
    return current, to


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--to", type=int, help="the version to serve (default: the one before the current)")
    p.add_argument("--list", action="store_true", help="print the retained versions and stop")
    add_deployment_args(p, redis=True, policy=True)
    args = p.parse_args(argv)
    s = settings_from(args)

    async def run() -> None:
        redis = connect(s.redis_url)
        try:
            store = SnapshotStore(redis, s.redis_prefix, s.policy)
            if args.list:
                print(f"policy {s.policy}: current {await store.current_version()}, "
                      f"retained {await store.history()}")
                return
            before, after = await rollback(store, args.to)
            print(f"policy {s.policy}: now serving version {after} (was {before})")
        finally:
            await redis.aclose()

    asyncio.run(run())


if __name__ == "__main__":
    main()
