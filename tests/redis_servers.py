"""Redis servers for the tests, from the system's ``redis-server`` on free loopback ports.

``standalone()`` and ``cluster()`` (three primaries, made with ``redis-cli --cluster
create``) start once per test session and stop when it ends; ``start_server`` makes one a
test owns (to kill it, restart it from its AOF, ...). Nothing here talks to any other
Redis.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
HOST = "127.0.0.1"


def missing() -> str | None:
    """Why the Redis tests cannot run here, if they cannot."""
    if REDIS_SERVER is None or REDIS_CLI is None:
        return "redis-server and redis-cli are not installed (apt-get install redis-server)"
    return None


def free_port(cluster_bus: bool = False) -> int:
    """A free port (for a cluster node, one whose bus port, +10000, is free too)."""
    while True:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if not cluster_bus:
            return port
        if port + 10000 < 65536:
            with socket.socket() as sock, contextlib.suppress(OSError):
                sock.bind((HOST, port + 10000))
                return port


@dataclass
class RedisServer:
    port: int
    workdir: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, socket_timeout=5)

    def start(self, timeout: float = 20.0) -> RedisServer:
        assert REDIS_SERVER is not None
        log = (self.workdir / f"redis-{self.port}.log").open("ab")
        self.proc = subprocess.Popen([REDIS_SERVER, *self.args], cwd=self.workdir,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {self.log()}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer: {self.log()}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last fsync — a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        path = self.workdir / f"redis-{self.port}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def start_server(workdir: Path, *extra: str, port: int | None = None) -> RedisServer:
    """A redis-server of the caller's (no persistence unless ``extra`` asks for it)."""
    port = port or free_port()
    args = ["--port", str(port), "--bind", HOST, "--dir", str(workdir), "--save", "",
            "--appendonly", "no", *extra]
    return RedisServer(port, workdir, args).start()


@dataclass
class ClusterServers:
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{n.port}" for n in self.nodes)

    def flush(self) -> None:
        for node in self.nodes:
            node.client().flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(workdir: Path, primaries: int = 3) -> ClusterServers:
    assert REDIS_CLI is not None
    found = ClusterServers()
    for _ in range(primaries):
        port = free_port(cluster_bus=True)
        found.nodes.append(start_server(
            workdir, "--cluster-enabled", "yes", "--cluster-config-file",
            f"nodes-{port}.conf", "--cluster-node-timeout", "5000", port=port))
    subprocess.run([REDIS_CLI, "--cluster", "create",
                    *(f"{HOST}:{n.port}" for n in found.nodes),
                    "--cluster-replicas", "0", "--cluster-yes"],
                   check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + 30
    while not all(b"cluster_state:ok" in n.client().execute_command("CLUSTER", "INFO")
                  for n in found.nodes):
        if time.monotonic() > deadline:
            raise RuntimeError("the cluster did not come up")
        time.sleep(0.05)
    return found


_shared: dict[str, RedisServer | ClusterServers] = {}


def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="otpgate-redis-"))


def standalone() -> RedisServer:
    """The session's single Redis server, flushed."""
    server = _shared.get("standalone")
    if not isinstance(server, RedisServer):
        server = _shared["standalone"] = start_server(_workdir())
    server.client().flushall()
    return server


def cluster() -> ClusterServers:
    """The session's three-primary Redis Cluster, flushed."""
    servers = _shared.get("cluster")
    if not isinstance(servers, ClusterServers):
        servers = _shared["cluster"] = start_cluster(_workdir())
    servers.flush()
    return servers


@atexit.register
def _stop_shared() -> None:
    for server in _shared.values():
        server.stop()
        nodes = server.nodes if isinstance(server, ClusterServers) else [server]
        for node in nodes:
            shutil.rmtree(node.workdir, ignore_errors=True)
