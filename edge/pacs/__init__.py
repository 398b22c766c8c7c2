"""Results back to PACS: a Secondary Capture of the overlay and an Enhanced SR
with the finding, in the source's study, sent by C-STORE from a durable queue."""
