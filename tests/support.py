"""Test helpers: start a real Tollway server process on loopback and drive its admin API."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml

NANOS = 1_000_000_000


# The offline provider's echo of 30 words cut to 20 tokens, and what it costs at the offline models' prices.
OFFLINE_ECHO = {
    "model": "tollway/offline-small",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "/echo " + " ".join(f"w{i}" for i in range(30))}],
}
OFFLINE_ECHO_NANOS = 36 * 1000 + 20 * 2000  # 36 prompt tokens at 1000 nano-USD, 20 completion tokens at 2000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nanos(usd: float | str | Decimal) -> int:
    """Exact nano-USD of a USD figure from the API (floats there are nanos / 1e9)."""
    return round(Decimal(str(usd)) * NANOS)


@dataclass
class Account:
    id: str
    key: str
    key_hash: str


@dataclass
class GatewayServer:
    base_url: str
    admin_token: str
    database_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def api(self) -> str:
        return self.base_url + "/api/v1"

    def admin(self, method: str, path: str, json: Any = None) -> httpx.Response:
        return httpx.request(
            method,
            self.api + "/admin" + path,
            json=json,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=30,
        )

    def new_account(self, credits_usd: str | None = "10", **key_options: Any) -> Account:
        email = f"user-{secrets.token_hex(4)}@example.com"
        account = self.admin("POST", "/accounts", {"email": email})
        assert account.status_code == 201, account.text
        account_id = account.json()["data"]["id"]
        if credits_usd is not None:
            grant = self.admin("POST", f"/accounts/{account_id}/credits", {"amount": credits_usd})
            assert grant.status_code == 201, grant.text
        return Account(account_id, *self.new_key(account_id, **key_options))

    def new_key(self, account_id: str, **options: Any) -> tuple[str, str]:
        created = self.admin("POST", f"/accounts/{account_id}/keys", {"name": "test key", **options})
        assert created.status_code == 201, created.text
        return created.json()["key"], created.json()["data"]["hash"]

    def balance(self, account_id: str) -> dict[str, Any]:
        response = self.admin("GET", f"/accounts/{account_id}/balance")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    def generation(self, key: str, generation_id: str) -> dict[str, Any]:
        """GET /generation's record, asked again for up to 10 s: it is written when the request settles."""
        deadline = time.monotonic() + 10
        while True:
            response = self.get("/generation", key, id=generation_id)
            if response.status_code == 200:
                data: dict[str, Any] = response.json()["data"]
                return data
            assert time.monotonic() < deadline, response.text
            time.sleep(0.05)

    def get(self, path: str, key: str, **params: Any) -> httpx.Response:
        return httpx.get(self.api + path, headers={"Authorization": f"Bearer {key}"}, params=params, timeout=30)

    def post(self, path: str, key: str, json: Any) -> httpx.Response:
        return httpx.post(self.api + path, headers={"Authorization": f"Bearer {key}"}, json=json, timeout=60)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def write_config(path: Path, upstream_base_url: str, extra: dict[str, Any] | None = None) -> Path:
    dead_port = free_port()  # nothing listens here: connections are refused
    config: dict[str, Any] = {
        "providers": [
            {"name": "fakeup", "kind": "openai", "base_url": upstream_base_url, "display_name": "FakeUp"},
            {"name": "deadup", "kind": "openai", "base_url": f"http://127.0.0.1:{dead_port}/v1"},
        ],
        "models": [
            {
                "id": "fake/chat",
                "name": "Fake Chat",
                "context_length": 8192,
                "max_completion_tokens": 1024,
                "endpoints": [
                    {
                        "provider": "fakeup",
                        "upstream_model": "fake-chat-1",
                        "pricing": {"prompt": "0.000001", "completion": "0.000002", "request": "0"},
                    }
                ],
            },
            {
                "id": "fake/embed",
                "name": "Fake Embeddings",
                "endpoints": [
                    {"provider": "fakeup", "upstream_model": "embed-1", "pricing": {"prompt": "0.0000001"}},
                ],
            },
            {
                "id": "fake/failover",
                "name": "Fake Failover",
                "endpoints": [
                    {
                        "provider": "deadup",
                        "upstream_model": "dead-1",
                        "pricing": {"prompt": "0.0000005", "completion": "0.000001"},
                    },
                    {
                        "provider": "fakeup",
                        "upstream_model": "fake-chat-1",
                        "pricing": {"prompt": "0.000001", "completion": "0.000002"},
                    },
                ],
            },
        ],
    }
    config.update(extra or {})
    path.write_text(yaml.safe_dump(config))
    return path


def provider_kinds(
    openai_base_url: str, anthropic_base_url: str, gemini_base_url: str, pricing: dict[str, str]
) -> dict[str, Any]:
    """Config with one provider of each kind (oa: OpenAI-compatible, cl: Anthropic, gm: Gemini), each serving
    a model `kinds/<name>` at `pricing`."""
    return {
        "providers": [
            {"name": "oa", "kind": "openai", "base_url": openai_base_url, "display_name": "OA"},
            {"name": "cl", "kind": "anthropic", "base_url": anthropic_base_url, "display_name": "CL"},
            {"name": "gm", "kind": "gemini", "base_url": gemini_base_url, "display_name": "GM"},
        ],
        "models": [
            {
                "id": f"kinds/{name}",
                "endpoints": [{"provider": name, "upstream_model": f"{name}-1", "pricing": pricing}],
            }
            for name in ("oa", "cl", "gm")
        ],
    }


def start_gateway(
    database_url: str,
    config_path: Path | None,
    log_dir: Path,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> GatewayServer:
    port = port or free_port()
    token = secrets.token_hex(16)
    log_path = log_dir / f"gateway-{port}.log"
    command = [sys.executable, "-m", "tollway", "serve", "--port", str(port), "--database-url", database_url]
    if config_path is not None:
        command += ["--config", str(config_path)]
    full_env = {
        **os.environ,
        "TOLLWAY_ADMIN_TOKEN": token,
        "TOLLWAY_LEDGER_POLL_INTERVAL_SECONDS": "0.1",
        **(env or {}),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    server = GatewayServer(f"http://127.0.0.1:{port}", token, database_url, process, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(server.base_url + "/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"gateway did not start:\n{log_path.read_text()}")


def start_sqlite_gateway(
    directory: Path, upstream_base_url: str, extra: dict[str, Any] | None = None, *, env: dict[str, str] | None = None
) -> GatewayServer:
    """A gateway on a new SQLite database in `directory`, configured by write_config (with `extra`)."""
    config = write_config(directory / "config.yaml", upstream_base_url, extra)
    return start_gateway(f"sqlite:///{directory / 'tollway.db'}", config, directory, env=env)


def run_cli(
    *args: str, database_url: str, check: bool = True, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`tollway ARGS --database-url URL` in a subprocess; `env` is added to this process's environment."""
    result = subprocess.run(
        [sys.executable, "-m", "tollway", *args, "--database-url", database_url],
        env=None if env is None else {**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"tollway {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def client_from(address: str) -> httpx.Client:
    """A client whose requests come from `address` (any 127.x.y.z): one client among many, for per-address limits."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def bogus_key(n: int) -> str:
    """A well-formed API key no account has."""
    return f"sk-tw-v1-{'0' * 40}{n:024d}"
