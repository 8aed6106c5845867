"""The README's serve command with the demo's own critic (which reads proprio and the privileged state), and
`vla-parl eval tabletop` with it: both get the improvement operator the critic was trained with."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
import torch

from serving.client import encode_png
from serving.process import ServerProcess
from tests.recipes._cli import run_cli
from tests.serving._helpers import scene

INSTRUCTION = "reach the red block"
# configs/demo_ci.yaml: the parl phase distils with N = parl.num_samples and the action_optimizer block
DEMO_CI_OPERATOR = {"num_samples": 2, "top_k": 2, "num_steps": 1, "step_size": 0.05, "choice": "argmax"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    proc, _ = run_cli("run", "demo", "--config", "demo_ci", "--output-dir", str(out), "eval.episodes=1",
                      "ablations=[]", "run.threads=1", "policies=[openvla]")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out / "final"


def test_the_readme_serve_command_answers_refined_requests_with_proprio_and_state(demo_run):
    from vla_parl.critic import QCritic
    from vla_parl.models import OpenVLA
    from vla_parl.parl import ImprovementOperator
    from vla_parl.policy.base import Observation
    from vla_parl.policy.openvla import OpenVLAPolicy

    model_dir, critic_dir = demo_run / "model", demo_run / "critic"
    assert json.loads((critic_dir / "config.json").read_text())["improvement"]["step_size"] == 0.05
    # as in the README, plus one explicit override of the saved settings (--steps)
    server = ServerProcess(["--checkpoint", str(model_dir), "--critic", str(critic_dir), "--steps", "3"],
                           env={"VLA_PARL_API_KEY": None}, log_path=demo_run.parent / "serve.log")
    url = server.start()
    try:
        critic_info = requests.get(url + "/v1/metadata", timeout=10).json()["critic"]
        assert (critic_info["proprio_dim"], critic_info["state_dim"]) == (7, 6)
        assert {k: critic_info["improvement"][k] for k in DEMO_CI_OPERATOR} == {**DEMO_CI_OPERATOR, "num_steps": 3}
        image, proprio, state = scene(1, 56), np.linspace(-0.5, 0.5, 7).tolist(), np.linspace(0.1, 0.6, 6).tolist()
        body = {"image": encode_png(image), "instruction": INSTRUCTION, "unnorm_key": "tabletop", "mode": "refined",
                "proprio": proprio, "state": state, "seed": 3}
        response = requests.post(url + "/v1/act", json=body, timeout=60)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["q"] >= answer["greedy_q"] - 1e-6 and len(answer["candidate_q"]) == 2
        missing = requests.post(url + "/v1/act", json={**body, "state": state[:4]}, timeout=60)
        assert missing.status_code == 422
        assert "'state' must be a vector of 6 numbers" in missing.json()["message"]
    finally:
        server.stop()
    # the same answer in-process: the operator saved with the critic (with the same override), same seed
    model = OpenVLA.from_pretrained(model_dir)
    critic = QCritic.load(critic_dir, tokenize=model.processor.tokenizer.encode_batch).eval()
    operator = ImprovementOperator.from_critic(critic, OpenVLAPolicy(model, unnorm_key="tabletop"), num_steps=3)
    pixel_values, prompt_ids = model.prepare_inputs([image], [INSTRUCTION])
    greedy = model.action_tokenizer.decode(model.generate_action_tokens(pixel_values, prompt_ids, 7).numpy())
    out = operator.improve(Observation(images=torch.as_tensor(image[None]), instructions=[INSTRUCTION],
                                       proprio=torch.tensor([proprio]), state=torch.tensor([state])),
                           include=torch.as_tensor(greedy, dtype=torch.float32)[:, None],
                           generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(answer["action"], model.action_normalizer("tabletop").unnormalize(
        out.actions.double().numpy())[0], atol=1e-6)
    assert answer["q"] == pytest.approx(float(out.q[0]), abs=1e-5)


def test_eval_tabletop_acts_with_the_operator_saved_with_the_critic(demo_run, tmp_path):
    base = ["eval", "tabletop", "--checkpoint", str(demo_run / "model"), "--critic", str(demo_run / "critic"),
            "--unnorm-key", "tabletop", "--episodes", "1", "--max-episode-steps", "3"]
    proc, _ = run_cli(*base, "--output-dir", str(tmp_path / "saved"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    used = json.loads((tmp_path / "saved" / "tabletop_results.json").read_text())["improvement"]
    assert {k: used[k] for k in DEMO_CI_OPERATOR} == DEMO_CI_OPERATOR
    proc, _ = run_cli(*base, "--top-k", "1", "--output-dir", str(tmp_path / "flag"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    used = json.loads((tmp_path / "flag" / "tabletop_results.json").read_text())["improvement"]
    assert {k: used[k] for k in DEMO_CI_OPERATOR} == {**DEMO_CI_OPERATOR, "top_k": 1}
