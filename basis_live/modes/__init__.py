"""Strategy logic, one module per mode, behind the ``StrategyMode`` interface (``modes.base``)."""
