"""`./run.sh rollback [--to VERSION | --promotion] [--list]`: undo a bad model or a bad promotion.

Without a deploy: the snapshot store keeps the last versions of each policy in Redis,
and moving `current` back makes every router and learner load that version (announced
on the versions channel, polled as a backstop); the learner goes on from the rolled-back
state. `--to` (default: the version before the current one) acts on the serving policy.
`--promotion` serves again the policy that served before the last promotion (the
promoted one goes back to the shadow). Each rollback is an AuditEvent on router.audit.
Redis, Kafka and the prefix come from the same BR_* settings as the services.
"""
from __future__ import annotations

import argparse
import asyncio

from common.cli import add_deployment_args, settings_from
from common.redis_client import connect
from common.serving import ServingPointer, audit_event, send_audit
from common.settings import PolicySettings
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


async def run(s: PolicySettings, to: int | None = None, promotion: bool = False, listing: bool = False) -> str:
    """Do what the flags say; returns the line to print."""
    redis = connect(s.redis_url)
    try:
        pointer = ServingPointer(redis, s.redis_prefix, s.policy)
        serving = await pointer.get()
        store = SnapshotStore(redis, s.redis_prefix, serving)
        if listing:
            return (f"serving {serving}: current version {await store.current_version()}, retained "
                    f"{await store.history()}; served before it (newest first): {await pointer.history() or 'none'}")
        if promotion:
            undone = await pointer.undo()
            if undone is None:
                raise SystemExit(f"error: no promotion is recorded: {serving!r} has served since the start")
            before, after = undone
            event = audit_event("rollback", from_policy=before, to_policy=after,
                                reason=f"promotion of {before!r} undone")
            line = f"now serving policy {after} (was {before})"
        else:
            before_v, after_v = await rollback(store, to)
            event = audit_event("rollback", from_policy=serving, to_policy=serving, from_version=before_v,
                                to_version=after_v, reason=f"version {before_v} rolled back to {after_v}")
            line = f"policy {serving}: now serving version {after_v} (was {before_v})"
        await send_audit(s, event)
        return line
    finally:
        await redis.aclose()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--to", type=int, help="the version to serve (default: the one before the current)")
    which.add_argument("--promotion", action="store_true", help="undo the last promotion")
    which.add_argument("--list", action="store_true", help="print the retained versions and stop")
    add_deployment_args(p, kafka=True, redis=True, policy=True)
    args = p.parse_args(argv)
    print(asyncio.run(run(settings_from(args), args.to, args.promotion, args.list)))


if __name__ == "__main__":
    main()
