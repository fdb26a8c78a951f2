"""The feedback app is SIGKILLed twice under concurrent rated traffic and forgets nothing.

An operator's run, shrunk to fit CI: the bundled data set's nine models as replay experts,
16 clients each sending Route then Feedback, the feedback app killed (SIGKILL) twice
while batches are in flight and started again a few seconds later. Traffic is held a few
rounds past each kill point until the restarted app has learned again: on a fast machine
the clients would otherwise finish before the second kill, which then proves nothing (and
the restarted app, with nothing left to learn, publishes no snapshot). Afterwards every
rated decision has a reward on router.rewards, and every rewarded decision is learned
exactly once: the policy's update count equals the number of distinct rewarded
decisions, and Redis records each of them as applied.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import grpc
import pytest

from common.codec import decode
from common.redis_client import connect
from common.snapshots import SnapshotStore
from proto import events_pb2, router_pb2, router_pb2_grpc
from common.dataset import BUNDLED, RoutingDataset
from stack.experts_file import replay_catalog
from stack.local import ServiceProcess
from tests.helpers import eventually, read_to_end, running

REQUESTS = 480
CLIENTS = 16
KILL_AT = (110, 290)          # rated decisions before each kill
POLICY = "grouped_ts"         # the services' default: its one shared part is what the learner rebuilds
OVERRUN = 3 * CLIENTS         # requests that may start past a kill point before the restart is done
DOWN_S = 4.0


class RatedClients:
    """CLIENTS concurrent loops of Route + Feedback over the data set's rows."""

    def __init__(self, port: int, rows):
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = router_pb2_grpc.RouterStub(self.channel)
        self.rows = iter(rows)
        self.rated: list[str] = []
        self.failed: list[str] = []
        self.started, self.allowed = 0, KILL_AT[0] + OVERRUN
        self._opened = asyncio.Event()

    def allow(self, n: int) -> None:
        """Let requests start until `n` have started."""
        self.allowed = n
        self._opened.set()
        self._opened = asyncio.Event()

    async def client(self) -> None:
        for row in self.rows:   # a shared iterator: each row is sent once, by whichever client is free
            while self.started >= self.allowed:
                await self._opened.wait()
            self.started += 1
            try:
                resp = await self.stub.Route(router_pb2.RouteRequest(
                    query=row.prompt, options=router_pb2.RouteOptions(metadata={"item_id": row.id})), timeout=20)
                await self.stub.Feedback(router_pb2.FeedbackRequest(
                    decision_id=resp.decision_id, quality=row.outcomes[resp.expert].quality), timeout=20)
            except grpc.aio.AioRpcError as exc:   # the feedback app is not on this path: nothing should fail
                self.failed.append(f"{exc.code().name}: {exc.details()}")
                continue
            self.rated.append(resp.decision_id)

    async def run(self) -> None:
        await asyncio.gather(*(self.client() for _ in range(CLIENTS)))


@pytest.fixture
def services(stack, prefix, tmp_path):
    dataset = RoutingDataset.load(BUNDLED)
    catalog = replay_catalog(tmp_path / "experts.toml", BUNDLED, dataset)
    env = stack.env(BR_EXPERTS_FILE=catalog, BR_TOPIC_PREFIX=prefix, BR_APP_ID=f"{prefix}feedback", BR_PORT=0,
                    BR_SEED=5, BR_POLICY=POLICY,
                    BR_DEFAULT_COST_WEIGHT=200.0)
    procs = {"feedback": ServiceProcess("feedback.main", env, tmp_path / "feedback.log"),
             "worker": ServiceProcess("workers.main", env, tmp_path / "worker.log"),
             "router": ServiceProcess("router_svc.main", env, tmp_path / "router.log")}
    with running(procs):
        yield procs, dataset


async def test_every_rated_decision_is_learned_once_across_two_feedback_kills(services, stack, prefix):
    procs, dataset = services
    feedback = procs["feedback"]
    clients = RatedClients(int(procs["router"].field("port")), dataset.rows[:REQUESTS])
    redis = connect(stack.redis_url)
    store = SnapshotStore(redis, f"br:{prefix}", POLICY)
    recovery: list[float] = []

    async def kill_and_restart(at: int) -> None:
        await eventually(lambda: len(clients.rated) >= at, timeout=300, interval=0.05)
        feedback.proc.kill()                      # mid-batch: 16 requests and their ratings in flight
        feedback.proc.wait()
        await asyncio.sleep(DOWN_S)
        before, started = await store.current_version(), time.monotonic()
        await asyncio.to_thread(feedback.spawn().wait_ready, 180)
        # Ready again = learning again: the restarted app publishes a new snapshot.
        await eventually(lambda: _newer(store, before), timeout=120, interval=0.1)
        recovery.append(time.monotonic() - started)

    traffic = asyncio.create_task(clients.run())
    try:
        for at, then in zip(KILL_AT, [*KILL_AT[1:], REQUESTS]):
            await kill_and_restart(at)
            clients.allow(then + OVERRUN if then < REQUESTS else REQUESTS)
        await traffic
        assert clients.failed == [] and len(clients.rated) == REQUESTS

        seen: dict = {}

        async def learned_all() -> bool:
            rewards = await read_to_end(stack.kafka_bootstrap, f"{prefix}router.rewards",
                                        decode=lambda v: decode(v, events_pb2.RewardEvent))
            rewarded = {r.decision_id for r in rewards}
            snap = await store.load()
            learned = sum(int(c) for c in _update_counts(snap.parts).values()) if snap else 0
            applied = await store.unseen(sorted(rewarded))
            letters = await read_to_end(stack.kafka_bootstrap, f"{prefix}dead.letters",
                                        decode=lambda v: decode(v, events_pb2.DeadLetter))
            seen.update(rated=len(clients.rated), rated_not_rewarded=len(set(clients.rated) - rewarded),
                        rewards_on_topic=len(rewards), rewarded=len(rewarded), learned=learned,
                        rewarded_not_applied=sum(applied),
                        dead_letters=dict(Counter(d.reason for d in letters)))
            print("progress:", seen)
            return seen["rated_not_rewarded"] == 0 and seen["rewarded_not_applied"] == 0 \
                and learned == len(rewarded)

        await eventually(learned_all, timeout=150, interval=2.0)
        print(f"feedback app back to learning after a SIGKILL: {[round(r, 1) for r in recovery]} s")
        assert all(r < 30 for r in recovery), recovery
    finally:
        traffic.cancel()            # the test loop is shared by the session: leave no clients behind
        await clients.channel.close()
        await redis.aclose()


async def _newer(store: SnapshotStore, version: int) -> bool:
    return await store.current_version() > version


def _update_counts(parts: dict[str, bytes]) -> dict[str, int]:
    """Updates learned per expert, read from the snapshot as a new router would."""
    from bandit.policies import make_policy

    meta = json.loads(parts["__meta__"])
    policy = make_policy(meta["policy"], meta["dim"], meta["params"])
    policy.load_parts(parts)
    return dict(policy.counts)
