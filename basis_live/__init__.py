"""basis-live: run crypto basis and yield strategies with a risk watchdog and SQLite state."""

__version__ = "0.1.0"
