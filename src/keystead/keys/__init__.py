"""Virtual keys: their text, their hash, their names."""
