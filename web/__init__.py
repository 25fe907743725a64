"""Browser pages, served by the signaling server without any CDN."""
