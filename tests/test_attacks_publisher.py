"""Attack suite: no duplicate publishes on a healthy connection. Rows were
re-sent when their PUBACK had arrived but was not yet recorded in SQLite
(about 10 in 2,000); each publish is now tracked by its own paho handle and
stays in flight until its ack is recorded. Prints the measured count."""
import collections
import threading
import time

import pytest

from tests.mosquitto import Subscriber
from tests.test_alerts_publisher import TOPICS, Rig, settings_for

pytestmark = pytest.mark.slow
N_ALERTS = 2000


def test_2000_alerts_on_a_healthy_connection_are_each_published_once(tmp_path, mosquitto):
    rig = Rig(str(tmp_path / "state"), settings_for(mosquitto.port))
    with Subscriber(mosquitto.port, [TOPICS.alert]) as sub:
        rig.publisher.start()
        try:
            def feed():                              # rows arrive as the appliance commits them
                for start in range(0, N_ALERTS, 10):
                    rig.enqueue(start, 10)
                    time.sleep(0.002)
            feeder = threading.Thread(target=feed)
            feeder.start()
            feeder.join(120)
            assert sub.wait_for(lambda s: len({m.payload for m in s.messages}) >= N_ALERTS, 120)
            assert sub.wait_for(lambda s: rig.outbox.depth() == 0, 60)
            time.sleep(1.0)                          # any late re-send would arrive now
            stats = rig.publisher.stats()
        finally:
            rig.publisher.stop()
    counts = collections.Counter(m.payload for m in sub.messages)
    duplicates = sum(n - 1 for n in counts.values())
    print("\n%d alerts, %d messages received, %d duplicate publishes, %d disconnects"
          % (N_ALERTS, len(sub.messages), duplicates, stats["disconnects"]))
    assert stats["disconnects"] == 0, "the connection was not healthy"
    assert len(counts) == N_ALERTS
    assert duplicates == 0


def test_a_row_is_never_marked_sent_by_another_messages_ack_after_message_ids_wrap(tmp_path, mosquitto):
    """paho's message ids wrap at 65535. An acknowledged status message's id
    used to be kept and matched to a later row that got the same id, marking
    that row sent without its own PUBACK. The wrap is forced here by
    rewinding paho's id counter; the broker is frozen (SIGSTOP) so the row
    cannot really be acknowledged."""
    import signal
    rig = Rig(str(tmp_path / "state"), settings_for(mosquitto.port))
    rig.publisher.start()
    frozen = False
    try:
        assert sub_wait(lambda: rig.publisher.connected, 10)
        info = rig.publisher.publish_status()
        info.wait_for_publish(5)
        assert info.is_published()
        time.sleep(0.3)                                   # the pump has seen that ack
        mosquitto.proc.send_signal(signal.SIGSTOP)
        frozen = True
        rig.publisher._client._last_mid = info.mid - 1    # the next publish reuses the status's id
        rig.enqueue(0, 1)
        time.sleep(1.5)
        assert rig.outbox.depth() == 1, "the row was marked sent by the status message's ack"
        mosquitto.proc.send_signal(signal.SIGCONT)
        frozen = False
        assert sub_wait(lambda: rig.outbox.depth() == 0, 20)   # its own PUBACK, once the broker answers
    finally:
        if frozen:
            mosquitto.proc.send_signal(signal.SIGCONT)
        rig.publisher.stop()


def sub_wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
