"""Rate-limit algorithms, kept apart from the storage they run on."""
