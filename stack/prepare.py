"""`python -m stack.prepare`: fetch the Kafka broker jars and make sure redis-server exists."""
from common.logs import setup_logging

from .kafka_broker import ensure_jars, kafka_version
from .redis_server import ensure_redis_binary


def main() -> None:
    setup_logging()
    print(f"Kafka {kafka_version()} jars: {ensure_jars()}; redis-server: {ensure_redis_binary()}", flush=True)


if __name__ == "__main__":
    main()
