"""Test-wide guards: no network, the CPU (or ``$EXPLAINERS_TEST_DEVICE``), a private torch cache.

``EXPLAINERS_TEST_DEVICE=cuda pytest tests/models tests/widgets`` runs the live models of those
tests on a GPU (as the device check of issue 15 does); by default every test runs on the CPU.
"""
import os
import socket

import pytest


@pytest.fixture(autouse=True)
def _offline_cpu_private_cache(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("EXPLAINERS_OFFLINE", "1")
    monkeypatch.setenv("EXPLAINERS_DEVICE", os.environ.get("EXPLAINERS_TEST_DEVICE", "cpu"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    for k in ("EXPLAINERS_WEIGHTS_SEGMENTATION", "EXPLAINERS_WEIGHTS_DETECTION", "EXPLAINERS_WEIGHTS_INSTANCE"):
        monkeypatch.delenv(k, raising=False)

    real_connect = socket.socket.connect

    def loopback_only(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("/"):
            raise AssertionError(f"a test tried to reach the network: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    yield
