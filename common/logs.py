"""One logging format for every process (level from BR_LOG_LEVEL)."""
import logging
import os


def setup_logging() -> None:
    logging.basicConfig(level=os.environ.get("BR_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aiokafka", "kafka", "sentence_transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
