"""Retouch."""
