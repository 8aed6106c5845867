"""Image transforms (three resize strategies), prompt construction and training batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vla_parl.models.openvla.image_transforms import ImageTransform
from vla_parl.models.openvla.presets import DINOSIGLIP_MEANS, DINOSIGLIP_STDS
from vla_parl.models.openvla.processor import IGNORE_INDEX, build_prompt


def _transform(strategy, size=28):
    return ImageTransform.build(strategy, [size, size], DINOSIGLIP_MEANS, DINOSIGLIP_STDS)


def _unnormalise(t, i):
    mean = torch.tensor(DINOSIGLIP_MEANS[i])[:, None, None]
    std = torch.tensor(DINOSIGLIP_STDS[i])[:, None, None]
    return t[3 * i: 3 * i + 3] * std + mean


def test_resize_naive_equals_pil_bicubic():
    img = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    out = _transform("resize-naive")(img)
    assert out.shape == (6, 28, 28) and out.dtype == torch.float32
    expected = np.asarray(Image.fromarray(img).resize((28, 28), Image.BICUBIC), dtype=np.float32) / 255
    for i in range(2):
        np.testing.assert_allclose(_unnormalise(out, i).permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_resize_crop_keeps_centre():
    # a 20×40 image whose left and right quarters are red and centre half blue: the crop keeps only blue
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :10] = (255, 0, 0)
    img[:, 30:] = (255, 0, 0)
    img[:, 10:30] = (0, 0, 255)
    rgb = _unnormalise(_transform("resize-crop")(img), 1)
    assert rgb.shape == (3, 28, 28)
    assert rgb[2].min() > 0.9 and rgb[0].max() < 0.1


def test_letterbox_pads_with_last_backbone_mean():
    # a wide 10×30 image: int((30-10)/2) = 10 rows of fill above and below → square 30×30
    img = np.full((10, 30, 3), 255, np.uint8)
    transform = _transform("letterbox", size=30)
    assert transform.letterbox_fill == (127, 127, 127)
    rgb = _unnormalise(transform(img), 0)
    np.testing.assert_allclose(rgb[:, 0, 15].numpy(), [127 / 255] * 3, atol=1e-5)  # padded row
    np.testing.assert_allclose(rgb[:, 15, 15].numpy(), [1.0] * 3, atol=1e-5)  # image row


def test_preprocessor_config_round_trip(tmp_path):
    for strategy in ("resize-naive", "letterbox", "resize-crop"):
        t = _transform(strategy)
        t.save(tmp_path)
        import json

        again = ImageTransform.from_preprocessor_config(json.loads((tmp_path / "preprocessor_config.json").read_text()))
        assert again == t


def test_bad_images_get_clear_errors():
    t = _transform("resize-naive")
    with pytest.raises(ValueError, match="H×W×3"):
        t(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="dtype uint8"):
        t(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(TypeError, match="PIL image or a uint8"):
        t("image.png")


def test_prompt_and_space_token(tiny_vla):
    assert build_prompt("Pick Up the RED block") == "In: What action should the robot take to pick up the red block?\nOut:"
    ids = tiny_vla.processor.prompt_ids("pick up the red block")
    assert ids[0] == 1 and ids[-1] == 29871 and ids.count(29871) == 1
    assert tiny_vla.processor.batch_prompt_ids(["pick up the red block"]) == [ids]


def test_training_batch_supervises_action_tokens_and_eos_only(tiny_vla):
    processor = tiny_vla.processor
    actions = torch.tensor([[31800, 31801, 31802, 31803, 31804, 31805, 31806],
                            [31900, 31901, 31902, 31903, 31904, 31905, 31906]])
    images = [np.zeros((56, 56, 3), np.uint8)] * 2
    batch = processor.training_batch(images, ["open the drawer", "pick up the red block now"], actions)
    for b in range(2):
        n = int(batch.attention_mask[b].sum())
        supervised = batch.labels[b][batch.labels[b] != IGNORE_INDEX].tolist()
        assert supervised == actions[b].tolist() + [processor.tokenizer.eos_token_id]
        assert batch.input_ids[b, n - 8: n].tolist() == supervised  # last 8 real tokens
        assert batch.input_ids[b, :n].tolist()[: n - 8] == processor.prompt_ids(
            ["open the drawer", "pick up the red block now"][b])
    assert batch.pixel_values.shape == (2, 6, 56, 56)
