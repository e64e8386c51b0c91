"""The admission ledger: exactly-once admission for at-least-once event streams."""
