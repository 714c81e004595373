"""One module per peer queue: its parent-side runner and its worker entry point."""
