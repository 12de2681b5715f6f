"""Provider adapters, the transports under them, and the built-in mock upstream."""
