"""`PolicyClient` against the live server: act / act_batch / metadata, errors, retries with backoff."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
import requests

from serving.client import PolicyClient, PolicyServerError
from tests.serving._helpers import INSTRUCTION, scene


def test_act_and_act_batch_match_predict_action(server_url, reference_model):
    with PolicyClient(server_url) as client:
        assert client.health()["status"] == "ok"
        assert client.metadata()["action_dim"] == 7
        image = scene(40, 64)
        action = client.act(image, INSTRUCTION, unnorm_key="bridge_orig")
        np.testing.assert_array_equal(action, reference_model.predict_action(image, INSTRUCTION, "bridge_orig"))
        images = [scene(41, 32), scene(42, 48)]
        actions = client.act_batch(images, INSTRUCTION, unnorm_key="default")
        assert actions.shape == (2, 7)
        np.testing.assert_allclose(actions, reference_model.predict_action(images, INSTRUCTION, "default"), atol=1e-12)
        info = client.act_info(image, INSTRUCTION, unnorm_key="default", mode="refined", num_samples=4, steps=2)
        assert info["q"] >= info["greedy_q"] - 1e-6 and info["timing"]["total_ms"] > 0


def test_client_errors_are_not_retried(server_url):
    with PolicyClient(server_url, retries=3, backoff=1.0) as client:
        start = time.perf_counter()
        with pytest.raises(PolicyServerError, match="HTTP 422.*Available keys") as info:
            client.act(scene(0, 16), INSTRUCTION)          # no unnorm_key on a multi-dataset model
        assert info.value.status == 422
        assert time.perf_counter() - start < 0.9          # no backoff sleep happened


def test_server_errors_are_retried_then_reported(server_url):
    rows = lambda: requests.get(server_url + "/health", timeout=10).json()["batching"]["rows"]  # noqa: E731
    before = rows()
    with PolicyClient(server_url, retries=2, backoff=0.05) as client:
        with pytest.raises(PolicyServerError, match="after 3 attempt.*non-finite") as info:
            client.act(scene(0, 16), INSTRUCTION, unnorm_key="corrupt")
    assert info.value.status == 500
    assert rows() - before == 3                             # the model saw all three attempts


def test_connection_errors_are_retried_until_the_server_is_up(engine):
    from serving.app import ServerConfig, ServerThread, create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ServerThread(create_app(engine, ServerConfig()), port=port)
    starter = threading.Timer(0.4, server.start)
    starter.start()
    try:
        with PolicyClient(f"http://127.0.0.1:{port}", retries=6, backoff=0.1, timeout=10) as client:
            assert client.health()["status"] == "ok"
    finally:
        starter.join()
        server.stop()
    with PolicyClient(f"http://127.0.0.1:{port}", retries=1, backoff=0.01, timeout=2) as client:
        with pytest.raises(PolicyServerError, match="after 2 attempt"):
            client.health()
