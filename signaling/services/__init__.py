"""Background services of a server: the lesson scheduler and the link-quality sampler."""
