"""One way for every command-line tool to name the deployment it works on.

The flags default to the BR_* settings the services read (common/settings.py), so a tool
run beside a deployment needs none of them, and each flag overrides its setting. Key
prefixes and topic names then come from the settings object, never rebuilt by hand.
"""
from __future__ import annotations

import argparse
import json

from pydantic import ValidationError

from .settings import PolicySettings


def add_deployment_args(p: argparse.ArgumentParser, *, kafka: bool = False, redis: bool = False,
                        policy: bool = False) -> None:
    if kafka:
        p.add_argument("--kafka-bootstrap", "--bootstrap", dest="kafka_bootstrap",
                       help="Kafka bootstrap servers (default: BR_KAFKA_BOOTSTRAP)")
    if redis:
        p.add_argument("--redis-url", help="Redis URL (default: BR_REDIS_URL)")
    if kafka or redis:
        p.add_argument("--topic-prefix", help="the deployment's topic and key prefix (default: BR_TOPIC_PREFIX)")
    if policy:
        p.add_argument("--policy", help="registered policy name (default: BR_POLICY, else "
                       f"{PolicySettings.model_fields['policy'].default})")
        p.add_argument("--params", metavar="JSON",
                       help="the policy's hyperparameters as JSON (default: BR_POLICY_PARAMS)")


def settings_from(args: argparse.Namespace) -> PolicySettings:
    """The deployment's settings, with the flags given on the command line over them."""
    given = {k: getattr(args, k, None) for k in ("kafka_bootstrap", "redis_url", "topic_prefix", "policy")}
    overrides = {k: v for k, v in given.items() if v is not None}
    try:
        s = PolicySettings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SystemExit(f"error: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if getattr(args, "params", None) is not None:
        try:
            params = json.loads(args.params)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"error: --params is not JSON: {exc}") from None
        if not isinstance(params, dict):
            raise SystemExit("error: --params must be a JSON object, e.g. '{\"alpha\": 0.2}'")
        # Replaces BR_POLICY_PARAMS: given to the constructor, pydantic-settings would merge the two.
        s = s.model_copy(update={"policy_params": params})
    return s
