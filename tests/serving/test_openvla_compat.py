"""`POST /act` is a drop-in for OpenVLA's vla-scripts/deploy.py: json_numpy in, json_numpy out."""

from __future__ import annotations

import json

import json_numpy
import numpy as np
import requests

from tests.serving._helpers import INSTRUCTION, run_client_snippet, scene


def test_readme_client_gets_the_greedy_action(server_url, reference_model):
    # exactly the OpenVLA README client, in its own process (json_numpy.patch() there, not here)
    out = run_client_snippet(f"""
import json, requests, numpy as np, json_numpy
json_numpy.patch()
image = np.zeros((256, 256, 3), dtype=np.uint8)
image[64:128, 32:200] = (200, 30, 30)
action = requests.post("{server_url}/act", json={{"image": image, "instruction": "{INSTRUCTION}",
                                                  "unnorm_key": "bridge_orig"}}).json()
assert isinstance(action, np.ndarray), type(action)
print(json.dumps({{"dtype": str(action.dtype), "shape": list(action.shape), "action": action.tolist()}}))
""")
    got = json.loads(out.strip().splitlines()[-1])
    image = np.zeros((256, 256, 3), dtype=np.uint8)
    image[64:128, 32:200] = (200, 30, 30)
    expected = reference_model.predict_action(image, INSTRUCTION, unnorm_key="bridge_orig")
    assert got["dtype"] == "float64" and got["shape"] == [7]
    np.testing.assert_array_equal(np.array(got["action"]), expected)


def test_encoded_form_without_json_numpy_on_the_wire(server_url, reference_model):
    image = scene(3, 200)
    payload = json.dumps({"image": image, "instruction": INSTRUCTION, "unnorm_key": "default"},
                         default=json_numpy.default)
    response = requests.post(server_url + "/act", json={"encoded": payload}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, str)  # the encoded form answers a JSON string, as deploy.py does
    action = json_numpy.loads(body)
    np.testing.assert_array_equal(action, reference_model.predict_action(image, INSTRUCTION, unnorm_key="default"))


def test_greedy_matches_predict_action_across_inputs_and_keys(server_url, reference_model):
    actions = []
    for seed, instruction, key in [(0, INSTRUCTION, "default"), (1, "push the blue block left", "default"),
                                   (2, INSTRUCTION, "bridge_orig"), (5, "lift the green block", "bridge_orig")]:
        image = scene(seed, 96)
        body = json.dumps({"image": image, "instruction": instruction, "unnorm_key": key}, default=json_numpy.default)
        response = requests.post(server_url + "/act", data=body, headers={"Content-Type": "application/json"},
                                 timeout=30)
        assert response.status_code == 200, response.text
        action = json_numpy.loads(response.text)
        np.testing.assert_array_equal(action, reference_model.predict_action(image, instruction, unnorm_key=key))
        actions.append(action)
    # the inputs matter (the comparison above is not between constants)
    assert len({tuple(np.round(a, 6)) for a in actions}) >= 3
    assert np.abs(actions[2][:3]).max() <= 0.05 + 1e-9  # bridge_orig statistics scale the movement dims


def test_unknown_and_missing_unnorm_key_are_explained(server_url):
    image = scene(0, 32)
    body = json.dumps({"image": image, "instruction": INSTRUCTION, "unnorm_key": "bridge"}, default=json_numpy.default)
    response = requests.post(server_url + "/act", data=body, timeout=30)
    assert response.status_code == 422
    message = response.json()["message"]
    assert "bridge_orig" in message and "Available keys" in message
    body = json.dumps({"image": image, "instruction": INSTRUCTION}, default=json_numpy.default)
    response = requests.post(server_url + "/act", data=body, timeout=30)
    assert response.status_code == 422 and "pass unnorm_key" in response.json()["message"]
