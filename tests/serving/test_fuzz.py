"""Fuzzing: no input makes the server answer 5xx (schemathesis over the OpenAPI spec + hypothesis on /act)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from serving.client import encode_png
from tests.serving._helpers import INSTRUCTION, scene

def test_openapi_fuzz_never_5xx(server_url):
    """Every operation of the served OpenAPI spec, positive and negative (schema-violating) cases."""
    loaded = schemathesis.openapi.from_url(server_url + "/openapi.json")
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert {op.path for op in operations} >= {"/act", "/v1/act", "/v1/act/batch", "/v1/metadata", "/health"}
    strategies = [op.as_strategy(generation_mode=mode) for op in operations
                  for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)]
    seen: set[int] = set()

    @given(case=st.one_of(strategies))
    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
    def check(case) -> None:
        response = case.call(base_url=server_url, timeout=30)
        seen.add(response.status_code)
        assert response.status_code < 500, (f"{case.method} {case.path} {str(case.body)[:200]} → "
                                            f"{response.status_code}: {response.text[:300]}")
        if response.status_code >= 400:
            assert response.json()["message"]

    check()
    assert any(400 <= code < 500 for code in seen)


_dtypes = st.sampled_from([np.uint8, np.int8, np.uint16, np.float32, np.float64, np.int64, np.bool_])
_images = st.one_of(
    arrays(dtype=_dtypes, shape=array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=12)),
    st.just(scene(0, 16)),
)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
_instruction = st.one_of(st.just(INSTRUCTION), st.text(max_size=30), _scalars, st.lists(st.text(max_size=3)))
_unnorm = st.one_of(st.none(), st.sampled_from(["default", "bridge_orig", "bridge", ""]), _scalars)


def _numpy_json(array: np.ndarray) -> dict:
    import json_numpy

    encoded = json_numpy.default(array)
    return {**encoded, "shape": list(encoded["shape"])}


@st.composite
def act_bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["payload", "encoded", "mutated", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    payload: dict = {}
    if draw(st.booleans()) or kind != "mutated":
        payload["image"] = _numpy_json(draw(_images))
    payload["instruction"] = draw(_instruction)
    unnorm = draw(_unnorm)
    if unnorm is not None or draw(st.booleans()):
        payload["unnorm_key"] = unnorm
    if kind == "mutated" and "image" in payload:
        field = draw(st.sampled_from(["__numpy__", "dtype", "shape"]))
        payload["image"][field] = draw(st.one_of(_scalars, st.lists(st.integers(-3, 20), max_size=4),
                                                 st.sampled_from(["<f8", "|u1", "|V8", "<U3", "O", "(2,)u1"])))
    text = json.dumps(payload, allow_nan=True)
    if kind == "encoded":
        text = json.dumps({"encoded": text})
    return text.encode()


@given(body=act_bodies())
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
def test_act_fuzz_never_5xx(server_url, body):
    response = requests.post(server_url + "/act", data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code < 500, f"{body[:200]!r} → {response.status_code}: {response.text[:300]}"
    if response.status_code != 200:
        assert response.json()["message"]


@given(image=st.one_of(st.text(max_size=40), st.binary(max_size=64).map(lambda b: __import__("base64").b64encode(b)
                                                                         .decode()),
                       st.just(encode_png(scene(1, 16))),
                       st.lists(st.lists(st.lists(st.one_of(st.integers(-2, 300), st.floats()), max_size=4),
                                         max_size=3), max_size=3)),
       mode=st.sampled_from(["greedy", "sample", "refined", "other"]),
       num_samples=st.one_of(st.none(), st.integers(-2, 40)),
       temperature=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
def test_typed_fuzz_never_5xx(server_url, image, mode, num_samples, temperature):
    body = {"image": image, "instruction": INSTRUCTION, "unnorm_key": "default", "mode": mode}
    if num_samples is not None:
        body["num_samples"] = num_samples
    if temperature is not None:
        body["temperature"] = temperature
    response = requests.post(server_url + "/v1/act", data=json.dumps(body, allow_nan=True),
                             headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code < 500, f"{str(body)[:200]} → {response.status_code}: {response.text[:300]}"
