"""Aave V3 on a local anvil chain: the real protocol contracts, real transactions, real outcomes.

One anvil node and one market deployment serve the whole session; every test runs between an
``evm_snapshot`` and an ``evm_revert``, so tests see the freshly deployed market and may move the
clock or the oracle freely. Amounts are raw integers (token units, 8-decimal USD from the oracle,
RAY indices) and expected values are computed with the same integer math Aave uses, so balances
are compared to the wei.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError
from web3.types import TxReceipt

from chain.aave_market import (
    ASSETS,
    EMODE_ETH,
    EMODE_ETH_BORROWABLE,
    EMODE_ETH_COLLATERAL,
    EMODE_ETH_ID,
    MAX_UINT256,
    RAY,
    SEED_LIQUIDITY,
    STANDARD,
    VARIABLE_RATE,
    AaveMarket,
    revert_reason,
    send,
)
from chain.anvil import AnvilNode, advance_time

SECONDS_PER_YEAR = 365 * 24 * 3600  # Aave's MathUtils.SECONDS_PER_YEAR
BPS = 10_000
WAD = 10**18
# Dev accounts 0 and 1 are the market's admin and liquidity provider.
USER = 2
BORROWER = 3


def ray_mul(a: int, b: int) -> int:
    """WadRayMath.rayMul: half-up rounding."""
    return (a * b + RAY // 2) // RAY


def supply(market: AaveMarket, user: str, symbol: str, amount: int) -> TxReceipt:
    """Mint ``amount`` whole tokens to ``user`` and supply them all to the pool."""
    token = market.tokens[symbol]
    raw = market.units(symbol, amount)
    market.mint(symbol, user, raw)
    send(token.functions.approve(market.pool.address, raw), user)
    return send(market.pool.functions.supply(token.address, raw, user, 0), user)


def send_signed(w3: Web3, fn: ContractFunction, private_key: str) -> TxReceipt:
    """Sign locally and send raw, as a live venue does with its own key."""
    account = w3.eth.account.from_key(private_key)
    tx = fn.build_transaction(
        {"from": account.address, "nonce": w3.eth.get_transaction_count(account.address, "pending")}
    )
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.01)
    assert receipt["status"] == 1
    return receipt


def create_usdt_utilisation(market: AaveMarket, borrower: str, usdt: int) -> None:
    """A borrower posts WETH and borrows ``usdt`` whole USDT, so USDT rates become non-zero."""
    supply(market, borrower, "WETH", 5_000)  # 15M USD at 80% LTV: room for 12M USDT
    send(market.pool.functions.borrow(
        market.tokens["USDT"].address, usdt * 10**6, VARIABLE_RATE, 0, borrower
    ), borrower)


def test_market_is_configured_as_specified(market: AaveMarket) -> None:
    pool, data_provider = market.pool, market.data_provider
    for role, address in market.addresses.items():
        assert market.w3.eth.get_code(address), role
    assert pool.functions.getReservesList().call() == [t.address for t in market.tokens.values()]
    for spec in ASSETS:
        asset = market.tokens[spec.symbol].address
        config = data_provider.functions.getReserveConfigurationData(asset).call()
        assert (config.ltv, config.liquidationThreshold, config.liquidationBonus) == (
            STANDARD.ltv, STANDARD.liquidation_threshold, STANDARD.liquidation_bonus
        ), spec.symbol
        assert config.usageAsCollateralEnabled and config.borrowingEnabled and config.isActive
        assert config.decimals == spec.decimals
        assert market.price(spec.symbol) == spec.usd_price * 10**8
    emode = pool.functions.getEModeCategoryCollateralConfig(EMODE_ETH_ID).call()
    assert (emode.ltv, emode.liquidationThreshold, emode.liquidationBonus) == (
        EMODE_ETH.ltv, EMODE_ETH.liquidation_threshold, EMODE_ETH.liquidation_bonus
    )

    def bitmap(symbols: tuple[str, ...]) -> int:
        """eMode membership is a bitmap over reserve ids (their listing order)."""
        return sum(1 << pool.functions.getReserveData(market.tokens[s].address).call().id for s in symbols)

    collateral_bitmap = pool.functions.getEModeCategoryCollateralBitmap(EMODE_ETH_ID).call()
    borrowable_bitmap = pool.functions.getEModeCategoryBorrowableBitmap(EMODE_ETH_ID).call()
    assert collateral_bitmap == bitmap(EMODE_ETH_COLLATERAL)
    assert borrowable_bitmap == bitmap(EMODE_ETH_BORROWABLE)
    for symbol, whole in SEED_LIQUIDITY.items():
        a_token = market.a_token(symbol)
        assert a_token.functions.balanceOf(market.liquidity_provider).call() == market.units(symbol, whole)


def test_supply_usdt_mints_atokens_one_to_one(market: AaveMarket, anvil_node: AnvilNode) -> None:
    w3, usdt, a_usdt = market.w3, market.tokens["USDT"], market.a_token("USDT")
    user = anvil_node.accounts[USER]
    amount = market.units("USDT", 250_000)
    market.mint("USDT", user, amount)

    key = anvil_node.private_keys[USER]
    send_signed(w3, usdt.functions.approve(market.pool.address, amount), key)
    receipt = send_signed(w3, market.pool.functions.supply(usdt.address, amount, user, 0), key)

    block = receipt["blockNumber"]
    assert usdt.functions.balanceOf(user).call(block_identifier=block) == 0
    assert a_usdt.functions.balanceOf(user).call(block_identifier=block) == amount
    # No borrows yet, so the index is still exactly 1 and the scaled balance is the amount.
    index = market.pool.functions.getReserveData(usdt.address).call(block_identifier=block).liquidityIndex
    assert index == RAY
    assert a_usdt.functions.scaledBalanceOf(user).call(block_identifier=block) == amount


def test_usdt_interest_accrues_as_scaled_balance_times_liquidity_index(
    market: AaveMarket, anvil_node: AnvilNode
) -> None:
    usdt, a_usdt, pool = market.tokens["USDT"], market.a_token("USDT"), market.pool
    user, borrower = anvil_node.accounts[USER], anvil_node.accounts[BORROWER]
    supply(market, user, "USDT", 100_000)
    create_usdt_utilisation(market, borrower, 8_000_000)

    before = pool.functions.getReserveData(usdt.address).call()
    assert before.currentLiquidityRate > 0
    supplied = a_usdt.functions.balanceOf(user).call()
    scaled = a_usdt.functions.scaledBalanceOf(user).call()

    advance_time(market.w3, 30 * 24 * 3600)
    grown = a_usdt.functions.balanceOf(user).call()
    assert grown > supplied
    # getReserveData's index only moves when a transaction touches the reserve (the balance view
    # accrues on the fly), so the stored index still prices the position at its old value.
    stale_index = pool.functions.getReserveData(usdt.address).call().liquidityIndex
    assert stale_index == before.liquidityIndex
    assert ray_mul(scaled, stale_index) < grown

    # Any supply touches the reserve: the index is brought forward to that block's timestamp.
    touch = supply(market, market.liquidity_provider, "USDT", 1)
    block = touch["blockNumber"]
    after = pool.functions.getReserveData(usdt.address).call(block_identifier=block)
    assert after.lastUpdateTimestamp == market.w3.eth.get_block(block)["timestamp"]
    # Supply interest is linear between updates: index x (1 + rate x dt / year), in RAY.
    elapsed = after.lastUpdateTimestamp - before.lastUpdateTimestamp
    linear = RAY + before.currentLiquidityRate * elapsed // SECONDS_PER_YEAR
    assert after.liquidityIndex == ray_mul(linear, before.liquidityIndex)
    balance = a_usdt.functions.balanceOf(user).call(block_identifier=block)
    assert a_usdt.functions.scaledBalanceOf(user).call(block_identifier=block) == scaled
    assert balance == ray_mul(scaled, after.liquidityIndex)
    # Sanity on size: 30 days at the supply rate (~4.1% a year at 79% utilisation).
    assert balance - supplied == pytest.approx(
        supplied * before.currentLiquidityRate * elapsed / SECONDS_PER_YEAR / RAY, rel=1e-3
    )


def test_withdraw_max_returns_principal_and_interest_and_leaves_no_atoken(
    market: AaveMarket, anvil_node: AnvilNode
) -> None:
    usdt, a_usdt, pool = market.tokens["USDT"], market.a_token("USDT"), market.pool
    user, borrower = anvil_node.accounts[USER], anvil_node.accounts[BORROWER]
    supply(market, user, "USDT", 100_000)
    create_usdt_utilisation(market, borrower, 8_000_000)
    advance_time(market.w3, 7 * 24 * 3600)
    scaled = a_usdt.functions.scaledBalanceOf(user).call()

    receipt = send(pool.functions.withdraw(usdt.address, MAX_UINT256, user), user)

    block = receipt["blockNumber"]
    index = pool.functions.getReserveData(usdt.address).call(block_identifier=block).liquidityIndex
    received = usdt.functions.balanceOf(user).call(block_identifier=block)
    assert received == ray_mul(scaled, index)
    assert received > 100_000 * 10**6
    assert a_usdt.functions.balanceOf(user).call(block_identifier=block) == 0
    assert a_usdt.functions.scaledBalanceOf(user).call(block_identifier=block) == 0


def our_health_factor(market: AaveMarket, user: str, liquidation_threshold_bps: int) -> Fraction:
    """Collateral x liquidation threshold / debt from balances and oracle prices, exactly."""
    collateral = market.a_token("weETH").functions.balanceOf(user).call() * market.price("weETH")
    debt = market.debt_token("WETH").functions.balanceOf(user).call() * market.price("WETH")
    return Fraction(collateral * liquidation_threshold_bps, debt * BPS)


def test_emode_loop_health_factor_price_drop_and_unwind(
    market: AaveMarket, anvil_node: AnvilNode
) -> None:
    pool, weth, weeth = market.pool, market.tokens["WETH"], market.tokens["weETH"]
    user = anvil_node.accounts[USER]
    target_ltv = Fraction(90, 100)
    equity_weeth = 10

    supply(market, user, "weETH", equity_weeth)
    send(pool.functions.setUserEMode(EMODE_ETH_ID), user)
    supplied_weeth = equity_weeth * WAD
    # Leverage loop: borrow WETH up to the target LTV, restake it as weETH, supply, repeat. The
    # restake stands in for EtherFi (not deployed here): WETH goes out, weETH of equal oracle
    # value comes in. The last round keeps the borrowed WETH, ending at the target LTV.
    rounds = 3
    for round_no in range(rounds):
        account = pool.functions.getUserAccountData(user).call()
        room_usd = target_ltv * account.totalCollateralBase - account.totalDebtBase
        borrow_weth = int(room_usd * WAD / market.price("WETH"))
        send(pool.functions.borrow(weth.address, borrow_weth, VARIABLE_RATE, 0, user), user)
        if round_no < rounds - 1:
            send(weth.functions.transfer(market.admin, borrow_weth), user)
            restaked = borrow_weth * market.price("WETH") // market.price("weETH")
            supplied_weeth += restaked
            market.mint("weETH", user, restaked)
            send(weeth.functions.approve(pool.address, restaked), user)
            send(pool.functions.supply(weeth.address, restaked, user, 0), user)

    account = pool.functions.getUserAccountData(user).call()
    assert account.ltv == EMODE_ETH.ltv  # the eMode parameters apply, not the standard 80/85
    assert account.currentLiquidationThreshold == EMODE_ETH.liquidation_threshold
    ltv = Fraction(account.totalDebtBase, account.totalCollateralBase)
    assert float(ltv) == pytest.approx(0.90, abs=1e-4)
    assert supplied_weeth > 2 * equity_weeth * WAD  # the loop did lever up
    ours = our_health_factor(market, user, EMODE_ETH.liquidation_threshold)
    assert float(ours) == pytest.approx(0.95 / 0.90, rel=1e-3)
    assert account.healthFactor / WAD == pytest.approx(float(ours), rel=1e-6)

    # weETH loses 4% against ETH: 0.95 x 0.96 / 0.90 = 1.013, close to liquidation.
    market.set_price("weETH", Decimal(market.price("weETH")) / 10**8 * Decimal("0.96"))
    account = pool.functions.getUserAccountData(user).call()
    assert 1.0 < account.healthFactor / WAD < 1.02
    ours = our_health_factor(market, user, EMODE_ETH.liquidation_threshold)
    assert account.healthFactor / WAD == pytest.approx(float(ours), rel=1e-6)

    # Unwind: repay everything first (interest included, hence the max sentinel and the spare
    # WETH), then withdraw all collateral.
    debt = market.debt_token("WETH").functions.balanceOf(user).call()
    market.mint("WETH", user, debt + WAD)
    send(weth.functions.approve(pool.address, MAX_UINT256), user)
    send(pool.functions.repay(weth.address, MAX_UINT256, VARIABLE_RATE, user), user)
    assert market.debt_token("WETH").functions.balanceOf(user).call() == 0
    send(pool.functions.withdraw(weeth.address, MAX_UINT256, user), user)

    account = pool.functions.getUserAccountData(user).call()
    assert (account.totalCollateralBase, account.totalDebtBase) == (0, 0)
    assert account.healthFactor == MAX_UINT256  # Aave's "infinite" health factor with no debt
    assert market.a_token("weETH").functions.balanceOf(user).call() == 0
    # Nobody borrows weETH, so its supply rate is zero and every weETH supplied comes back.
    assert weeth.functions.balanceOf(user).call() == supplied_weeth


def test_borrow_beyond_ltv_reverts_with_decodable_aave_error(
    market: AaveMarket, anvil_node: AnvilNode
) -> None:
    w3, pool, weth = market.w3, market.pool, market.tokens["WETH"]
    user = anvil_node.accounts[USER]
    supply(market, user, "weETH", 10)
    send(pool.functions.setUserEMode(EMODE_ETH_ID), user)
    collateral_usd = pool.functions.getUserAccountData(user).call().totalCollateralBase
    too_much = collateral_usd * 95 // 100 * WAD // market.price("WETH")  # 95% LTV > 93% max
    borrow = pool.functions.borrow(weth.address, too_much, VARIABLE_RATE, 0, user)

    # web3 estimates gas before sending, so the revert surfaces before anything is mined.
    with pytest.raises(ContractLogicError) as preflight:
        send(borrow, user)
    assert revert_reason(preflight.value) == "36"
    assert market.error_name("36") == "COLLATERAL_CANNOT_COVER_NEW_BORROW"

    # With the gas given, no estimate runs: the transaction is mined and fails (status 0), and
    # replaying it on the state before its block yields the same reason.
    tx_hash = borrow.transact({"from": user, "gas": 1_000_000})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.01)
    assert receipt["status"] == 0
    mined = w3.eth.get_transaction(tx_hash)
    with pytest.raises(ContractLogicError) as replay:
        w3.eth.call(
            {"from": mined["from"], "to": mined["to"], "data": mined["input"]},
            block_identifier=receipt["blockNumber"] - 1,
        )
    assert market.error_name(revert_reason(replay.value)) == "COLLATERAL_CANNOT_COVER_NEW_BORROW"
    assert market.debt_token("WETH").functions.balanceOf(user).call() == 0
