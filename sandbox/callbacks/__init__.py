"""Callbacks: the durable outbox, envelopes, and the dispatcher (reference §6)."""
