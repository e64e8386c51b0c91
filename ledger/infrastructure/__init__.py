"""Infrastructure behind the ledger's small interfaces: recorders, transcoder, publishers."""
