"""Usage: prices, token counting, the ledger writer, reports."""
