"""The mode-agnostic engine: clock, portfolio valuation, order management, the tick loop."""
