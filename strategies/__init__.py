"""The shipped strategy files (one YAML per mode); installed as the package ``basis_live.strategies``."""
