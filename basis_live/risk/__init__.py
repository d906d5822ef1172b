"""Risk: pure limit evaluation (``risk.limits``) and the in-process watchdog (``risk.watchdog``)."""
