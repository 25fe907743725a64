"""Live lessons: signaling sessions over `/ws/v1`, who is in which lesson, and its state.

Builds on `signaling.media` (one `RoomConnection` per session) and speaks the wire format
of `signaling.protocol`. See docs/ARCHITECTURE.md and docs/protocol.md.
"""
