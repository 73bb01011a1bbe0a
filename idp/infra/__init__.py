"""Infrastructure shared by every layer: settings, extensions, logs, metrics, mail, counters."""
