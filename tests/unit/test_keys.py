"""The keys file: hashes only, named mistakes, and the `keys add` command."""
from __future__ import annotations

import pytest

from router_svc import auth
from router_svc.errors import PermissionDenied, Unauthenticated
from proto import router_pb2

H = "sha256:" + "ab" * 32


@pytest.mark.parametrize("toml, message", [
    ('[tenants.acme]\nkeys = ["br-plain-key"]', "never the keys themselves"),
    (f'[tenants.acme]\nkeys = ["{H}"]\n[tenants.globex]\nkeys = ["{H}"]', "listed for 'acme' and 'globex'"),
    ('[tenants."a b"]\nkeys = []', "must match"),
    ("[tenants", "keys file"),
])
def test_bad_keys_files_are_named(tmp_path, toml, message):
    path = tmp_path / "keys.toml"
    path.write_text(toml)
    with pytest.raises(ValueError, match=message):
        auth.KeyRing.from_file(path)


def test_minted_keys_authenticate_and_pin_the_tenant(tmp_path, capsys):
    path = tmp_path / "keys.toml"
    auth.main(["add", "--tenant", "acme", "--file", str(path)])
    key = capsys.readouterr().out.strip()
    auth.main(["add", "--tenant", "acme", "--file", str(path)])          # a second key, same tenant
    second = capsys.readouterr().out.strip()
    ring = auth.KeyRing.from_file(path)
    gate = auth.Authenticator(ring, required=True)
    assert gate.caller(f"Bearer {key}") == gate.caller(f"bearer  {second}") == auth.Tenant("acme")
    with pytest.raises(Unauthenticated):
        gate.caller(None)
    options = router_pb2.RouteOptions()
    auth.Authenticator.act_for(gate.caller(f"Bearer {key}"), options)
    assert options.tenant == "acme"
    with pytest.raises(PermissionDenied):
        auth.Authenticator.act_for(auth.Tenant("acme"), router_pb2.RouteOptions(tenant="globex"))
    assert auth.Authenticator(None, required=False).caller(None) is None
    with pytest.raises(ValueError, match="no keys file"):
        auth.Authenticator(None, required=True)
    path.write_text("[tenants")
    with pytest.raises(ValueError):
        auth.main(["add", "--tenant", "acme", "--file", str(path)])      # never extends a broken file


def test_limits_ride_in_the_keys_file_and_bad_ones_are_named(tmp_path, capsys):
    path = tmp_path / "keys.toml"
    path.write_text('[tenants.acme]\nrate_per_s = 5\nburst = 10\nbudget_per_query = 0.002\nkeys = []\n')
    auth.main(["add", "--tenant", "acme", "--file", str(path)])     # minting keeps the limits
    capsys.readouterr()
    ring = auth.KeyRing.from_file(path)
    assert ring.limits["acme"] == auth.Limits(rate_per_s=5, burst=10, budget_per_query=0.002)
    assert len(ring._by_hash) == 1
    for bad, message in (("rate_per_s = -1", "rate_per_s must be a number > 0"), ("burst = 3", "burst needs rate_per_s"),
                         ("budget = 1", "unknown limit")):
        path.write_text(f"[tenants.acme]\n{bad}\nkeys = []\n")
        with pytest.raises(ValueError, match=message):
            auth.KeyRing.from_file(path)
