"""Venues behind one interface (``venues.base.Venue``): paper now; ccxt and web3 later."""
