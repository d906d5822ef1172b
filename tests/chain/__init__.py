"""Local test chain for basis-live's on-chain venues: anvil on 127.0.0.1 with a real Aave V3 market.

``tools`` fetches anvil and the Aave V3 artifacts into a cache outside the repository, ``anvil``
runs the node, and ``aave_market`` deploys the market onto it. Aave's core contracts are BUSL-1.1:
their bytecode is read from the cache at run time and never committed.
"""
