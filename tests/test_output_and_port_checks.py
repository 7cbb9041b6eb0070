"""The checks made before a command's work starts: an output file that cannot be written, an API port in use."""

from __future__ import annotations

import os
import socket

import pytest

from api.process import check_can_listen
from its_faust.cli import _check_writable


def _deny_writes_to(monkeypatch, denied):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(denied) else real_access(p, mode))


def test_an_existing_file_is_rewritten_even_in_a_folder_that_takes_no_new_files(tmp_path, monkeypatch):
    summary = tmp_path / "summary.json"
    summary.write_text("{}")
    _deny_writes_to(monkeypatch, tmp_path)  # (os.access, not chmod: these tests may run as root)
    _check_writable(summary)
    with pytest.raises(ValueError, match="cannot write .*new.json: permission denied"):
        _check_writable(tmp_path / "new.json")


def test_a_read_only_file_and_a_folder_are_refused(tmp_path, monkeypatch):
    summary = tmp_path / "summary.json"
    summary.write_text("{}")
    _deny_writes_to(monkeypatch, summary)
    with pytest.raises(ValueError, match="permission denied"):
        _check_writable(summary)
    with pytest.raises(ValueError, match="it is a folder"):
        _check_writable(tmp_path)


def test_a_missing_folder_is_created(tmp_path):
    _check_writable(tmp_path / "out" / "summary.json")
    assert (tmp_path / "out").is_dir()


def test_a_port_with_a_listener_is_reported_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=rf"port {port} on localhost is in use"):
            check_can_listen("localhost", port)


@pytest.mark.parametrize("host, reason", [("no-such-host.invalid", "the host name does not resolve"),
                                          ("192.0.2.1", "it is not an address of this machine")])
def test_other_trouble_listening_is_one_line_too(host, reason):
    """uvicorn printed the dashboard's address, then its own error, and exited 3."""
    with pytest.raises(ValueError, match=f"cannot listen on {host}: {reason}"):
        check_can_listen(host, 8000)
    assert check_can_listen("127.0.0.1", 0) is None
