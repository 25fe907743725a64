"""The classroom agent: the headless endpoint on a classroom box."""
