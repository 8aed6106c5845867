"""`vla-parl serve`: the sub-command registers, and the real CLI process serves a checkpoint on loopback."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

import json_numpy
import numpy as np
import requests

from tests.serving._helpers import INSTRUCTION, scene


def test_register_adds_the_serve_subcommand():
    from vla_parl.cli import serve

    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--checkpoint", "ckpt", "--max-batch-size", "4", "--max-wait-ms", "2.5",
                              "--api-key", "k", "--max-request-bytes", "1000"])
    assert args.handler is serve._run and args.host == "127.0.0.1" and args.port == 8000
    assert (args.max_batch_size, args.max_wait_ms, args.api_key, args.max_request_bytes) == (4, 2.5, "k", 1000)


def test_api_key_sources(tmp_path, monkeypatch):
    from vla_parl.cli.serve import _api_key
    from vla_parl.errors import ConfigError

    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    ns = argparse.Namespace
    assert _api_key(ns(api_key=None, api_key_file=str(key_file))) == "from-file"
    monkeypatch.setenv("VLA_PARL_API_KEY", "from-env")
    assert _api_key(ns(api_key=None, api_key_file=None)) == "from-env"
    try:
        _api_key(ns(api_key="a", api_key_file=str(key_file)))
    except ConfigError as exc:
        assert "not both" in str(exc)
    else:
        raise AssertionError("--api-key with --api-key-file must be refused")


def test_cli_process_serves_with_an_api_key(checkpoint_dirs, reference_model):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "VLA_PARL_API_KEY": "cli-key", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "vla_parl.cli.serve", "--checkpoint", str(checkpoint_dirs[0]),
                                "--critic", str(checkpoint_dirs[1]), "--port", str(port), "--max-batch-size", "4",
                                "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stdout.read().decode()[-2000:]
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the server did not come up in 90 s"
            time.sleep(0.2)
        image = scene(50, 64)
        body = json.dumps({"image": image, "instruction": INSTRUCTION, "unnorm_key": "default"},
                          default=json_numpy.default)
        assert requests.post(url + "/act", data=body, timeout=30).status_code == 401
        response = requests.post(url + "/act", data=body, headers={"X-API-Key": "cli-key"}, timeout=30)
        assert response.status_code == 200, response.text
        np.testing.assert_array_equal(json_numpy.loads(response.text),
                                      reference_model.predict_action(image, INSTRUCTION, unnorm_key="default"))
        meta = requests.get(url + "/v1/metadata", headers={"Authorization": "Bearer cli-key"}, timeout=10).json()
        assert meta["critic"]["loaded"] and meta["batching"]["max_batch_size"] == 4
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_cli_reports_a_missing_checkpoint(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vla_parl.cli.serve", "--checkpoint", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                                             "HF_HUB_OFFLINE": "1"})
    assert done.returncode != 0
    assert "nope" in done.stderr
