"""No radiograph is in colour: a colour picture is refused at decode as
not_a_chest_radiograph; a grey film stored as RGB, as an RGB JPEG or with a
small coloured annotation is still read."""
import cv2
import numpy as np
import pytest

from edge.decode import decode_file
from edge.decode.raster import COLOUR_SHARE_MAX, colour_share
from edge.errors import NotAChestRadiograph
from edge.phantom import chest_phantom


def _grey_film(side=512):
    return (np.clip(chest_phantom(side, side), 0, 1) * 255).astype(np.uint8)


def _write(tmp_path, name, img, params=()):
    path = str(tmp_path / name)
    assert cv2.imwrite(path, img, list(params))
    return path


def test_a_colour_photograph_is_refused_with_the_reason(tmp_path):
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    photo = cv2.resize(blocks, (512, 512), interpolation=cv2.INTER_NEAREST)
    with pytest.raises(NotAChestRadiograph, match="in colour") as exc:
        decode_file(_write(tmp_path, "photo.png", photo))
    assert exc.value.code == "not_a_chest_radiograph"


def test_a_colour_jpeg_is_refused_too(tmp_path):
    photo = np.zeros((512, 512, 3), np.uint8)
    photo[..., 2] = 200                                  # red in BGR
    photo[:, 256:, 1] = 180
    with pytest.raises(NotAChestRadiograph):
        decode_file(_write(tmp_path, "photo.jpg", photo, (cv2.IMWRITE_JPEG_QUALITY, 90)))


@pytest.mark.parametrize("name,params", [("film.png", ()), ("film.jpg", (cv2.IMWRITE_JPEG_QUALITY, 60))])
def test_a_grey_film_stored_as_rgb_is_read(tmp_path, name, params):
    rgb = cv2.cvtColor(_grey_film(), cv2.COLOR_GRAY2BGR)
    image = decode_file(_write(tmp_path, name, rgb, params))
    assert image.pixels.ndim == 2 and image.pixels.shape == (512, 512)


def test_a_small_coloured_annotation_does_not_make_a_film_a_photograph(tmp_path):
    rgb = cv2.cvtColor(_grey_film(), cv2.COLOR_GRAY2BGR)
    cv2.rectangle(rgb, (40, 40), (130, 130), (0, 0, 255), thickness=-1)    # about 3 % of the area, red
    assert 0 < colour_share(rgb) <= COLOUR_SHARE_MAX
    decode_file(_write(tmp_path, "annotated.png", rgb))
