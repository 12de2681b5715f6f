"""Provider keys sealed with envelope encryption."""
