"""`PolicyClient` against the live server: act / act_batch / metadata, episodes, errors, and which failures are
retried (replayable requests) or raised at once (requests that record a step or end an episode)."""

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


# ---- episodes (issue #12): the calls a robot makes, and the rule that nothing recorded is sent twice ----------

@pytest.fixture(scope="module")
def episode_url(checkpoint_dirs, tmp_path_factory):
    from tests.serving._robot_server import episode_server

    with episode_server(*checkpoint_dirs, tmp_path_factory.mktemp("episodes")) as url:
        yield url


def test_an_episode_is_recorded_step_by_step_and_stored_once(episode_url):
    with PolicyClient(episode_url) as client:
        episode = client.start_episode(INSTRUCTION, unnorm_key="default", metadata={"robot": "test"})
        answers = [client.act_info(scene(t, 32), INSTRUCTION, "default", episode_id=episode, proprio=[0.1] * 7)
                   for t in range(3)]
        assert [a["step"] for a in answers] == [0, 1, 2]
        assert all(a["policy_version"] == 0 for a in answers)
        stored = client.end_episode(episode, success=True, final_image=scene(9, 32), final_proprio=[0.2] * 7)
        assert stored == {"episode_id": episode, "steps": 3, "stored": True}
        pair = [client.start_episode(INSTRUCTION, unnorm_key="default") for _ in range(2)]
        for _ in range(2):                                 # batch rows of two episodes
            client.act_batch([scene(5, 32), scene(6, 32)], INSTRUCTION, "default", episode_ids=pair,
                             proprio=np.zeros((2, 7)))
        assert [client.end_episode(e, rewards=[-1.0, -1.0])["steps"] for e in pair] == [2, 2]
        with pytest.raises(PolicyServerError, match="already been ended") as twice:
            client.end_episode(episode, success=False)
        assert twice.value.status == 409 and "already been ended" in twice.value.message
        with pytest.raises(PolicyServerError) as unknown:
            client.end_episode("no-such-episode", success=True)
        assert unknown.value.status == 404
        uploaded = client.upload_episode(INSTRUCTION, [scene(20, 32), scene(21, 32)], np.zeros((2, 7)),
                                         rewards=[-1.0, 0.0], proprio=np.zeros((2, 7)), unnorm_key="default")
        assert uploaded["steps"] == 2 and uploaded["stored"] is True
        table = client.episodes()
        ids = {row["episode_id"]: row for row in table["episodes"]}
        assert ids[episode]["steps"] == 3 and ids[episode]["success"] is True
        assert ids[uploaded["episode_id"]]["steps"] == 2
        with pytest.raises(ValueError, match="success=True/False or rewards"):
            client.end_episode(episode)                    # checked before anything is sent
        with pytest.raises(PolicyServerError, match="--policy-updates") as reload:
            client.reload()                                # this server takes no policy updates
        assert reload.value.status == 404


def test_a_recorded_step_is_not_sent_again_after_a_server_failure(episode_url):
    """The same 500 (non-finite actions from corrupt statistics) is retried outside an episode (the model sees
    every attempt, test_server_errors_are_retried_then_reported) but raised at once inside one."""
    rows = lambda: requests.get(episode_url + "/health", timeout=10).json()["batching"]["rows"]  # noqa: E731
    with PolicyClient(episode_url, retries=3, backoff=0.01) as client:
        episode = client.start_episode(INSTRUCTION, unnorm_key="corrupt")
        before = rows()
        with pytest.raises(PolicyServerError, match="not sent again") as info:
            client.act(scene(0, 32), INSTRUCTION, "corrupt", episode_id=episode, proprio=[0.0] * 7)
        assert info.value.status == 500 and rows() - before == 1


def test_a_refused_episode_start_is_retried_then_reported(checkpoint_dirs, tmp_path):
    """429 (too many open episodes) means the server applied nothing, so even a state-changing call retries."""
    from tests.serving._robot_server import episode_server

    with episode_server(*checkpoint_dirs, tmp_path / "eps", max_open_episodes=1) as url:
        with PolicyClient(url, retries=2, backoff=0.01) as client:
            client.start_episode(INSTRUCTION, unnorm_key="default")                # the limit: 1
            with pytest.raises(PolicyServerError, match=r"after 3 attempt.*HTTP 429.*max-open-episodes") as info:
                client.start_episode(INSTRUCTION, unnorm_key="default")
            assert info.value.status == 429


class _CuttingServer:
    """A TCP server that reads each request and closes the connection without answering (a crash after the
    request arrived), counting the requests."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                self.requests += 1

    def close(self) -> None:
        self.sock.close()


def test_a_cut_connection_is_retried_only_for_requests_that_record_nothing():
    server = _CuttingServer()
    try:
        with PolicyClient(server.url, retries=2, backoff=0.01, timeout=5) as client:
            with pytest.raises(PolicyServerError, match="after 3 attempt"):
                client.act(scene(0, 16), INSTRUCTION)                       # no episode: replayable
            assert server.requests == 3
            for call in (lambda: client.act(scene(0, 16), INSTRUCTION, episode_id="e1"),
                         lambda: client.start_episode(INSTRUCTION),
                         lambda: client.end_episode("e1", success=True)):
                before = server.requests
                with pytest.raises(PolicyServerError, match="may have applied it") as info:
                    call()
                assert server.requests - before == 1 and info.value.status is None
    finally:
        server.close()


def test_an_episode_start_is_retried_until_the_server_is_up(checkpoint_dirs, tmp_path):
    """Connecting failed: nothing reached the server, so a state-changing call may be sent again."""
    from tests.serving._robot_server import episode_server

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with PolicyClient(url, retries=0, timeout=2) as client:
        with pytest.raises(PolicyServerError, match="after 1 attempt.*ConnectionError"):
            client.start_episode(INSTRUCTION)
    result: dict = {}

    def robot() -> None:
        with PolicyClient(url, retries=40, backoff=0.05, max_backoff=0.1, timeout=10) as client:
            result["episode"] = client.start_episode(INSTRUCTION, unnorm_key="default")

    thread = threading.Thread(target=robot)
    thread.start()
    from serving.app import ServerConfig, ServerThread, create_app
    from serving.engine import PolicyEngine

    time.sleep(0.3)
    app = create_app(PolicyEngine.load(*checkpoint_dirs), ServerConfig(episodes_dir=str(tmp_path / "eps")))
    with ServerThread(app, port=port):
        thread.join(timeout=30)
        assert result["episode"]
        assert requests.get(url + "/v1/episodes", timeout=10).json()["open"] == 1


def test_a_label_typed_after_the_server_closed_the_idle_connection_still_ends_the_episode(checkpoint_dirs, tmp_path):
    """The operator answers y/n after the server's keep-alive ran out: the (not replayable) end call goes out on a
    fresh connection instead of failing on the closed one."""
    from tests.serving._robot_server import episode_server

    with episode_server(*checkpoint_dirs, tmp_path / "eps", timeout_keep_alive=0.2) as url:
        with PolicyClient(url, retries=0) as client:
            episode = client.start_episode(INSTRUCTION, unnorm_key="default")
            client.act(scene(3, 32), INSTRUCTION, "default", episode_id=episode, proprio=[0.0] * 7)
            time.sleep(0.6)                                # the server closes the idle kept-alive connection
            assert client.end_episode(episode, success=True)["stored"] is True


def test_a_url_that_is_no_policy_server_is_named_in_the_error():
    import http.server

    with pytest.raises(ValueError, match="must start with http:// or https://"):
        PolicyClient("127.0.0.1:8000")

    class WebPage(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>router login</html>")

        def log_message(self, *args) -> None:
            pass

    page = http.server.HTTPServer(("127.0.0.1", 0), WebPage)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    try:
        with PolicyClient(f"http://127.0.0.1:{page.server_address[1]}") as client:
            with pytest.raises(PolicyServerError, match="non-JSON answer.*a vla-parl policy server"):
                client.metadata()
    finally:
        page.shutdown()
        page.server_close()
