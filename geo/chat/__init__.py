"""Residents report by chat: one conversation core, and an adapter per chat platform."""
