"""Hot policy updates: versions published as the learner publishes them are loaded off the request path and
swapped in between batches; answers carry the version that computed them; broken versions are refused.

The versions are real files written by the real save functions: v<k>/model by `OpenVLA.save_pretrained` (the
tiny serving checkpoint with its LLM weights perturbed), v<k>/adapter by `save_lora_adapter` (random LoRA
weights on the same base). Reference answers come from loading each version separately with `OpenVLA`.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from serving.engine import ActItem, PolicyEngine
from serving.policy_updates import PolicyUpdates
from tests.serving._helpers import INSTRUCTION, scene
from vla_parl.utils.files import atomic_write_json

KEY = "bridge_orig"
IMAGES = [scene(100 + i) for i in range(3)]


def _expected(model) -> np.ndarray:
    """What `model` answers for IMAGES (greedy, robot units): the reference for a version."""
    return model.predict_action(IMAGES, [INSTRUCTION] * len(IMAGES), unnorm_key=KEY)


@pytest.fixture(scope="module")
def sources(checkpoint_dirs, tmp_path_factory) -> dict:
    """Weights of the versions, saved once: {"model": dir, "adapter": dir, "other_keys": dir, "base": dir,
    "adapted": the LoRA model the adapter was saved from, "expected": {version or kind: answers}}."""
    from vla_parl.models import OpenVLA, openvla_tiny
    from vla_parl.models.openvla.lora import LoraSettings, apply_lora, load_lora_adapter, merge_lora, save_lora_adapter
    from vla_parl.models.openvla.presets import default_norm_stats

    base_dir = checkpoint_dirs[0]
    root = tmp_path_factory.mktemp("policy_sources")
    generator = torch.Generator().manual_seed(1)
    tuned = OpenVLA.from_pretrained(base_dir)
    with torch.no_grad():   # an "improved" policy: every LLM matrix moved a little
        for name, param in tuned.language_model.model.named_parameters():
            if param.dim() == 2 and "embed" not in name:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
    tuned.save_pretrained(root / "model")
    adapted = apply_lora(OpenVLA.from_pretrained(base_dir), LoraSettings(r=4))
    with torch.no_grad():   # trained adapters: B ≠ 0
        for name, param in adapted.named_parameters():
            if "lora_B" in name:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    save_lora_adapter(adapted, root / "adapter")
    openvla_tiny(image_size=56, norm_stats=default_norm_stats("default")).save_pretrained(root / "other_keys")
    merged = merge_lora(load_lora_adapter(OpenVLA.from_pretrained(base_dir), root / "adapter"))
    expected = {0: _expected(OpenVLA.from_pretrained(base_dir)),
                "model": _expected(OpenVLA.from_pretrained(root / "model")), "adapter": _expected(merged)}
    # the versions must answer differently, or a test could not tell which one served
    assert not np.allclose(expected[0], expected["model"]) and not np.allclose(expected[0], expected["adapter"])
    assert not np.allclose(expected["model"], expected["adapter"])
    return {"model": root / "model", "adapter": root / "adapter", "other_keys": root / "other_keys",
            "base": base_dir, "adapted": adapted, "expected": expected}


def publish(publish_dir: Path, version: int, kind: str, weights: Path, *, manifest: dict | None = None) -> Path:
    """Publish as the learner does: write everything into a temporary directory, then rename it to v<k>."""
    tmp = publish_dir / f".tmp-v{version}-test"
    shutil.copytree(weights, tmp / kind)
    atomic_write_json(tmp / "manifest.json", manifest if manifest is not None else
                      {"version": version, "kind": kind, "base": None, "episodes": [], "metrics": {},
                       "created": time.time()})
    os.rename(tmp, publish_dir / f"v{version}")
    return publish_dir / f"v{version}"


def greedy(engine: PolicyEngine) -> tuple[np.ndarray, list[int]]:
    """(actions [len(IMAGES), 7], versions per row) of one engine batch."""
    results = engine.run([ActItem(image=image, instruction=INSTRUCTION, unnorm_key=KEY) for image in IMAGES])
    return np.stack([r.action for r in results]), [r.policy_version for r in results]


@pytest.fixture
def fresh_engine(checkpoint_dirs) -> PolicyEngine:
    """An engine of its own (tests swap its model), with the critic."""
    return PolicyEngine.load(*checkpoint_dirs)


def test_model_then_adapter_versions_swap_in_and_tag_answers(fresh_engine, sources, tmp_path):
    engine, critic = fresh_engine, fresh_engine.critic
    updates = PolicyUpdates(engine, tmp_path)
    actions, versions = greedy(engine)
    np.testing.assert_allclose(actions, sources["expected"][0], atol=1e-6)
    assert versions == [0, 0, 0] and engine.policy_version == 0
    assert updates.reload() == {"policy_version": 0, "loaded": False,
                                "message": f"no servable version newer than v0 in {tmp_path}"}

    publish(tmp_path, 1, "model", sources["model"])
    answer = updates.reload()
    assert answer["loaded"] and answer["policy_version"] == 1 and "v1 (model)" in answer["message"]
    actions, versions = greedy(engine)
    np.testing.assert_allclose(actions, sources["expected"]["model"], atol=1e-6)
    assert versions == [1, 1, 1]

    publish(tmp_path, 2, "adapter", sources["adapter"], manifest={"version": 2})   # kind found from the folder
    answer = updates.reload()
    assert answer["loaded"] and answer["policy_version"] == 2 and "v2 (adapter)" in answer["message"]
    actions, versions = greedy(engine)      # the adapter is applied to the base, not to v1
    np.testing.assert_allclose(actions, sources["expected"]["adapter"], atol=1e-6)
    assert versions == [2, 2, 2]
    assert engine.critic is critic and engine.model.dtype == torch.float32 and engine.checkpoint == str(sources["base"])
    assert updates.reload()["loaded"] is False    # nothing newer: the served one stays


def test_running_batch_finishes_on_the_version_it_started_with(fresh_engine, sources, tmp_path):
    """A batch blocked inside the model while v1 is loaded and swapped in still answers with v0's model."""
    engine = fresh_engine
    inside, release = threading.Event(), threading.Event()

    def hold(*_):
        inside.set()
        assert release.wait(60)

    handle = engine.model.vision_backbone.register_forward_pre_hook(hold)
    out: dict = {}
    worker = threading.Thread(target=lambda: out.update(first=greedy(engine)))
    worker.start()
    try:
        assert inside.wait(60)
        publish(tmp_path, 1, "model", sources["model"])
        assert PolicyUpdates(engine, tmp_path).reload()["loaded"]   # loads and swaps while the batch runs
    finally:
        release.set()
        worker.join(60)
        handle.remove()
    actions, versions = out["first"]
    np.testing.assert_allclose(actions, sources["expected"][0], atol=1e-6)
    assert versions == [0, 0, 0]
    actions, versions = greedy(engine)   # the next batch is v1's
    np.testing.assert_allclose(actions, sources["expected"]["model"], atol=1e-6)
    assert versions == [1, 1, 1]


def test_broken_versions_are_refused_logged_once_and_old_keeps_serving(fresh_engine, sources, tmp_path, caplog):
    engine = fresh_engine
    # v1: no manifest (e.g. copied by hand, not published); v2: truncated weights; v3: manifest of another
    # version; v4: manifest not JSON; v5: other datasets (unnorm keys) than the served model
    (tmp_path / "v1").mkdir()
    shutil.copytree(sources["model"], tmp_path / "v1" / "model")
    weights = publish(tmp_path, 2, "model", sources["model"]) / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    publish(tmp_path, 3, "model", sources["model"], manifest={"version": 2, "kind": "model"})
    (publish(tmp_path, 4, "adapter", sources["adapter"]) / "manifest.json").write_text('{"version": 4,')
    publish(tmp_path, 5, "model", sources["other_keys"])
    updates = PolicyUpdates(engine, tmp_path)
    with caplog.at_level(logging.ERROR, logger="vla_parl.serving"):
        answer = updates.reload()
    assert answer["policy_version"] == 0 and answer["loaded"] is False
    refusals = [r.getMessage() for r in caplog.records if r.name == "vla_parl.serving"]
    assert len(refusals) == 5 and all("still serving v0" in line for line in refusals)
    for version, reason in [(1, "has no manifest.json"), (2, "model.safetensors"), (3, "says version 2 but"),
                            (4, "not readable JSON"), (5, "datasets/action dims")]:
        line = next(line for line in refusals if line.startswith(f"refused policy version v{version} "))
        assert reason in line and f"v{version}: " in answer["message"], (line, answer["message"])
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="vla_parl.serving"):
        assert updates.reload()["loaded"] is False
    assert not caplog.records                          # remembered: not loaded (nor logged) again
    actions, versions = greedy(engine)
    np.testing.assert_allclose(actions, sources["expected"][0], atol=1e-6)
    assert versions == [0, 0, 0]

    # a refused version is tried again once its files change: v1 gets its manifest
    atomic_write_json(tmp_path / "v1" / "manifest.json", {"version": 1, "kind": "model"})
    answer = updates.reload()
    assert answer["loaded"] and answer["policy_version"] == 1
    np.testing.assert_allclose(greedy(engine)[0], sources["expected"]["model"], atol=1e-6)


def test_watcher_picks_up_a_version_the_learner_publishes(fresh_engine, sources, tmp_path):
    from vla_parl.training.publish import PolicyPublisher

    engine = fresh_engine
    publish_dir = tmp_path / "publish"          # the learner has not created it yet
    with PolicyUpdates(engine, publish_dir, poll_s=0.05):
        publish_dir.mkdir()
        shutil.copytree(sources["model"], publish_dir / ".tmp-v2-writing" / "model")   # half-written: ignored
        PolicyPublisher(publish_dir).publish(sources["adapted"], version=1, kind="adapter", base=str(sources["base"]),
                                             episodes=["e0"], metrics={"loss": 1.0})
        deadline = time.monotonic() + 60
        while engine.policy_version == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert engine.policy_version == 1
    np.testing.assert_allclose(greedy(engine)[0], sources["expected"]["adapter"], atol=1e-6)


def test_requests_during_swaps_never_fail_and_carry_their_version(fresh_engine, sources, tmp_path):
    """Three robots keep calling /v1/act through real uvicorn while v1 (model) and v2 (adapter) are swapped
    in by `POST /v1/admin/reload`: every request answers 200, each robot sees versions in order, and every
    answer is exactly what the version it names computes."""
    import requests

    from serving.app import ServerConfig, ServerThread, create_app
    from serving.client import encode_png

    expected = {0: sources["expected"][0], 1: sources["expected"]["model"], 2: sources["expected"]["adapter"]}
    bodies = [{"image": encode_png(image), "instruction": INSTRUCTION, "unnorm_key": KEY} for image in IMAGES]
    answers: list[list[tuple[int, int | str, dict]]] = [[] for _ in range(3)]   # per robot: (row, status, body)
    stop = threading.Event()

    def robot(index: int, url: str) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                row = len(answers[index]) % len(IMAGES)
                try:
                    response = session.post(url + "/v1/act", json=bodies[row], timeout=60)
                except requests.RequestException as exc:   # a failed request too
                    answers[index].append((row, repr(exc), {}))
                    return
                answers[index].append((row, response.status_code, response.json()))

    def served_by_all(version: int, count: int = 2) -> None:
        """Wait until every robot got `count` answers from `version` (or a later one)."""
        deadline = time.monotonic() + 60
        while not all(sum(body.get("policy_version", -1) >= version for _, _, body in a) >= count for a in answers):
            assert time.monotonic() < deadline, "the robots were not served by the new version"
            time.sleep(0.01)

    def reload(url: str) -> int:
        """`POST /v1/admin/reload` (the learner or an operator asking): the version served now."""
        response = requests.post(url + "/v1/admin/reload", timeout=60)
        assert response.status_code == 200 and response.json()["loaded"], response.text
        return response.json()["policy_version"]

    # the watcher polls once an hour here: the test decides when versions are loaded, through the route
    config = ServerConfig(max_batch_size=4, max_wait_ms=2, policy_updates_dir=str(tmp_path), policy_poll_s=3600)
    with ServerThread(create_app(fresh_engine, config)) as url:
        robots = [threading.Thread(target=robot, args=(i, url)) for i in range(3)]
        for thread in robots:
            thread.start()
        try:
            served_by_all(0)
            publish(tmp_path, 1, "model", sources["model"])
            assert reload(url) == 1
            served_by_all(1)
            publish(tmp_path, 2, "adapter", sources["adapter"])
            assert reload(url) == 2
            served_by_all(2)
        finally:
            stop.set()
            for thread in robots:
                thread.join(60)
    for robot_answers in answers:
        assert [status for _, status, _ in robot_answers] == [200] * len(robot_answers)
        versions = [body["policy_version"] for _, _, body in robot_answers]
        assert versions == sorted(versions) and versions[0] == 0 and versions[-1] == 2
        for row, _, body in robot_answers:
            np.testing.assert_allclose(body["action"], expected[body["policy_version"]][row], atol=1e-6)


def test_a_request_is_unaffected_by_a_model_being_built_under_init_empty_weights(fresh_engine):
    """A version is built (`OpenVLA.from_pretrained`) under accelerate's `init_empty_weights`, which patches
    `nn.Module.register_parameter` for the whole process while the empty model is constructed. Nothing a request
    runs may register parameters (e.g. by slicing a ParameterList), or its weights would land on the meta device
    mid-request. Here the patch is active around whole refined/greedy batches: answers and weights are unchanged."""
    from accelerate import init_empty_weights

    items = [ActItem(image=scene(i, 32), instruction=INSTRUCTION, unnorm_key=KEY, mode=mode, num_samples=3, top_k=2,
                     steps=2, seed=i) for i, mode in enumerate(("greedy", "sample", "refined"))]
    before = fresh_engine.run(items)
    with init_empty_weights(include_buffers=False):
        during = fresh_engine.run(items)
    for a, b in zip(before, during):
        assert not isinstance(b, BaseException), b
        np.testing.assert_allclose(b.action, a.action, atol=1e-6)
    devices = {p.device.type for p in [*fresh_engine.critic.parameters(), *fresh_engine.model.parameters()]}
    assert devices == {"cpu"}
