"""Crash-safe capture of a live lesson as per-track packet logs (the recorder as a sink)."""
