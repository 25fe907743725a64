"""The server: REST API, WebSocket signaling, and the media router."""
