"""State behind two narrow interfaces: the durable `Store` and the hot `Counters`."""
