"""An ``its-faust api`` child process against a broker: what the demo, the tests and the fan-out benchmark start."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time

import httpx

from its_faust.broker import free_port


def check_can_listen(host: str, port: int) -> None:
    """One line before the API starts, for whatever would stop it listening: uvicorn printed the dashboard's
    address, then its own error, and exited 3."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ValueError(f"cannot listen on {host}: the host name does not resolve ({exc.strerror}); give "
                         "--host an address of this machine (127.0.0.1, 0.0.0.0 for every interface)") from None
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: only a listener is in the way
        try:
            s.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ValueError(f"port {port} on {host} is in use: give the dashboard another one with --port N") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ValueError(f"cannot listen on {host}: it is not an address of this machine (give --host one "
                                 "that is: 127.0.0.1, 0.0.0.0 for every interface)") from None
            raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


class ApiProcess:
    def __init__(self, broker_url: str, log_path, port: int | None = None, **settings: str):
        self.broker_url = broker_url
        self.log_path = log_path
        self.port = port or free_port()
        self.env = {**os.environ, "ITS_FAUST_BROKER_URL": broker_url,
                    **{f"ITS_FAUST_API__{k.upper()}": str(v) for k, v in settings.items()}}
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ApiProcess":
        with open(self.log_path, "ab") as log:  # the child writes to its own copy of the handle
            self.process = subprocess.Popen([sys.executable, "-m", "its_faust.cli", "api", "--port", str(self.port)],
                                            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"api exited with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.base}/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()  # not left running behind the error
        raise TimeoutError(f"api not up after 60 s; see {self.log_path}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def restart(self) -> "ApiProcess":
        self.stop()
        return self.start()

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.process.pid).memory_info().rss / 2**20
