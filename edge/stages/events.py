"""Events that are not one file's verdict (appliance events, strays in
incoming/), and the report of a healed or missing database."""
import logging
import os
from typing import Any, Callable

from edge.alerts.messages import Event
from edge.alerts.outbox import Outbox
from edge.alerts.schema import build_event
from edge.alerts.topics import Topics
from edge.settings import Settings
from edge.store import Store, one_line

log = logging.getLogger(__name__)


class Events:
    def __init__(self, settings: Settings, store: Store, outbox: Outbox, topics: Topics,
                 notify: Callable[[], None]):
        self.settings, self.store, self.outbox, self.topics = settings, store, outbox, topics
        self._notify = notify

    def build(self, kind: str, message: str, **fields: Any) -> Event:
        return build_event(kind, message, site=self.settings.site, device=self.settings.device, **fields)

    def queue(self, conn, event: Event) -> None:
        """Inside the caller's transaction (a file's verdict commits with its ledger row)."""
        self.outbox.enqueue_event(conn, self.topics, event)

    def publish(self, code: str, message: str, kind: str = "recovered", **fields: Any) -> None:
        """Queue an appliance event now; never raises: if the store cannot
        take it (e.g. the disk is full), the log has it."""
        try:
            event = self.build(kind, message, code=code, **fields)
            with self.store.transaction() as conn:
                self.queue(conn, event)
        except Exception as exc:  # noqa: BLE001 - the log has it
            log.warning("cannot queue the %s event: %s", code, one_line(exc))
            return
        self._notify()


def report_store_health(store: Store, done_folder: str, events: Events) -> None:
    """A healed or missing database is logged and published as an event."""
    healed = store.healed
    if healed is not None:
        log.error("database %s was corrupt (%s): moved aside to %s, a new one created; "
                  "%s unsent outbox row(s) carried over", store.path, healed.reason,
                  healed.moved_to, "no" if healed.unreadable else healed.carried_over)
        events.publish("store_corrupt", "database was corrupt and was replaced",
                       moved_to=os.path.basename(healed.moved_to), error=healed.reason,
                       carried_over=healed.carried_over, old_outbox_unreadable=healed.unreadable)
    elif store.created:
        try:
            done = len(os.listdir(done_folder))
        except OSError:
            done = 0
        if done:
            log.error("database %s was missing but done/ holds %d file(s): their records and "
                      "any alerts not yet sent for them are gone", store.path, done)
            events.publish("store_missing", "database was missing; a new one was created",
                           files_in_done=done)
