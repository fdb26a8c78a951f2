"""aiokafka plumbing shared by every process: topics, producers, consumers, dead letters."""
from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from proto import events_pb2

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


async def ensure_topics(bootstrap: str, topics: dict[str, int], retries: int = 30,
                        configs: dict[str, dict[str, str]] | None = None) -> None:
    """Create the topics (name -> partitions, optional topic configs) that do not exist yet; idempotent."""
    for attempt in range(retries):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [NewTopic(n, p, 1, topic_configs=(configs or {}).get(n)) for n, p in topics.items()
                       if n not in existing]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
            return
        except KafkaError as exc:
            if attempt == retries - 1:
                raise
            log.warning("creating topics failed (%s), retrying", exc)
            await asyncio.sleep(1.0)
        finally:
            await admin.close()


async def topic_partitions(bootstrap: str, topics: list[str], wait_s: float = 30.0) -> dict[str, list[int]]:
    """Each existing topic's partition numbers, from the broker's metadata.

    A topic created a moment ago can be listed before its partitions have a leader (seen on a
    loaded CI machine): a reader that assigned itself the partitions found then would never
    see the rest. So ask again, for up to `wait_s`, until every topic has partitions and each
    a leader; after that, return what exists and say what does not.
    """
    deadline = time.monotonic() + wait_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            await admin.start()
            described = await admin.describe_topics(topics)
        finally:
            await admin.close()
        found = {t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in described
                 if not t["error_code"] and t["partitions"]}
        leaderless = [t["topic"] for t in described if any(p["leader"] < 0 for p in t["partitions"])]
        missing = sorted(set(topics) - set(found)) + leaderless
        if not missing:
            return found
        if time.monotonic() > deadline:
            log.warning("topics without partitions or leaders after %.0fs: %s", wait_s, missing)
            return found
        await asyncio.sleep(0.2)


def make_producer(bootstrap: str, **kw) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica's acknowledgement.

    Not aiokafka's idempotent mode: after a sequence error (e.g. NotLeaderForPartition on a
    new topic, or a broker restart) an idempotent aiokafka producer fails every later send
    with OutOfOrderSequenceNumber until it is rebuilt (aio-libs/aiokafka#1017; seen here).
    Every consumer in this system is idempotent, so the duplicate a retry may write is harmless.
    """
    opts = dict(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
                linger_ms=0, request_timeout_ms=15_000, retry_backoff_ms=200)
    opts.update(kw)
    return AIOKafkaProducer(**opts)


def make_consumer(bootstrap: str, *topics: str, group_id: str | None, **kw) -> AIOKafkaConsumer:
    """A consumer with manual commits: callers commit after their work is durable."""
    opts = dict(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False,
                auto_offset_reset="earliest", session_timeout_ms=10_000,
                heartbeat_interval_ms=1_000, max_poll_interval_ms=300_000,
                retry_backoff_ms=200, metadata_max_age_ms=5_000)
    opts.update(kw)
    return AIOKafkaConsumer(*topics, **opts)


async def poll_forever(consumer: AIOKafkaConsumer, handle, what: str, max_records: int = 500) -> None:
    """Hand each polled batch ({partition: records}) to `handle` until cancelled. A failed
    poll (a broker restart) is logged and retried: aiokafka reconnects on the next call."""
    while True:
        try:
            batches = await consumer.getmany(timeout_ms=500, max_records=max_records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s: %s", what, exc)
            await asyncio.sleep(0.5)
            continue
        handle(batches)


def rewind(consumer: AIOKafkaConsumer, batches: dict) -> None:
    """Seek every partition of a polled batch back to its first record, so that a batch that
    could not be finished is read again instead of committed past later."""
    for tp, records in batches.items():
        if tp in consumer.assignment():
            consumer.seek(tp, records[0].offset)


async def commit_assigned(consumer: AIOKafkaConsumer, offsets: dict, what: str) -> None:
    """Commit the offsets of partitions still assigned. Best effort: callers commit only
    what is already durable, so a lost commit costs a re-read of work they recognise."""
    try:
        await consumer.commit({tp: o for tp, o in offsets.items() if tp in consumer.assignment()})
    except KafkaError as exc:
        log.warning("%s: offset commit failed (%s); the batch may be read again", what, exc)


def group_timing(session_timeout_s: float) -> dict:
    """Consumer options: a member that dies holds its partitions for session_timeout_s;
    heartbeats go five times within it."""
    return {"session_timeout_ms": int(session_timeout_s * 1000), "heartbeat_interval_ms": int(session_timeout_s * 200)}


class GroupMembership(ConsumerRebalanceListener):
    """Tells when this consumer has joined its group and holds an assignment (maybe empty).

    A process should not call itself ready before that: a request published in the gap is
    only read after the join, which on a loaded machine can eat a caller's whole deadline.
    """

    def __init__(self, name: str):
        self.name = name
        self.joined = asyncio.Event()

    async def on_partitions_revoked(self, revoked) -> None:
        pass

    async def on_partitions_assigned(self, assigned) -> None:
        log.info("%s: assigned %s", self.name, sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
        self.joined.set()

    async def wait(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self.joined.wait(), timeout_s)
        except asyncio.TimeoutError:
            raise RuntimeError(f"{self.name}: no group assignment within {timeout_s:.0f} s") from None


def dead_letter(*, source_topic: str, reason: str, payload: bytes | None, component: str,
                partition: int = -1, offset: int = -1, decision_id: str = "") -> events_pb2.DeadLetter:
    return events_pb2.DeadLetter(
        source_topic=source_topic, partition=partition, offset=offset, reason=reason,
        payload=payload or b"", decision_id=decision_id, ts_ms=now_ms(), component=component)


async def send_dead_letter(producer: AIOKafkaProducer, topic: str, letter: events_pb2.DeadLetter) -> None:
    log.warning("dead letter from %s: %s", letter.source_topic, letter.reason)
    key = letter.decision_id.encode() if letter.decision_id else None
    await producer.send_and_wait(topic, letter.SerializeToString(), key=key)
