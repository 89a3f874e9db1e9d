"""The pure core: graphs, states, templates, backoff. No I/O, no framework."""
