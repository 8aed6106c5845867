"""Episode sessions over real uvicorn: recorded through /v1/act, ended or uploaded, read back from the replay store."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests

from tests.serving._helpers import INSTRUCTION, scene
from vla_parl.data import ReplayBuffer

KEY = "bridge_orig"        # scaled statistics: normalised and robot-unit actions differ


def _post(url: str, path: str, body: dict | None = None, **kwargs) -> requests.Response:
    return requests.post(url + path, json=body if body is not None else {}, timeout=60, **kwargs)


def _start(url: str, **body) -> str:
    response = _post(url, "/v1/episodes", {"instruction": INSTRUCTION, "unnorm_key": KEY, **body})
    assert response.status_code == 200, response.text
    return response.json()["episode_id"]


def _act(url: str, episode_id: str, seed: int, size: int = 32, **extra) -> requests.Response:
    """An act row in `episode_id` (with a 3-entry proprio unless `extra` says otherwise: every episode of one
    replay store has the same observation keys)."""
    return _post(url, "/v1/act", {"image": scene(seed, size).tolist(), "instruction": INSTRUCTION,
                                  "episode_id": episode_id, **{"proprio": [0.0, 1.0, 2.0], **extra}})


def _stored(root, episode_id: str) -> dict:
    """The replay-store episode the server recorded as `episode_id`, read as the learner reads it."""
    with ReplayBuffer(root, readonly=True) as buffer:
        for eid in buffer.episode_ids:
            episode = buffer.episode(eid)
            if episode["meta"]["info"]["server_episode_id"] == episode_id:
                return {"obs": {k: np.array(v) for k, v in episode["obs"].items()},
                        "action": np.array(episode["action"]), "reward": np.array(episode["reward"]),
                        "mc_return": np.array(episode["mc_return"]), "meta": episode["meta"]}
    raise AssertionError(f"episode {episode_id} is not in the store")


def _error(response: requests.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["message"]
    for word in words:
        assert word in message, message


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("episodes") / "store"


@pytest.fixture(scope="module")
def url(engine, store_dir):
    from serving.app import ServerConfig, ServerThread, create_app

    with ServerThread(create_app(engine, ServerConfig(episodes_dir=str(store_dir), max_batch_size=4))) as base:
        yield base


@pytest.fixture(scope="module")
def limited_url(engine, tmp_path_factory):
    from serving.app import ServerConfig, ServerThread, create_app

    config = ServerConfig(episodes_dir=str(tmp_path_factory.mktemp("limited") / "store"), max_open_episodes=2,
                          max_episode_steps=2, episode_timeout=1.0, api_key="ep-key")
    with ServerThread(create_app(engine, config)) as base:
        yield base


def test_an_episode_recorded_through_act_is_stored_normalised_with_sparse_rewards(url, store_dir, engine):
    episode_id = _start(url, metadata={"robot": "widowx", "operator": 3})
    answers = []
    for t in range(2):
        response = _act(url, episode_id, t, proprio=[0.1 * t, 1.0, -2.0])
        assert response.status_code == 200, response.text
        answers.append(response.json())
    batch = _post(url, "/v1/act/batch", {"requests": [
        {"image": scene(2, 32).tolist(), "instruction": INSTRUCTION, "episode_id": episode_id,
         "proprio": [0.2, 1.0, -2.0]},
        {"image": scene(9, 40).tolist(), "instruction": "another robot", "unnorm_key": "default"}]})
    assert batch.status_code == 200, batch.text
    answers.append(batch.json()["results"][0])
    assert batch.json()["results"][1]["step"] is None and batch.json()["results"][1]["policy_version"] == 0
    assert [a["step"] for a in answers] == [0, 1, 2] and all(a["policy_version"] == 0 for a in answers)
    assert all(a["unnorm_key"] == KEY for a in answers)     # the episode's key: the rows named none

    end = _post(url, f"/v1/episodes/{episode_id}/end", {"success": True, "final_image": scene(3, 32).tolist(),
                                                       "final_proprio": [0.3, 1.0, -2.0]})
    assert end.status_code == 200, end.text
    assert end.json() == {"episode_id": episode_id, "steps": 3, "stored": True}

    stored = _stored(store_dir, episode_id)
    np.testing.assert_array_equal(stored["obs"]["image"], np.stack([scene(s, 32) for s in (0, 1, 2, 3)]))
    np.testing.assert_allclose(stored["obs"]["proprio"], [[0.1 * t, 1.0, -2.0] for t in range(4)], rtol=1e-6)
    served = np.array([a["action"] for a in answers])
    normalizer = engine.model.action_normalizer(KEY)
    assert np.abs(stored["action"]).max() <= 1.0 and not np.allclose(stored["action"][:, :6], served[:, :6])
    np.testing.assert_allclose(normalizer.unnormalize(stored["action"]), served, atol=1e-6)
    np.testing.assert_array_equal(stored["reward"], [-1.0, -1.0, 0.0])
    # a success: the plain sum, γ = 0.99: G2 = 0, G1 = −1, G0 = −1 + 0.99·(−1) = −1.99
    np.testing.assert_allclose(stored["mc_return"], [-1.99, -1.0, 0.0], rtol=1e-6)
    meta = stored["meta"]
    assert meta["terminal"] and meta["instruction"] == INSTRUCTION and meta["num_obs"] == 4
    assert meta["info"] == {"server_episode_id": episode_id, "policy_versions": [0, 0, 0],
                            "served_actions": served.tolist(), "executed_steps": [], "success": True,
                            "unnorm_key": KEY, "metadata": {"robot": "widowx", "operator": 3}, "source": "act"}


def test_given_rewards_and_executed_actions_replace_the_sparse_rewards_and_served_actions(url, store_dir, engine):
    episode_id = _start(url)
    served = [_act(url, episode_id, 10 + t).json()["action"] for t in range(3)]
    executed = [list(served[0]), [0.01, -0.02, 0.0, 0.1, 0.0, -0.1, 1.0], list(served[2])]
    end = _post(url, f"/v1/episodes/{episode_id}/end", {"rewards": [0.0, 0.5, 1.0], "executed_actions": executed})
    assert end.status_code == 200, end.text
    stored = _stored(store_dir, episode_id)
    np.testing.assert_allclose(stored["action"], engine.model.action_normalizer(KEY).normalize(np.array(executed)),
                               atol=1e-6)
    np.testing.assert_array_equal(stored["reward"], [0.0, 0.5, 1.0])
    assert not stored["meta"]["terminal"]        # no success label: a time-limit end, bootstrapped
    # the robot's own rewards, not all −1: the plain sum, G2 = 1, G1 = 0.5 + 0.99 = 1.49, G0 = 0.99·1.49 = 1.4751
    np.testing.assert_allclose(stored["mc_return"], [1.4751, 1.49, 1.0], rtol=1e-6)
    info = stored["meta"]["info"]
    assert info["executed_steps"] == [1] and info["served_actions"] == served and info["success"] is None
    assert stored["obs"]["image"].shape == (3, 32, 32, 3) and stored["obs"]["proprio"].shape == (3, 3)


def test_a_failed_episode_gets_minus_one_everywhere_and_an_upload_is_stored_as_given(url, store_dir, engine):
    failed = _start(url)
    _act(url, failed, 20)
    assert _post(url, f"/v1/episodes/{failed}/end", {"success": False}).status_code == 200
    assert _stored(store_dir, failed)["reward"].tolist() == [-1.0]
    # Cal-QL's real-robot rule: a never-successful episode is worth −1/(1 − 0.99) = −100 at every step
    np.testing.assert_allclose(_stored(store_dir, failed)["mc_return"], [-100.0], rtol=1e-5)

    actions = [[0.01 * t, 0.0, -0.01, 0.05, 0.0, 0.0, float(t % 2)] for t in range(3)]
    upload = _post(url, "/v1/episodes/upload", {
        "instruction": INSTRUCTION, "unnorm_key": KEY, "images": [scene(30 + t, 32).tolist() for t in range(3)],
        "actions": actions, "proprio": [[0.0, 1.0, float(t)] for t in range(3)], "success": True,
        "metadata": {"source": "teleop"}})
    assert upload.status_code == 200, upload.text
    assert upload.json()["steps"] == 3 and upload.json()["stored"] is True
    stored = _stored(store_dir, upload.json()["episode_id"])
    np.testing.assert_array_equal(stored["obs"]["image"], np.stack([scene(30 + t, 32) for t in range(3)]))
    np.testing.assert_allclose(engine.model.action_normalizer(KEY).unnormalize(stored["action"]), actions, atol=1e-6)
    np.testing.assert_array_equal(stored["reward"], [-1.0, -1.0, 0.0])
    np.testing.assert_array_equal(stored["obs"]["proprio"][:, 2], [0.0, 1.0, 2.0])
    assert stored["meta"]["info"]["source"] == "upload" and stored["meta"]["info"]["metadata"] == {"source": "teleop"}

    listing = requests.get(url + "/v1/episodes", timeout=10).json()
    by_id = {e["episode_id"]: e for e in listing["episodes"]}
    assert by_id[failed] == {"episode_id": failed, "steps": 1, "success": False, "policy_version": 0}
    assert by_id[upload.json()["episode_id"]]["policy_version"] is None
    with ReplayBuffer(store_dir, readonly=True) as buffer:
        assert listing["count"] == buffer.num_episodes == len(listing["episodes"])
    labelled = [e for e in listing["episodes"] if e["policy_version"] == 0 and e["success"] is not None]
    version0 = listing["by_policy_version"]["0"]
    assert version0["labelled"] == len(labelled) and version0["successes"] == sum(e["success"] for e in labelled)
    assert version0["success_rate"] == pytest.approx(version0["successes"] / version0["labelled"])
    meta = requests.get(url + "/v1/metadata", timeout=10).json()
    assert meta["policy_version"] == 0 and meta["stored_episodes"] == listing["count"]


def test_malformed_calls_are_4xx_that_name_the_problem(url):
    _error(_post(url, "/v1/episodes/nope/end", {"success": True}), 404, "not known", "POST /v1/episodes")
    _error(_act(url, "nope", 0), 404, "not known")
    _error(_post(url, "/v1/episodes", {"instruction": INSTRUCTION, "unnorm_key": "bridge"}), 422, "bridge_orig")
    episode_id = _start(url)
    _error(_post(url, f"/v1/episodes/{episode_id}/end", {"success": True}), 422, "no steps")
    assert _act(url, episode_id, 40).status_code == 200
    _error(_act(url, episode_id, 41, size=40), 422, "40x40", "32x32")
    _error(_act(url, episode_id, 41, proprio=[1.0, 2.0]), 422, "'proprio' has 2 entries", "had 3")
    _error(_act(url, episode_id, 41, proprio=None), 422, "'proprio' has 0 entries")
    _error(_post(url, "/v1/act", {"image": scene(41, 32).tolist(), "instruction": "open the drawer",
                                  "episode_id": episode_id, "proprio": [1.0, 2.0, 3.0]}), 422, "one instruction")
    _error(_act(url, episode_id, 41, unnorm_key="default"), 422, "started with unnorm_key")
    assert _act(url, episode_id, 41).status_code == 200
    end = f"/v1/episodes/{episode_id}/end"
    _error(_post(url, end, {}), 422, "success", "rewards")
    _error(_post(url, end, {"rewards": [1.0]}), 422, "'rewards' has 1 entries", "2 steps")
    _error(_post(url, end, {"success": True, "executed_actions": [[0.0] * 7]}), 422, "'executed_actions' has 1 rows")
    _error(_post(url, end, {"success": True, "executed_actions": [[0.0] * 6] * 2}), 422, "[steps][7]")
    _error(_post(url, end, {"success": True, "final_image": scene(1, 32).tolist()}), 422, "final_proprio")
    _error(_post(url, end, {"success": True, "final_image": scene(1, 16).tolist(), "final_proprio": [0.0] * 3}),
           422, "'final_image' is 16x16")
    _error(_post(url, end, {"success": "yes"}), 422, "success")
    assert _post(url, end, {"success": True}).status_code == 200      # still open after every refused end
    _error(_post(url, end, {"success": True}), 409, "already been ended")
    _error(_act(url, episode_id, 42), 409, "already been ended")
    _error(_post(url, "/v1/episodes/upload", {"instruction": INSTRUCTION, "unnorm_key": KEY,
                                              "images": [scene(0, 32).tolist()] * 2, "actions": [[0.0] * 7],
                                              "proprio": [[0.0] * 3] * 2, "success": True}), 422,
           "'actions' has 1 rows")
    _error(_post(url, "/v1/episodes/upload", {"instruction": INSTRUCTION, "unnorm_key": KEY,
                                              "images": [scene(0, 32).tolist(), scene(0, 24).tolist()],
                                              "actions": [[0.0] * 7] * 2, "proprio": [[0.0] * 3] * 2,
                                              "success": True}), 422, "images[1] is 24x24")
    _error(_post(url, "/v1/episodes/upload", {"instruction": INSTRUCTION, "images": [scene(0, 32).tolist()],
                                              "unnorm_key": KEY, "actions": [[0.0] * 7], "success": True,
                                              "proprio": [[1.0]]}), 422, "replay store", "proprio")


def test_limits_timeout_and_api_key(limited_url):
    key = {"X-API-Key": "ep-key"}
    for path in ("/v1/episodes", "/v1/episodes/upload", "/v1/episodes/x/end", "/v1/admin/reload"):
        _error(_post(limited_url, path, {"instruction": INSTRUCTION}), 401, "API key")
    _error(requests.get(limited_url + "/v1/episodes", timeout=10), 401, "API key")
    _error(_post(limited_url, "/v1/admin/reload", headers=key), 404, "--policy-updates DIR")

    opened = []
    while len(opened) < 3:
        response = _post(limited_url, "/v1/episodes", {"instruction": INSTRUCTION, "unnorm_key": KEY}, headers=key)
        if response.status_code == 429:
            break
        opened.append(response.json()["episode_id"])
    _error(response, 429, "--max-open-episodes 2")
    episode_id = opened[-1]
    body = {"image": scene(0, 32).tolist(), "instruction": INSTRUCTION, "episode_id": episode_id}
    assert _post(limited_url, "/v1/act", body, headers=key).json()["step"] == 0
    _error(_post(limited_url, "/v1/act/batch", {"requests": [body, body]}, headers=key), 413, "--max-episode-steps")
    assert _post(limited_url, "/v1/act", body, headers=key).json()["step"] == 1   # the refused batch took no step

    deadline = time.monotonic() + 60          # the sweep discards them about 1 s after their last call
    while (listing := requests.get(limited_url + "/v1/episodes", headers=key, timeout=10).json())["open"]:
        assert time.monotonic() < deadline, listing
        time.sleep(0.2)
    _error(_post(limited_url, f"/v1/episodes/{episode_id}/end", {"success": True}, headers=key), 404, "discarded",
           "--episode-timeout")
    _error(_post(limited_url, "/v1/act", body, headers=key), 404, "discarded")
    assert listing["count"] == 0


def test_a_server_without_episodes_says_how_to_turn_them_on(server_url):
    _error(_post(server_url, "/v1/episodes", {"instruction": INSTRUCTION}), 404, "--episodes DIR")
    _error(_act(server_url, "abc", 0), 404, "--episodes DIR")
    _error(requests.get(server_url + "/v1/episodes", timeout=10), 404, "--episodes DIR")
    assert requests.get(server_url + "/v1/metadata", timeout=10).json()["stored_episodes"] is None


def test_serve_flags_reach_the_server_config():
    import argparse

    from vla_parl.cli import serve

    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--checkpoint", "ckpt", "--episodes", "eps", "--episode-timeout", "30",
                              "--max-episode-steps", "200", "--max-open-episodes", "4", "--episode-gamma", "0.9",
                              "--policy-updates", "pub", "--policy-poll-s", "0.5"])
    assert (args.episodes, args.episode_timeout, args.max_episode_steps, args.max_open_episodes, args.episode_gamma,
            args.policy_updates, args.policy_poll_s) == ("eps", 30.0, 200, 4, 0.9, "pub", 0.5)
    for flag, value in (("--episode-gamma", "1.0"), ("--episode-timeout", "0"), ("--max-open-episodes", "0")):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", "--checkpoint", "ckpt", flag, value])


def test_a_second_server_on_the_same_store_is_refused(url, store_dir, engine):
    from serving.app import ServerConfig, create_app
    from vla_parl.errors import VLAParlError

    with pytest.raises(VLAParlError, match="open for writing by another process"):
        create_app(engine, ServerConfig(episodes_dir=str(store_dir)))


def test_a_state_vector_is_recorded_on_every_step_like_proprio(engine, tmp_path):
    """A robot whose critic reads a low-dimensional state (object poses from a tracker; the simulated tabletop's
    block state) sends it with every step and with the final observation; it is stored as obs `state`."""
    from serving.app import ServerConfig, ServerThread, create_app

    root = tmp_path / "store"
    with ServerThread(create_app(engine, ServerConfig(episodes_dir=str(root)))) as base:
        episode_id = _start(base)
        for t in range(2):
            assert _act(base, episode_id, t, state=[float(t), 0.5]).status_code == 200
        _error(_act(base, episode_id, 2), 422, "'state' has 0 entries but its earlier steps had 2")
        _error(_post(base, f"/v1/episodes/{episode_id}/end", {"success": False, "final_image": scene(5, 32).tolist(),
                                                             "final_proprio": [0.0, 1.0, 2.0]}),
               422, "steps carry 'state', so a 'final_image' needs its 'final_state' too")
        end = _post(base, f"/v1/episodes/{episode_id}/end", {"success": False, "final_image": scene(5, 32).tolist(),
                                                            "final_proprio": [0.0, 1.0, 2.0], "final_state": [2.0, 0.5]})
        assert end.status_code == 200, end.text
        upload = _post(base, "/v1/episodes/upload", {
            "instruction": INSTRUCTION, "unnorm_key": KEY, "images": [scene(6, 32).tolist()], "actions": [[0.0] * 7],
            "success": True, "proprio": [[0.0, 1.0, 2.0]]})
        _error(upload, 422, "holds episodes with 2-entry 'state' (0 = none); this request sends 0")
    stored = _stored(root, episode_id)
    np.testing.assert_array_equal(stored["obs"]["state"], [[0.0, 0.5], [1.0, 0.5], [2.0, 0.5]])
    np.testing.assert_array_equal(stored["reward"], [-1.0, -1.0])
