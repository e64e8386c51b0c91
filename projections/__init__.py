"""Read models built from the windows' events: receipts and gate, admitted events, quarantine."""
