"""Local test chain for basis-live's on-chain venues: anvil on 127.0.0.1 with a real Aave V3 market.

``tools`` fetches anvil and the Aave V3 artifacts into a cache outside the repository, ``anvil``
runs the node, ``aave_market`` deploys the market onto it, and ``lst_market`` deploys our own
staking and swap contracts (``contracts/``, MIT, built by ``scripts/build_contracts.mjs``) and lists
our wstETH and weETH as the market's reserves. Aave's core contracts are BUSL-1.1: their bytecode is
read from the cache at run time and never committed.
"""
