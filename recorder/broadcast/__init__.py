"""Live broadcast of a lesson as HLS, and the HTTP routes that serve it to viewers."""
