"""TLS on both doors from PEM files the test makes with openssl (a throwaway CA, a server
certificate for 127.0.0.1, a client certificate): TLS works, plaintext is refused, and with
a client CA (mutual TLS) a client without a certificate is refused too."""
from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import aiohttp
import grpc
import pytest

from common.experts import ExpertCatalog
from common.settings import RouterSettings
from proto import router_pb2, router_pb2_grpc
from router_svc.app import RouterApp
from stack.experts_file import write_catalog
from tests.helpers import bounded


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=bandit-router test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "1", "-extfile", "san.ext", cwd=d)
    return d


async def start(stack, prefix, embedder, two_kind_data, tmp_path, pki, mutual: bool) -> RouterApp:
    catalog = ExpertCatalog.from_file(write_catalog(tmp_path / "experts.toml", {
        "mathbot": {"backend": "replay", "premium": True, "options": {"data": str(two_kind_data)}}}))
    settings = RouterSettings(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, topic_prefix=prefix,
                              port=0, http_port=0, tls_cert_file=pki / "server.pem", tls_key_file=pki / "server.key",
                              tls_client_ca_file=pki / "ca.pem" if mutual else None)
    return await RouterApp(settings, catalog, embedder=embedder).start()


def client_ssl(pki: Path, with_certificate: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if with_certificate:
        ctx.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    return ctx


async def test_tls_on_both_doors_and_plaintext_refused(stack, prefix, embedder, two_kind_data, tmp_path, pki):
    router = await start(stack, prefix, embedder, two_kind_data, tmp_path, pki, mutual=False)
    try:
        target = f"127.0.0.1:{router.port}"
        creds = grpc.ssl_channel_credentials(root_certificates=(pki / "ca.pem").read_bytes())
        async with grpc.aio.secure_channel(target, creds) as channel:
            d = await router_pb2_grpc.RouterStub(channel).Decide(router_pb2.DecideRequest(query="hi"), timeout=30)
            assert d.expert == "mathbot"
        async with grpc.aio.insecure_channel(target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await router_pb2_grpc.RouterStub(channel).Decide(router_pb2.DecideRequest(query="hi"), timeout=5)
            assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"https://127.0.0.1:{router.http_port}/healthz",
                                   ssl=client_ssl(pki, False)) as resp:
                assert resp.status == 200
            with pytest.raises(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{router.http_port}/healthz") as resp:
                    await resp.read()
    finally:
        await bounded(router.stop(grace=1), 60, "stopping the router")


async def test_mutual_tls_refuses_a_client_without_a_certificate(stack, prefix, embedder, two_kind_data, tmp_path, pki):
    router = await start(stack, prefix, embedder, two_kind_data, tmp_path, pki, mutual=True)
    try:
        target, ca = f"127.0.0.1:{router.port}", (pki / "ca.pem").read_bytes()
        with_cert = grpc.ssl_channel_credentials(ca, (pki / "client.key").read_bytes(), (pki / "client.pem").read_bytes())
        async with grpc.aio.secure_channel(target, with_cert) as channel:
            await router_pb2_grpc.RouterStub(channel).Decide(router_pb2.DecideRequest(query="hi"), timeout=30)
        async with grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(ca)) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await router_pb2_grpc.RouterStub(channel).Decide(router_pb2.DecideRequest(query="hi"), timeout=5)
            assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        async with aiohttp.ClientSession() as session:
            url = f"https://127.0.0.1:{router.http_port}/healthz"
            async with session.get(url, ssl=client_ssl(pki, True)) as resp:
                assert resp.status == 200
            with pytest.raises(aiohttp.ClientError):
                async with session.get(url, ssl=client_ssl(pki, False)) as resp:
                    await resp.read()
    finally:
        await bounded(router.stop(grace=1), 60, "stopping the router")
