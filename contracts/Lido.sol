// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "./ERC20.sol";
import {Owned} from "./Owned.sol";
import {SharesToken} from "./SharesToken.sol";

/// @title A stand-in for Lido's stETH on a test chain: the same external functions and the same
/// share arithmetic (rounding down), without validators, oracles or withdrawal queues.
/// @notice `submit` mints shares for the ether sent at the current share rate. The owner raises the
/// pooled ether with `simulateRewards` (what Lido's oracle report does), so every balance and the
/// wstETH rate drift up. The deployer's ether bootstraps the pool (its shares go to 0xdead, as
/// Lido's initial shares do), so the share rate is defined from the start.
contract StETH is SharesToken, Owned {
    address internal constant INITIAL_HOLDER = address(0xdead);

    uint256 internal _pooledEther;

    event Submitted(address indexed sender, uint256 amount, address referral);
    event TokenRebased(uint256 preTotalEther, uint256 postTotalEther, uint256 totalShares);

    constructor() payable SharesToken("Liquid staked Ether 2.0", "stETH") {
        require(msg.value > 0, "BOOTSTRAP_DEPOSIT_REQUIRED");
        _pooledEther = msg.value;
        _mintShares(INITIAL_HOLDER, msg.value);
    }

    /// @notice Stake the ether sent; returns the shares minted to the sender.
    function submit(address _referral) external payable returns (uint256) {
        require(msg.value != 0, "ZERO_DEPOSIT");
        uint256 shares = _sharesForAmount(msg.value);
        _mintShares(msg.sender, shares);
        _pooledEther += msg.value;
        emit Submitted(msg.sender, msg.value, _referral);
        emit Transfer(address(0), msg.sender, _amountForShares(shares));
        emit TransferShares(address(0), msg.sender, shares);
        return shares;
    }

    /// @notice Test admin: pooled ether grows by `bps` basis points, as after a rewards report.
    function simulateRewards(uint256 bps) external onlyOwner {
        uint256 pre = _pooledEther;
        _pooledEther = pre + pre * bps / 10_000;
        emit TokenRebased(pre, _pooledEther, _totalShares);
    }

    function getTotalPooledEther() external view returns (uint256) {
        return _pooledEther;
    }

    function getTotalShares() external view returns (uint256) {
        return _totalShares;
    }

    function sharesOf(address account) external view returns (uint256) {
        return _shares[account];
    }

    function getSharesByPooledEth(uint256 _ethAmount) public view returns (uint256) {
        return _sharesForAmount(_ethAmount);
    }

    function getPooledEthByShares(uint256 _sharesAmount) public view returns (uint256) {
        return _amountForShares(_sharesAmount);
    }

    /// @notice Move shares rather than an ether amount (no rounding); returns the ether amount.
    function transferShares(address _recipient, uint256 _sharesAmount) external returns (uint256) {
        _transferShares(msg.sender, _recipient, _sharesAmount);
        uint256 amount = _amountForShares(_sharesAmount);
        emit Transfer(msg.sender, _recipient, amount);
        emit TransferShares(msg.sender, _recipient, _sharesAmount);
        return amount;
    }

    function _totalPooledEther() internal view override returns (uint256) {
        return _pooledEther;
    }
}

/// @title A stand-in for Lido's wstETH: a non-rebasing ERC-20 whose unit is one stETH share.
/// @notice `wrap` takes stETH and mints its shares as wstETH; `unwrap` burns wstETH and returns the
/// stETH those shares are worth now, so one wstETH is worth `stEthPerToken()` ether and rises with
/// the rewards.
contract WstETH is ERC20 {
    StETH public immutable stETH;

    constructor(StETH _stETH) ERC20("Wrapped liquid staked Ether 2.0", "wstETH") {
        stETH = _stETH;
    }

    function wrap(uint256 _stETHAmount) external returns (uint256) {
        require(_stETHAmount > 0, "wstETH: can't wrap zero stETH");
        uint256 wstETHAmount = stETH.getSharesByPooledEth(_stETHAmount);
        _mint(msg.sender, wstETHAmount);
        require(stETH.transferFrom(msg.sender, address(this), _stETHAmount), "wstETH: stETH transfer failed");
        return wstETHAmount;
    }

    function unwrap(uint256 _wstETHAmount) external returns (uint256) {
        require(_wstETHAmount > 0, "wstETH: zero amount unwrap not allowed");
        uint256 stETHAmount = stETH.getPooledEthByShares(_wstETHAmount);
        _burn(msg.sender, _wstETHAmount);
        require(stETH.transfer(msg.sender, stETHAmount), "wstETH: stETH transfer failed");
        return stETHAmount;
    }

    function getWstETHByStETH(uint256 _stETHAmount) external view returns (uint256) {
        return stETH.getSharesByPooledEth(_stETHAmount);
    }

    function getStETHByWstETH(uint256 _wstETHAmount) external view returns (uint256) {
        return stETH.getPooledEthByShares(_wstETHAmount);
    }

    /// @notice Ether (stETH) per wstETH, 18 decimals.
    function stEthPerToken() external view returns (uint256) {
        return stETH.getPooledEthByShares(1 ether);
    }

    function tokensPerStEth() external view returns (uint256) {
        return stETH.getSharesByPooledEth(1 ether);
    }
}
