// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Owned} from "./Owned.sol";

interface IERC20Minimal {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// @title A stand-in on a test chain for the DEX routes the strategies use: ETH <-> USDT (a Uniswap
/// pool) and LST -> ETH (the Curve stETH/ETH pool; the protocols' own withdrawal queues take days).
/// @notice Prices are set by the owner, not by reserves: ETH/USDT at `ethPrice` (USDT units per
/// ETH) with `feeBps` charged in USDT on the notional (added when buying ETH, taken when selling);
/// an LST at its own exchange rate (read from the token with the listed rate function, 18
/// decimals) less the route's fee, taken in ETH. The owner seeds the liquidity (ETH sent to the
/// contract, USDT transferred to it). Every swap has a deadline and a slippage bound, and emits
/// `Swap`; ETH is `address(0)` in events. Amounts round in the pool's favour.
contract SwapRouter is Owned {
    address public constant ETH = address(0);
    uint256 internal constant BPS = 10_000;

    struct LstRoute {
        bytes4 rateFunction; // e.g. wstETH.stEthPerToken.selector, weETH.getRate.selector
        uint16 feeBps;
    }

    IERC20Minimal public immutable usdt;
    uint256 public ethPrice;
    uint16 public feeBps;
    mapping(address => LstRoute) public lstRoutes;

    event Swap(
        address indexed sender,
        address indexed tokenIn,
        address indexed tokenOut,
        uint256 amountIn,
        uint256 amountOut,
        uint256 fee,
        address to
    );
    event EthPriceSet(uint256 ethPrice, uint16 feeBps);
    event LstListed(address indexed token, bytes4 rateFunction, uint16 feeBps);

    modifier ensure(uint256 deadline) {
        require(block.timestamp <= deadline, "SwapRouter: EXPIRED");
        _;
    }

    constructor(IERC20Minimal _usdt, uint256 _ethPrice, uint16 _feeBps) {
        usdt = _usdt;
        _setEthPrice(_ethPrice, _feeBps);
    }

    /// @notice ETH liquidity (and ETH from any sender: this is a test stand-in).
    receive() external payable {}

    // ------------------------------------------------------------------------------ owner
    function setEthPrice(uint256 _ethPrice, uint16 _feeBps) external onlyOwner {
        _setEthPrice(_ethPrice, _feeBps);
    }

    function listLst(address token, bytes4 rateFunction, uint16 _feeBps) external onlyOwner {
        require(_feeBps < BPS, "SwapRouter: FEE");
        lstRoutes[token] = LstRoute(rateFunction, _feeBps);
        lstRate(token); // the rate function must answer
        emit LstListed(token, rateFunction, _feeBps);
    }

    function _setEthPrice(uint256 _ethPrice, uint16 _feeBps) internal {
        require(_ethPrice > 0 && _feeBps < BPS, "SwapRouter: PRICE");
        ethPrice = _ethPrice;
        feeBps = _feeBps;
        emit EthPriceSet(_ethPrice, _feeBps);
    }

    // ------------------------------------------------------------------------------ quotes
    /// @notice USDT received for `ethIn` wei, and the fee (USDT) taken from it.
    function quoteExactEthForUsdt(uint256 ethIn) public view returns (uint256 usdtOut, uint256 fee) {
        uint256 notional = ethIn * ethPrice / 1 ether;
        fee = _ceilDiv(notional * feeBps, BPS);
        usdtOut = notional - fee;
    }

    /// @notice USDT needed to receive exactly `ethOut` wei, and the fee (USDT) included in it.
    function quoteUsdtForExactEth(uint256 ethOut) public view returns (uint256 usdtIn, uint256 fee) {
        uint256 notional = _ceilDiv(ethOut * ethPrice, 1 ether);
        fee = _ceilDiv(notional * feeBps, BPS);
        usdtIn = notional + fee;
    }

    /// @notice ETH received for `amountIn` of `lst`, and the fee (ETH) taken from it.
    function quoteExactLstForEth(address lst, uint256 amountIn) public view returns (uint256 ethOut, uint256 fee) {
        uint256 gross = amountIn * lstRate(lst) / 1 ether;
        fee = _ceilDiv(gross * lstRoutes[lst].feeBps, BPS);
        ethOut = gross - fee;
    }

    /// @notice The LST's own exchange rate: ETH per token, 18 decimals.
    function lstRate(address lst) public view returns (uint256) {
        bytes4 selector = lstRoutes[lst].rateFunction;
        require(selector != bytes4(0), "SwapRouter: LST_NOT_LISTED");
        (bool ok, bytes memory data) = lst.staticcall(abi.encodeWithSelector(selector));
        require(ok && data.length == 32, "SwapRouter: RATE_UNAVAILABLE");
        return abi.decode(data, (uint256));
    }

    // ------------------------------------------------------------------------------ swaps
    function swapExactEthForUsdt(uint256 amountOutMin, address to, uint256 deadline)
        external
        payable
        ensure(deadline)
        returns (uint256 amountOut)
    {
        uint256 fee;
        (amountOut, fee) = quoteExactEthForUsdt(msg.value);
        require(amountOut >= amountOutMin, "SwapRouter: INSUFFICIENT_OUTPUT_AMOUNT");
        _safeTransfer(to, amountOut);
        emit Swap(msg.sender, ETH, address(usdt), msg.value, amountOut, fee, to);
    }

    function swapUsdtForExactEth(uint256 amountOut, uint256 amountInMax, address to, uint256 deadline)
        external
        ensure(deadline)
        returns (uint256 amountIn)
    {
        uint256 fee;
        (amountIn, fee) = quoteUsdtForExactEth(amountOut);
        require(amountIn <= amountInMax, "SwapRouter: EXCESSIVE_INPUT_AMOUNT");
        _safeTransferFrom(address(usdt), msg.sender, amountIn);
        _sendEth(to, amountOut);
        emit Swap(msg.sender, address(usdt), ETH, amountIn, amountOut, fee, to);
    }

    function swapExactLstForEth(address lst, uint256 amountIn, uint256 amountOutMin, address to, uint256 deadline)
        external
        ensure(deadline)
        returns (uint256 amountOut)
    {
        uint256 fee;
        (amountOut, fee) = quoteExactLstForEth(lst, amountIn);
        require(amountOut >= amountOutMin, "SwapRouter: INSUFFICIENT_OUTPUT_AMOUNT");
        _safeTransferFrom(lst, msg.sender, amountIn);
        _sendEth(to, amountOut);
        emit Swap(msg.sender, lst, ETH, amountIn, amountOut, fee, to);
    }

    // ------------------------------------------------------------------------------ transfers
    /// @dev Tolerates tokens that return nothing (mainnet USDT) as well as those returning a bool.
    function _safeTransfer(address to, uint256 amount) internal {
        (bool ok, bytes memory data) =
            address(usdt).call(abi.encodeWithSelector(IERC20Minimal.transfer.selector, to, amount));
        require(ok && (data.length == 0 || abi.decode(data, (bool))), "SwapRouter: TRANSFER_FAILED");
    }

    function _safeTransferFrom(address token, address from, uint256 amount) internal {
        (bool ok, bytes memory data) = token.call(
            abi.encodeWithSelector(IERC20Minimal.transferFrom.selector, from, address(this), amount)
        );
        require(ok && (data.length == 0 || abi.decode(data, (bool))), "SwapRouter: TRANSFER_FROM_FAILED");
    }

    function _sendEth(address to, uint256 amount) internal {
        (bool ok,) = to.call{value: amount}("");
        require(ok, "SwapRouter: ETH_TRANSFER_FAILED");
    }

    function _ceilDiv(uint256 a, uint256 b) internal pure returns (uint256) {
        return a == 0 ? 0 : (a - 1) / b + 1;
    }
}
