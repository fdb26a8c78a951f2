"""Typed configuration for every process, read from environment variables (prefix BR_).

One place for all settings: each process builds the one it needs in main(), tests
build them directly with keyword arguments.
"""
from __future__ import annotations

import os
import re
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .experts import ExpertCatalog
from .media import MediaLimits


def _env(prefix: str = "BR_") -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore")


class InfraSettings(BaseSettings):
    """Where Kafka and Redis are, and the names of the shared topics."""

    model_config = _env()
    kafka_bootstrap: str = "127.0.0.1:19092"
    redis_url: str = "redis://127.0.0.1:16379/0"
    topic_prefix: str = ""
    topic_partitions: int = Field(default=4, ge=1)
    experts_file: Path | None = None        # TOML; see common/experts.py
    catalog_poll_s: float = Field(default=2.0, ge=0)    # reload experts_file when it changes; 0 = never
    metrics_port: int | None = Field(default=None, ge=0, le=65535)   # Prometheus; None = off, 0 = any free port
    metrics_host: str = "127.0.0.1"

    def load_catalog(self) -> ExpertCatalog:
        if self.experts_file is None:
            raise SystemExit("BR_EXPERTS_FILE is not set: point it at the expert catalog (TOML)")
        return ExpertCatalog.from_file(self.experts_file)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def decisions_topic(self) -> str:
        return self.topic("router.decisions")

    @property
    def results_topic(self) -> str:
        return self.topic("router.results")

    @property
    def ratings_topic(self) -> str:
        return self.topic("feedback.ratings")

    @property
    def rewards_topic(self) -> str:
        return self.topic("router.rewards")

    @property
    def dead_letter_topic(self) -> str:
        return self.topic("dead.letters")

    @property
    def audit_topic(self) -> str:
        return self.topic("router.audit")

    def expert_topic(self, expert: str) -> str:
        return self.topic(f"experts.{expert}.requests")

    def reply_topic(self, router_id: str) -> str:
        return self.topic(f"router.replies.{router_id}")

    @property
    def redis_prefix(self) -> str:
        return f"br:{self.topic_prefix}"


_SPEC_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class PolicySpec:
    """A named policy: `name` keys its snapshots in Redis and is what decisions log;
    `kind` is the registered policy class, `params` its hyperparameters."""

    name: str
    kind: str
    params: dict = field(default_factory=dict)


class PolicySettings(InfraSettings):
    """The policies routers, learners and tools must agree on: BR_POLICY (with
    BR_POLICY_PARAMS) serves until a promotion names another; BR_SHADOW_POLICIES run
    beside it on every decision, serve nothing, and learn from the same rewards."""

    model_config = _env()
    policy: str = "grouped_ts"          # the replay's best on both shared sets, with the replay's defaults
    policy_params: dict = Field(default_factory=dict)
    # {"lints": {}, "lints_wide": {"policy": "lints", "params": {"alpha": 2.0}}}; a name
    # without "policy" is the registered policy of that name.
    shadow_policies: dict[str, dict] = {}

    @model_validator(mode="after")
    def _shadow_specs(self):
        for name, spec in self.shadow_policies.items():
            if not _SPEC_NAME.fullmatch(name):
                raise ValueError(f"shadow policy name {name!r} must be 1 to 64 of A-Z a-z 0-9 _ . -")
            if name == self.policy:
                raise ValueError(f"shadow policy {name!r} has the serving policy's name (BR_POLICY)")
            if not isinstance(spec, dict) or set(spec) - {"policy", "params"} \
                    or not isinstance(spec.get("params", {}), dict):
                raise ValueError(f"shadow policy {name!r} must be {{\"policy\": NAME, \"params\": {{...}}}}, "
                                 f"got {spec!r}")
        return self

    @property
    def policy_specs(self) -> dict[str, PolicySpec]:
        """Every configured policy by name, BR_POLICY's first."""
        specs = {self.policy: PolicySpec(self.policy, self.policy, dict(self.policy_params))}
        for name, spec in self.shadow_policies.items():
            specs[name] = PolicySpec(name, spec.get("policy", name), dict(spec.get("params", {})))
        return specs


class RouterSettings(PolicySettings):
    model_config = _env()
    host: str = "127.0.0.1"
    port: int = 50051                        # 0 = pick a free port (tests)
    http_port: int | None = Field(default=None, ge=0, le=65535)   # the OpenAI-compatible door; None = off
    auth: bool = False                       # require an API key on both doors (router_svc/auth.py)
    keys_file: Path | None = None            # TOML of tenants and their key hashes; reloaded when it changes
    tls_cert_file: Path | None = None        # PEM certificate (chain): TLS on both doors; plaintext is refused
    tls_key_file: Path | None = None         # its PEM private key
    tls_client_ca_file: Path | None = None   # PEM CA: mutual TLS, clients must present a certificate it signed
    owner_ttl_s: float = Field(default=86_400.0, gt=0)      # how long a decision's tenant is kept (auth on)
    dashboard: bool = True                                  # served by the HTTP door at /dashboard/
    dashboard_window_s: float = Field(default=900.0, gt=0)  # how far back the dashboard shows
    dashboard_bucket_s: float = Field(default=5.0, gt=0)    # one point per bucket
    router_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    embedding_model: str = ""                # sentence-transformers name or path; "" = bundled MiniLM
    embedding_device: str = ""               # "" = cuda when available, else cpu
    # "" = onnx-int8 on a CPU (ONNX Runtime, int8 weights: 3.9-4.3x torch's throughput here, the
    # same routing quality within seed noise on both shared sets; README, Benchmarks) and
    # torch on CUDA; or "torch", "onnx" (float32), "onnx-int8".
    embedding_backend: Literal["", "torch", "onnx", "onnx-int8"] = ""
    embedding_max_seq_length: int | None = Field(default=None, ge=8)   # tokens; None = the model's own
    embedding_cache_size: int = Field(default=10_000, ge=0)            # recent query texts kept; 0 = off
    embed_batch_size: int = Field(default=32, ge=1)
    embed_max_wait_ms: float = Field(default=0.0, ge=0)   # 0: take what is queued when the model is free
    embed_forward_batch: int = Field(default=0, ge=0)      # texts per forward pass, like lengths together; 0: 1 on ONNX, 8 on torch (CUDA: the micro-batch)
    embed_parallel: int = Field(default=0, ge=0)           # ONNX micro-batches at once; 0: one per core on a CPU
    default_cost_weight: float = Field(default=0.0, ge=0)
    default_timeout_ms: int = Field(default=10_000, ge=1)
    max_timeout_ms: int = Field(default=300_000, ge=1)     # a longer request timeout is refused
    expert_timeout_share: float = Field(default=0.6, gt=0, le=1)  # of the deadline, before falling back
    breaker_failures: int = Field(default=5, ge=0)          # consecutive failures that open an expert's breaker; 0 = off
    breaker_cooldown_s: float = Field(default=30.0, gt=0)   # open this long, then one probe
    max_in_flight: int = Field(default=1024, ge=0)          # Route/Decide calls at once; more are shed; 0 = no limit
    retry_after_s: float = Field(default=1.0, gt=0)         # what a shed caller is told to wait
    fallback_expert: str = ""                # "" = the premium expert
    max_query_chars: int = Field(default=32_768, ge=1)
    budget_per_query: float | None = Field(default=None, gt=0)   # mean cost cap, kept by pacing
    budget_step: float = Field(default=0.05, gt=0)
    tenant_limits: dict[str, dict] = {}      # {"acme": {"rate_per_s": 5, "burst": 10, "budget_per_query": 0.002}}
    snapshot_poll_s: float = Field(default=1.0, gt=0)
    seed: int | None = None
    # Content parts (common/media.py): limits per part and per request; the gRPC message
    # limit is raised to max_request_bytes plus the query. Stored parts live part_ttl_s.
    max_parts: int = Field(default=8, ge=0)
    max_part_bytes: int = Field(default=10 * 2**20, ge=1)
    max_request_bytes: int = Field(default=20 * 2**20, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    max_pdf_pages: int = Field(default=200, ge=1)
    max_audio_s: float = Field(default=600.0, gt=0)
    part_ttl_s: float = Field(default=3600.0, gt=0)

    @property
    def media_limits(self) -> MediaLimits:
        return MediaLimits(self.max_parts, self.max_part_bytes, self.max_request_bytes, self.max_image_pixels,
                           self.max_pdf_pages, self.max_audio_s)

    @property
    def max_message_bytes(self) -> int:
        return self.max_request_bytes + 4 * self.max_query_chars + 2**20

    @model_validator(mode="after")
    def _tls_pair(self):
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together (BR_TLS_CERT_FILE, BR_TLS_KEY_FILE)")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError("tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file")
        return self


class WorkerSettings(InfraSettings):
    model_config = _env()
    experts: str = "all"                     # comma-separated names, or "all"
    worker_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    batch_max: int = Field(default=64, ge=1)
    join_timeout_s: float = Field(default=120.0, gt=0)      # READY only once each pool holds its assignment
    answer_ttl_s: float = Field(default=86_400.0, gt=0)     # how long the ledger keeps an answer
    claim_ttl_s: float = Field(default=600.0, gt=0)         # a claim on a request without a deadline
    backend_retries: int = Field(default=2, ge=0)           # tries again after a transient backend error
    retry_backoff_s: float = Field(default=0.2, gt=0)       # before the first retry; doubles
    stream_flush_ms: float = Field(default=25.0, ge=0)     # a streamed answer's pieces are sent this often at most


class FeedbackSettings(PolicySettings):
    model_config = _env()
    app_id: str = "bandit-router-feedback"                  # prefix of the join's and learner's groups
    decision_ttl_s: float = Field(default=86_400.0, gt=0)   # ratings after this are dead-lettered
    unknown_grace_s: float = Field(default=30.0, ge=0)      # wait this long for a late decision
    reward_keep_s: float = Field(default=600.0, gt=0)       # keep a sent reward to resend on redelivery
    sweep_interval_s: float = Field(default=5.0, gt=0)
    failure_quality: float = 0.0                            # quality of a failed/timed-out expert
    embedding_dim: int = Field(default=384, ge=1)           # must match the routers' model
    learner_batch: int = Field(default=256, ge=1)
    learner_flush_s: float = Field(default=0.25, gt=0)
    seen_ttl_s: int = Field(default=7 * 86_400, ge=1)       # learner's dedupe window
    join_batch: int = Field(default=500, ge=1)              # join events per Redis round trip
    session_timeout_s: float = Field(default=10.0, ge=3)    # a dead member's partitions move after this
