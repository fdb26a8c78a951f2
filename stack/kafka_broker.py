"""A single-node Apache Kafka (KRaft) on loopback, from Kafka's own jars on Maven Central.

The jars are fetched once with Maven (stack/kafka/pom.xml) into the cache folder. The log
directory survives stop/start, so a restart loses nothing (fault tests rely on it).

Flushing is Kafka's default: the page cache, not an fsync per write. A killed broker
process (SIGKILL included) loses nothing that way, since its writes are in the kernel's
page cache; only a machine that loses power does, which replication guards against in
production, not fsync. `fsync_every_message` turns the fsync back on, at 1 to 2 ms per
acknowledged write on this machine's disk.

The JVM compiles with C1 only and collects with the serial collector (`JVM_OPTIONS`): this
broker is started fresh for a test session, the demo or a benchmark, on a small machine,
and C2's optimising compiler spent that life compiling. Measured on 2 cores under the load
bench: C2 took 7.7 s of CPU in the first minute (0.2 of a core while Route was measured),
C1 0.5 s, and the broker's request handling cost no more (8.9 s against 9.5 s of CPU for
more requests); the broker's share of a loaded Route run fell from 0.51-0.72 of a core to
0.24-0.28. A broker that runs for weeks (compose/, production) keeps the JVM's defaults.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

from common.cache import cache_dir

from .procs import free_port, stop_process, wait_port

log = logging.getLogger(__name__)
POM = Path(__file__).with_name("kafka") / "pom.xml"
JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
LOG4J = """log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=WARN
"""


def kafka_version() -> str:
    text = POM.read_text()
    return text.split("<kafka.version>")[1].split("</kafka.version>")[0]


def ensure_jars() -> Path:
    """The folder of broker jars, fetched from Maven Central on first use."""
    libs = cache_dir() / f"kafka-{kafka_version()}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is needed once to fetch the Kafka broker jars; install it "
                           "(apt-get install maven) or point BR_KAFKA_BOOTSTRAP at a running broker")
    log.info("fetching Apache Kafka %s jars from Maven Central into %s", kafka_version(), libs)
    libs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                    f"-DoutputDirectory={libs}", "-DincludeScope=runtime"], check=True)
    marker.touch()
    return libs


class KafkaBroker:
    def __init__(self, data_dir: Path, port: int = 0, controller_port: int = 0, heap: str = "512m",
                 fsync_every_message: bool = False):
        self.data_dir = Path(data_dir).resolve()
        # A formatted KRaft log dir remembers its controller endpoint: reuse the ports it had.
        saved = self.data_dir / "ports.json"
        old = json.loads(saved.read_text()) if saved.exists() else {}
        self.port = port or old.get("port") or free_port()
        self.controller_port = controller_port or old.get("controller_port") or free_port()
        self.heap, self.fsync_every_message = heap, fsync_every_message
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, libs: Path, *args: str, **kw) -> list[str]:
        return ["java", f"-Xmx{self.heap}", *JVM_OPTIONS, f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
                "-Dkafka.logs.dir=" + str(self.data_dir), "-cp", f"{libs}/*", *args]

    def _configure(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "ports.json").write_text(json.dumps(
            {"port": self.port, "controller_port": self.controller_port}))
        (self.data_dir / "log4j.properties").write_text(LOG4J.format(log=self.data_dir / "broker.log"))
        props = self.data_dir / "server.properties"
        props.write_text("\n".join([
            "process.roles=broker,controller", "node.id=1",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
            f"log.dirs={self.data_dir / 'logs'}",
            "offsets.topic.replication.factor=1", "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0", "num.partitions=4", "auto.create.topics.enable=true",
            *(["log.flush.interval.messages=1"] if self.fsync_every_message else []), "",
        ]))
        return props

    def start(self, timeout: float = 90.0) -> "KafkaBroker":
        libs = ensure_jars()
        props = self._configure()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster = subprocess.run(self._java(libs, "kafka.tools.StorageTool", "random-uuid"),
                                     check=True, capture_output=True, text=True).stdout.split()[-1]
            subprocess.run(self._java(libs, "kafka.tools.StorageTool", "format", "-t", cluster,
                                      "-c", str(props), "--standalone"), check=True, capture_output=True)
        out = open(self.data_dir / "stdout.log", "ab")
        self.proc = subprocess.Popen(self._java(libs, "kafka.Kafka", str(props)), stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "KAFKA_HEAP_OPTS": f"-Xmx{self.heap}"})
        wait_port(self.port, self.proc, timeout, "Kafka broker", self.data_dir / "broker.log")
        log.info("Kafka %s on %s (data %s)", kafka_version(), self.bootstrap, self.data_dir)
        return self

    def stop(self) -> None:
        stop_process(self.proc, timeout=30)
        self.proc = None

    def kill(self) -> None:
        """Hard stop (SIGKILL), as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
