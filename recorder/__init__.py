"""Lesson recording, finalisation and the resource library."""
