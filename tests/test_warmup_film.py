"""The start-up warm-up runs a synthetic film through the per-film path
(decode, model inputs, models, overlay) without touching folders, store or MQTT."""
import logging

from edge.decode import decode_bytes
from edge.inference.manifest import load_manifest
from edge.inference.onnxruntime import OnnxRuntimeBackend
from edge.pipeline import Pipeline
from edge.settings import DecodeSettings, Settings
from edge.stages.warmup import synthetic_dicom, warm_film_path
from tests.tiny_models import write_tiny_models


def _pipeline(tmp_path):
    cls, seg = write_tiny_models(str(tmp_path))
    return Pipeline(OnnxRuntimeBackend(load_manifest(cls), threads=1),
                    OnnxRuntimeBackend(load_manifest(seg), threads=1))


def test_the_synthetic_film_is_a_dicom_the_decoder_reduces(tmp_path):
    image = decode_bytes(synthetic_dicom(2048), DecodeSettings(), min_side=1024)
    assert image.source_format == "dicom" and image.pixels.shape == (1024, 1024)
    assert image.original_hw == (2048, 2048)          # the reduced path ran


def test_every_step_of_the_path_runs_and_is_timed(tmp_path):
    timings = warm_film_path(_pipeline(tmp_path), Settings(), 1024)
    assert set(timings) == {"decode_ms", "prepare_ms", "infer_ms", "overlay_ms"}
    assert all(v > 0 for v in timings.values())


def test_the_intake_threads_steps_stop_before_the_models(tmp_path):
    assert set(warm_film_path(_pipeline(tmp_path), Settings(), 1024, ("decode", "prepare"))) == {
        "decode_ms", "prepare_ms"}


def test_without_overlays_the_overlay_is_not_rendered(tmp_path):
    settings = Settings()
    settings.mqtt.publish_overlay = False
    assert "overlay_ms" not in warm_film_path(_pipeline(tmp_path), settings, 256)


def test_the_film_fits_what_the_site_decodes(tmp_path):
    settings = Settings()
    settings.decode.allowed_modalities = ["CR"]
    settings.decode.max_side = 1500
    assert set(warm_film_path(_pipeline(tmp_path), settings, 1024)) == {
        "decode_ms", "prepare_ms", "infer_ms", "overlay_ms"}


def test_a_failing_step_is_logged_and_start_up_goes_on(tmp_path, caplog):
    pipeline = _pipeline(tmp_path)
    pipeline.close()                      # its sessions are gone: the models' step fails
    with caplog.at_level(logging.WARNING, logger="edge.stages.warmup"):
        timings = warm_film_path(pipeline, Settings(), 1024)
    assert set(timings) == {"decode_ms", "prepare_ms"}      # what ran before the failure
    assert "warm-up film could not go through the per-film path" in caplog.text
