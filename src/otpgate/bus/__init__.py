"""Buses: how events travel from the store's outbox to subscribers."""
