"""Action normalisation and the unnorm_key errors users trip over."""

from __future__ import annotations

import numpy as np
import pytest

from vla_parl.errors import UnnormKeyError
from vla_parl.models.openvla.normalization import ActionNormalizer, resolve_unnorm_key

STATS = {
    "bridge_orig": {"action": {"q01": [-1.0, 0.0, 0.0], "q99": [1.0, 2.0, 1.0], "min": [-2, 0, 0], "max": [2, 3, 1],
                               "mask": [True, True, False]}},
    "toy": {"action": {"q01": [0, 0, 0], "q99": [1, 1, 1], "min": [0, 5, 0], "max": [1, 5, 1]}},
}


def test_missing_key_with_several_datasets_lists_keys():
    with pytest.raises(UnnormKeyError, match=r"pass unnorm_key=.*Available keys: \['bridge_orig', 'toy'\]"):
        resolve_unnorm_key(STATS, None)


def test_wrong_key_suggests_closest_and_lists_keys():
    with pytest.raises(UnnormKeyError, match=r"'bridge' is not in .*Did you mean 'bridge_orig'\?.*\['bridge_orig', 'toy'\]"):
        resolve_unnorm_key(STATS, "bridge")


def test_single_dataset_needs_no_key_and_no_stats_is_explained():
    assert resolve_unnorm_key({"only": STATS["toy"]}, None) == "only"
    with pytest.raises(UnnormKeyError, match="no normalisation statistics"):
        resolve_unnorm_key({}, None)


def test_predict_action_reports_bad_key(golden_dir):
    import torch

    from vla_parl.models import OpenVLA

    model = OpenVLA.from_pretrained(golden_dir, torch_dtype=torch.float32)
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(UnnormKeyError, match=r"Available keys: \['bridge_orig', 'toy_two'\]"):
        model.predict_action(image, "open the drawer")
    with pytest.raises(UnnormKeyError, match="Did you mean 'bridge_orig'"):
        model.predict_action(image, "open the drawer", unnorm_key="bridge")


def test_normalize_unnormalize():
    norm = ActionNormalizer(STATS["bridge_orig"]["action"])
    a = np.array([[0.5, 1.0, 0.7], [5.0, -1.0, 0.2]])
    x = norm.normalize(a)
    # dim 0: 2(0.5+1)/2 - 1 = 0.5; dim 1: 2·1/2 - 1 = 0; dim 2 unmasked → unchanged; row 2 clipped to ±1
    np.testing.assert_allclose(x, [[0.5, 0.0, 0.7], [1.0, -1.0, 0.2]], atol=1e-7)
    np.testing.assert_allclose(norm.unnormalize(x[:1]), a[:1], atol=1e-7)
    # a constant dimension (min == max) normalises to 0
    assert ActionNormalizer(STATS["toy"]["action"]).normalize(np.array([0.3, 5.0, 0.5]))[1] == 0.0
    with pytest.raises(ValueError, match="last dimension 3"):
        norm.normalize(np.zeros(7))


def test_unmasked_constant_dimension_unnormalises_to_its_constant():
    # an always-open gripper (unmasked, min == max == 1) must come back open, not as the token value 0
    stats = {"q01": [-1.0, 1.0], "q99": [1.0, 1.0], "min": [-1.0, 1.0], "max": [1.0, 1.0], "mask": [True, False]}
    norm = ActionNormalizer(stats)
    x = norm.normalize(np.array([[0.25, 1.0]]))
    np.testing.assert_allclose(x, [[0.25, 0.0]])
    np.testing.assert_allclose(norm.unnormalize(x), [[0.25, 1.0]])
