"""The write side's application layer: commands, the unit of work, judging, reconciliation,
history and verify. Imports the domain and the ports, never infrastructure."""

from ledger.application.chunking import STREAM_CHUNK
from ledger.application.ledger import Ledger
from ledger.application.results import AdmissionResult, Verification

__all__ = ["STREAM_CHUNK", "AdmissionResult", "Ledger", "Verification"]
