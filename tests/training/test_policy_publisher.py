"""`PolicyPublisher`: versions written whole (model/ or a LoRA adapter/ + manifest.json) by one atomic rename,
never rewritten; what the policy server's `read_version` / `OpenVLA.from_pretrained` / `load_lora_adapter` read."""

from __future__ import annotations

import pytest
import torch

from vla_parl.errors import VLAParlError
from vla_parl.training.publish import PolicyPublisher, read_version


def _tiny():
    from vla_parl.models import openvla_tiny

    return openvla_tiny(image_size=56, seed=0)


def test_model_version_is_whole_loadable_and_never_rewritten(tmp_path):
    from vla_parl.models.openvla.modeling import OpenVLA

    publisher = PolicyPublisher(tmp_path / "published")
    assert publisher.latest_version() == 0                     # the folder does not exist yet
    (tmp_path / "published").mkdir()
    (tmp_path / "published" / ".tmp-v1-dead").mkdir()          # left by a publisher killed while writing v1
    model = _tiny()
    path = publisher.publish(model, version=1, kind="model", base="runs/sft/final/model", episodes=["e0", "e1"],
                             metrics={"online/collect_success": 0.5})
    assert path == tmp_path / "published" / "v1" and sorted(p.name for p in path.parent.iterdir()) == ["v1"]
    version = read_version(path)
    assert (version.version, version.kind) == (1, "model")
    assert {k: version.manifest[k] for k in ("base", "episodes", "metrics")} == {
        "base": "runs/sft/final/model", "episodes": ["e0", "e1"], "metrics": {"online/collect_success": 0.5}}
    loaded = OpenVLA.from_pretrained(version.weights)
    for (name, want), got in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(want, got), name
    assert publisher.latest_version() == 1
    before = (path / "manifest.json").read_bytes()
    with pytest.raises(VLAParlError, match="v1 already exists and a published version is never rewritten: "
                                           "publish v2"):
        publisher.publish(model, version=1, kind="model", base="x", episodes=[], metrics={})
    assert (path / "manifest.json").read_bytes() == before


def test_adapter_version_holds_only_the_lora_adapter(tmp_path):
    from vla_parl.models.openvla.lora import LoraSettings, apply_lora, load_lora_adapter

    model = apply_lora(_tiny(), LoraSettings(r=4, alpha=8))
    with torch.no_grad():                                      # non-zero adapters (B starts at zero)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    path = PolicyPublisher(tmp_path).publish(model, version=3, kind="adapter", base="base", episodes=["e"],
                                             metrics={})
    assert read_version(path).kind == "adapter" and sorted(p.name for p in path.iterdir()) == ["adapter",
                                                                                               "manifest.json"]
    served = load_lora_adapter(_tiny(), path / "adapter")      # what the server applies to its base
    want = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    got = {k: v for k, v in served.state_dict().items() if "lora_" in k}
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_an_adapter_of_a_model_without_lora_is_refused_and_leaves_nothing(tmp_path):
    with pytest.raises(VLAParlError, match="publish kind 'model'"):
        PolicyPublisher(tmp_path).publish(_tiny(), version=1, kind="adapter", base="b", episodes=[], metrics={})
    assert list(tmp_path.iterdir()) == []                      # neither v1 nor a temporary folder
