"""`vla-parl serve --episodes DIR` killed with SIGKILL mid-episode: the finished episode stays, readable; the open
one is absent; the store can be opened for writing again (by the next server)."""

from __future__ import annotations

import numpy as np
import requests

from serving.process import ServerProcess
from tests.serving._helpers import INSTRUCTION, scene
from vla_parl.data import ReplayBuffer


def _episode(url: str, steps: int, seed: int) -> tuple[str, list[list[float]]]:
    episode_id = requests.post(url + "/v1/episodes", json={"instruction": INSTRUCTION, "unnorm_key": "default"},
                               timeout=30).json()["episode_id"]
    actions = []
    for t in range(steps):
        response = requests.post(url + "/v1/act", json={"image": scene(seed + t, 24).tolist(),
                                                        "instruction": INSTRUCTION, "episode_id": episode_id},
                                 timeout=60)
        assert response.status_code == 200 and response.json()["step"] == t, response.text
        actions.append(response.json()["action"])
    return episode_id, actions


def test_sigkill_loses_only_the_open_episode(checkpoint_dirs, tmp_path):
    store = tmp_path / "episodes"
    server = ServerProcess(["--checkpoint", str(checkpoint_dirs[0]), "--episodes", str(store), "--max-batch-size",
                            "2", "--log-level", "warning"], env={"VLA_PARL_API_KEY": None})
    url = server.start()
    try:
        finished, served = _episode(url, 3, seed=0)
        end = requests.post(url + f"/v1/episodes/{finished}/end", json={"success": True}, timeout=60)
        assert end.status_code == 200, end.text
        _episode(url, 2, seed=10)                       # open, never ended
        server.kill()                                   # SIGKILL
    finally:
        server.stop()

    with ReplayBuffer(store, readonly=True) as buffer:
        assert buffer.num_episodes == 1
        episode = buffer.episode(buffer.episode_ids[0])
        assert episode["meta"]["info"]["server_episode_id"] == finished
        assert episode["meta"]["info"]["served_actions"] == served
        np.testing.assert_array_equal(episode["obs"]["image"], np.stack([scene(t, 24) for t in range(3)]))
        np.testing.assert_array_equal(episode["reward"], [-1.0, -1.0, 0.0])
        assert buffer.sample(4)["action"].shape == (4, 7)

    with ReplayBuffer(store) as writer:     # the killed server's writer lock went with it: a new server can take over
        assert writer.episode_ids == [0] and not any(p.name.startswith(".tmp-") for p in (store / "episodes").iterdir())
