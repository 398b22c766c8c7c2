"""pneumo-edge: the on-device pneumothorax triage runtime (Python 3.8+)."""

__version__ = "0.1.0"
