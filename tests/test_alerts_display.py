"""The terminal display's lines (`pneumo-edge alerts`), from payloads as the appliance builds them."""
from edge.alerts.display import format_event
from edge.alerts.schema import build_event


def event(message="not DICOM, PNG or JPEG", **fields):
    return build_event("rejected", message, site="ward-4", device="cart-7", **fields).to_json()


def test_event_line_names_the_file_and_the_reason_code():
    line = format_event(event(file_name="IM0042.dcm", sha256="ab" * 32, code="not_an_image"))
    assert "ward-4/cart-7" in line and "EVENT rejected" in line
    assert "file=IM0042.dcm" in line and "code=not_an_image" in line and "not DICOM, PNG or JPEG" in line


def test_event_without_a_file_still_reads_well():
    line = format_event(build_event("disk_low", "2.0 GiB free", site="s", device="d").to_json())
    assert "EVENT disk_low" in line and "file=" not in line and "code=" not in line and line.endswith("2.0 GiB free")


def test_a_hostile_file_name_stays_on_one_line():
    line = format_event(event(message="bad\nFORGED", file_name="a b\n12:00:00  x/y  POSITIVE.dcm", code="corrupt"))
    assert "\n" not in line and "\r" not in line
    assert 'file="a b\\n12:00:00  x/y  POSITIVE.dcm"' in line and "code=corrupt" in line


def test_an_unreachable_broker_is_said_once_not_silently_waited_for():
    import io
    from edge.alerts.display import run_display
    from edge.settings import MqttSettings
    from tests.mosquitto import free_port
    out = io.StringIO()
    settings = MqttSettings(port=free_port(), reconnect_min_s=0.1, reconnect_max_s=0.2)   # nothing listens
    assert run_display(settings, "+/+", out=out, timeout=2.0) == 0
    lines = out.getvalue().splitlines()
    assert len([l for l in lines if "cannot connect to 127.0.0.1:%d" % settings.port in l]) == 1, lines
