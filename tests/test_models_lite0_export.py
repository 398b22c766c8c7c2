"""The shared-encoder network's pieces: one training step runs, the exported
classifier's distance column is models.ood.distance of the frozen gate
encoder's features, its h-flip logit is the mean the runtime's TTA took, and
the mask-only module is the U-Net's mask."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segmentation_models_pytorch")
pytestmark = pytest.mark.models

from edge.inference.manifest import PreprocessSpec, WindowSpec  # noqa: E402
from models.cvtrain import Recipe, predict, train_net  # noqa: E402
from models.export_lite0 import ClassifierHead, MaskOnly  # noqa: E402
from models.nets import (build_gate_encoder, build_lite0_unet, count_parameters, count_used_parameters,  # noqa: E402
                         gate_features)
from models.ood import distance  # noqa: E402

SPEC = PreprocessSpec((64, 64), 1, (0.5,), (0.5,), window=WindowSpec())


def test_one_epoch_trains_and_predicts_every_output():
    rng = np.random.default_rng(0)
    planes = rng.random((6, 64, 64)).astype(np.float32)
    masks = np.zeros((6, 64, 64), np.uint8)
    masks[:2, 10:30, 10:30] = 1
    labels = np.array([1, 1, 1, 0, 0, 0])
    has_mask = np.array([True, True, False, True, True, True])
    net = train_net(planes, masks, labels, has_mask, SPEC,
                    Recipe(epochs=1, batch_size=3, decoder_channels=(16, 8, 8, 8, 8)), say=lambda m: None)
    out = predict(net, planes, SPEC, tta=True, batch=3)
    assert out["prob"].shape == (6, 64, 64) and out["logit"].shape == (6,) and out["feat"].shape == (6, 496)
    assert np.isfinite(out["logit"]).all() and np.isfinite(out["logit_flip"]).all()


def test_exported_modules_compute_what_the_runtime_reads():
    torch.manual_seed(0)
    net = build_lite0_unet((16, 8, 8, 8, 8), pretrained=False).eval()
    gate = build_gate_encoder()
    rng = np.random.default_rng(1)
    mean, w = rng.normal(size=176), rng.normal(size=(176, 176)) / 20
    lay_mean, lay_w = rng.normal(size=256), rng.normal(size=(256, 256)) / 20
    ood = {"mean": mean, "whitening": w, "layout_mean": lay_mean, "layout_whitening": lay_w}
    x = torch.from_numpy(rng.normal(size=(2, 1, 64, 64)).astype(np.float32))
    with torch.no_grad():
        out = ClassifierHead(net, ood, gate).eval()(x).numpy()
        tta = ClassifierHead(net, ood, gate, hflip=True).eval()(x).numpy()
        ref_mask, ref_logit = net(x)
        _, ref_mirrored = net(torch.flip(x, dims=(3,)))
        gate_feats = gate_features(gate, x).numpy()
        mask = MaskOnly(net).eval()(x)
    np.testing.assert_allclose(out[:, 0], ref_logit.numpy()[:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tta[:, 0], 0.5 * (ref_logit + ref_mirrored).numpy()[:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[:, 1], distance(gate_feats, mean, w), rtol=1e-3)
    np.testing.assert_allclose(tta[:, 1:], out[:, 1:], rtol=1e-6)     # the gate reads the input, not its mirror
    thumb = x.numpy().reshape(2, 16, 4, 16, 4).mean(axis=(2, 4)).reshape(2, 256)   # 4 x 4 blocks of 64 px
    np.testing.assert_allclose(out[:, 2], distance(thumb, lay_mean, lay_w), rtol=1e-3)
    np.testing.assert_allclose(mask.numpy(), ref_mask.numpy(), atol=1e-6)


def test_the_gate_encoder_is_imagenet_lite0_untouched_by_training():
    gate = build_gate_encoder()
    trained = build_lite0_unet((16, 8, 8, 8, 8), pretrained=True).encoder
    assert not any(p.requires_grad for p in gate.parameters()) and not gate.training
    for (k, a), (_, b) in zip(gate.state_dict().items(), trained.state_dict().items()):
        assert torch.equal(a, b), k
    x = torch.zeros(1, 1, 64, 64)
    assert gate_features(gate, x).shape == (1, 24 + 40 + 112)


def test_the_manifests_parameter_count_is_what_each_exported_graph_computes_with():
    # The gate's encoder carries ImageNet's unused stride-32 stage and head; the segmenter's
    # module wraps a net whose image-level head it never runs. Neither is in its ONNX file.
    net = build_lite0_unet((16, 8, 8, 8, 8), pretrained=False).eval()
    gate = build_gate_encoder(pretrained=False)
    ood = dict(mean=np.zeros(176), whitening=np.eye(176), layout_mean=np.zeros(256), layout_whitening=np.eye(256))
    shape = (1, 1, 64, 64)
    mask_only = MaskOnly(net)
    assert count_used_parameters(mask_only, shape) == count_parameters(mask_only) - count_parameters(
        net.classification_head) - count_parameters(net.encoder.conv_head) - count_parameters(net.encoder.bn2)
    head = ClassifierHead(net, ood, gate, hflip=True).eval()
    gate_unused = sum(count_parameters(b) for b in gate.blocks[5:]) + count_parameters(gate.conv_head) + \
        count_parameters(gate.bn2)
    assert gate_unused > 0
    assert count_used_parameters(head, shape) == count_parameters(head) - gate_unused - count_parameters(
        net.encoder.conv_head) - count_parameters(net.encoder.bn2)
    assert all(not p.requires_grad and p.grad is None for p in gate.parameters())  # left frozen
