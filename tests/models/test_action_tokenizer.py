"""ActionTokenizer: 256 bins over [-1, 1] written as the last 256 ids below 32000."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vla_parl.models.openvla.action_tokenizer import ActionTokenizer

TOK = ActionTokenizer(256, 32000)
floats = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False, width=64)


def test_token_range_and_known_values():
    assert (TOK.token_start, TOK.token_end) == (31744, 32000)
    # -1 is in bin 1 → id 31999; +1 equals the last edge → digit 256 → id 31744
    assert TOK.encode(np.array([-1.0, 1.0])).tolist() == [31999, 31744]
    # decode: id 31999 → centre 0 (−1 + 1/255), id 31744 → clipped to centre 254
    np.testing.assert_allclose(TOK.decode(np.array([31999, 31744])), [-1 + 1 / 255, 1 - 1 / 255])


@given(arrays(np.float64, st.integers(1, 16), elements=floats))
def test_encode_in_range_and_monotone(x):
    ids = TOK.encode(x)
    assert ids.dtype == np.int64
    assert ((ids >= TOK.token_start) & (ids < TOK.token_end)).all()
    order = np.argsort(x, kind="stable")
    assert (np.diff(ids[order]) <= 0).all()  # larger action → smaller id


@given(arrays(np.float64, st.integers(1, 16), elements=st.floats(-1.0, 1.0, width=64)))
def test_decode_error_at_most_one_bin(x):
    # within [-1, 1], decoding returns a value within one bin width of the input
    assert np.abs(TOK.decode(TOK.encode(x)) - x).max() <= 2.0 / 255 + 1e-12


@given(st.integers(0, 254))
def test_bin_centre_round_trip(k):
    centre = TOK.bin_centers[k]
    token = TOK.encode(np.array([centre]))
    assert TOK.decode(token)[0] == centre
    assert TOK.encode(TOK.decode(token)).tolist() == token.tolist()


@settings(max_examples=50)
@given(arrays(np.float64, (4, 7), elements=floats))
def test_torch_matches_numpy(x):
    ids_np = TOK.encode(x)
    ids_t = TOK.encode(torch.from_numpy(x))
    assert ids_t.dtype == torch.int64 and ids_t.tolist() == ids_np.tolist()
    np.testing.assert_allclose(TOK.decode(ids_t).numpy(), TOK.decode(ids_np), atol=1e-7)


def _official_encode(x: np.ndarray) -> np.ndarray:
    """OpenVLA's rule, written out: vocab_end − digitize(clip(x, −1, 1), linspace(−1, 1, 256))."""
    return 32000 - np.digitize(np.clip(x, -1.0, 1.0), np.linspace(-1.0, 1.0, 256))


def test_encode_is_the_official_rule_on_a_grid():
    grid = np.concatenate([np.linspace(-1.2, 1.2, 20_001), TOK.bins, TOK.bin_centers])
    np.testing.assert_array_equal(TOK.encode(grid), _official_encode(grid))
    np.testing.assert_array_equal(TOK.encode(torch.from_numpy(grid)).numpy(), _official_encode(grid))
    # the top is not a fixed point of encode ∘ decode: +1's token decodes to the last centre, which encodes one
    # token lower — what `retokenize` exists for
    assert TOK.encode(TOK.decode(np.array([31744]))).tolist() == [31745]


def test_retokenize_inverts_decode_for_every_action_token_but_the_duplicate_top_one():
    tokens = np.arange(TOK.token_start, TOK.token_end)
    expected = np.where(tokens == TOK.vocab_end - 255, TOK.vocab_end - 256, tokens)   # 31745 → 31744
    np.testing.assert_array_equal(TOK.retokenize(TOK.decode(tokens)), expected)
    ids = torch.from_numpy(tokens)
    retokenized = TOK.retokenize(TOK.decode(ids))                                    # float32 centres
    assert retokenized.dtype == torch.int64 and retokenized.tolist() == expected.tolist()
    # +1 is a fixed point of the round trip; elsewhere retokenize is encode (including beyond the box)
    one = TOK.retokenize(np.array([1.0]))
    assert one.tolist() == [31744] and TOK.retokenize(TOK.decode(one)).tolist() == [31744]
    grid = np.linspace(-1.2, 1.2, 20_001)
    below = grid < TOK.bin_centers[-1]
    np.testing.assert_array_equal(TOK.retokenize(grid)[below], TOK.encode(grid)[below])
    assert (TOK.retokenize(grid)[~below] == 31744).all()
