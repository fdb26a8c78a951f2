"""API keys: who is calling, on both doors (gRPC metadata and HTTP `Authorization: Bearer`).

The keys file (BR_KEYS_FILE, TOML) maps tenants to the SHA-256 of their keys, never the
keys themselves:

    [tenants.acme]
    keys = ["sha256:9f86d081884c7d65..."]
    admin = false        # an admin key acts for any tenant and reads the dashboard
    rate_per_s = 5       # optional limits (tenants.py): requests/s with a burst, mean cost per query
    burst = 10
    budget_per_query = 0.002

A key is a random 32-byte token (`./run.sh keys add --tenant acme --file keys.toml` prints
a new one once and adds its hash), so a plain SHA-256 is a safe way to keep it: there is
nothing to guess. The router re-reads the file when it changes (every BR_CATALOG_POLL_S),
so keys are added and revoked without a restart; a file that does not parse keeps the
last good one. With BR_AUTH off (the local stack's default) every call is let in.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import metrics
from .errors import PermissionDenied, Unauthenticated
from .tenants import Limits

HASHED = re.compile(r"^sha256:[0-9a-f]{64}$")
TENANT = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


@dataclass(frozen=True)
class Tenant:
    name: str
    admin: bool = False


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    def __init__(self, tenants: dict[str, Tenant], hashes: dict[str, Tenant], limits: dict[str, Limits] | None = None):
        self.tenants, self._by_hash, self.limits = tenants, hashes, limits or {}

    @classmethod
    def from_file(cls, path: Path) -> "KeyRing":
        try:
            doc = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"keys file {path}: {exc}") from exc
        tenants, hashes, limits = {}, {}, {}
        for name, entry in (doc.get("tenants") or {}).items():
            if not TENANT.match(name) or not isinstance(entry, dict):
                raise ValueError(f"keys file {path}: tenant {name!r} must match {TENANT.pattern} and be a table")
            tenant = tenants[name] = Tenant(name, bool(entry.get("admin", False)))
            limits[name] = Limits.parse(entry, f"keys file {path}: tenant {name!r}")
            for h in entry.get("keys", []):
                if not isinstance(h, str) or not HASHED.match(h):
                    raise ValueError(f"keys file {path}: tenant {name!r}: keys are 'sha256:<64 hex>' hashes, "
                                     "never the keys themselves")
                if h in hashes:
                    raise ValueError(f"keys file {path}: a key hash is listed for {hashes[h].name!r} and {name!r}")
                hashes[h] = tenant
        return cls(tenants, hashes, limits)

    def who(self, key: str) -> Tenant | None:
        return self._by_hash.get(hash_key(key))


class Authenticator:
    """`required` off: everyone is let in, as nobody. On: a known key names the tenant."""

    def __init__(self, ring: KeyRing | None, required: bool):
        if required and ring is None:
            raise ValueError("auth is on (BR_AUTH) but no keys file is set (BR_KEYS_FILE)")
        self.ring, self.required = ring, required

    def caller(self, authorization: str | None) -> Tenant | None:
        """The tenant of the `authorization` header or metadata; a refusal is counted here,
        for both doors."""
        if not self.required:
            return None
        scheme, _, key = (authorization or "").strip().partition(" ")
        if not authorization:
            why = "an API key is required: send 'authorization: Bearer <key>'"
        elif scheme.lower() != "bearer" or not key.strip():
            why = "the authorization must be 'Bearer <key>'"
        else:
            tenant = self.ring.who(key.strip())
            if tenant is not None:
                return tenant
            why = "unknown API key"
        metrics.UNAUTHENTICATED.inc()
        raise Unauthenticated(why)

    @staticmethod
    def act_for(caller: Tenant | None, options) -> None:
        """Pin the request's tenant to the caller's; only an admin key acts for another."""
        if caller is None:
            return
        if options.tenant and options.tenant != caller.name and not caller.admin:
            raise PermissionDenied(f"this API key is tenant {caller.name!r}'s; it may not act for "
                                   f"tenant {options.tenant!r}")
        if not options.tenant:
            options.tenant = caller.name

    @staticmethod
    def require_admin(caller: Tenant | None) -> None:
        if caller is not None and not caller.admin:
            raise PermissionDenied(f"tenant {caller.name!r}'s key is not an admin key")


def main(argv=None) -> None:
    """`./run.sh keys add --tenant NAME --file keys.toml [--admin]`: mint a key, store its hash."""
    p = argparse.ArgumentParser(description=main.__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add", help="mint a key for a tenant; prints it once")
    add.add_argument("--tenant", required=True)
    add.add_argument("--file", type=Path, required=True)
    add.add_argument("--admin", action="store_true")
    args = p.parse_args(argv)
    if not TENANT.match(args.tenant):
        raise SystemExit(f"error: tenant {args.tenant!r} must match {TENANT.pattern}")
    doc = tomllib.loads(args.file.read_text()) if args.file.exists() else {}
    KeyRing.from_file(args.file) if args.file.exists() else None      # refuse to extend a broken file
    key = "br-" + secrets.token_urlsafe(32)
    entry = doc.setdefault("tenants", {}).setdefault(args.tenant, {})
    entry["keys"] = [*entry.get("keys", []), hash_key(key)]
    entry["admin"] = bool(entry.get("admin")) or args.admin
    text = args.file.read_text() if args.file.exists() else ""
    lines = [line for line in text.splitlines() if line.startswith("#")][:20] + [""]   # keep the file's header
    for name, t in doc["tenants"].items():
        lines += [f'[tenants."{name}"]', f"admin = {'true' if t.get('admin') else 'false'}",
                  *(f"{k} = {t[k]!r}" for k in ("rate_per_s", "burst", "budget_per_query") if k in t),
                  "keys = [" + ", ".join(f'"{h}"' for h in t.get("keys", [])) + "]", ""]
    args.file.write_text("\n".join(lines))
    print(key)


if __name__ == "__main__":
    main()
