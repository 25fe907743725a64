"""Finalisation: packet logs → per-room files, composite, HLS, thumbnails and chapters."""
