// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "./ERC20.sol";
import {Owned} from "./Owned.sol";
import {SharesToken} from "./SharesToken.sol";

/// @title A stand-in for EtherFi's LiquidityPool on a test chain: `deposit` mints eETH shares for
/// the ether sent at the current share rate; the owner simulates rewards.
/// @notice The pool creates its eETH at deployment; the deployer's ether bootstraps the pool (the
/// shares go to 0xdead) so the share rate is defined from the start.
contract LiquidityPool is Owned {
    address internal constant INITIAL_HOLDER = address(0xdead);

    EETH public immutable eETH;
    uint256 internal _pooledEther;

    event Deposit(address indexed sender, uint256 amount, uint256 shares);
    event Rebase(uint256 totalEthLocked, uint256 totalEEthShares);

    constructor() payable {
        require(msg.value > 0, "BOOTSTRAP_DEPOSIT_REQUIRED");
        eETH = new EETH(address(this));
        _pooledEther = msg.value;
        eETH.mintShares(INITIAL_HOLDER, msg.value);
    }

    /// @notice Stake the ether sent; returns the eETH shares minted to the sender.
    function deposit() external payable returns (uint256) {
        require(msg.value != 0, "ZERO_DEPOSIT");
        uint256 shares = sharesForAmount(msg.value);
        require(shares > 0, "INVALID_AMOUNT");
        eETH.mintShares(msg.sender, shares);
        _pooledEther += msg.value;
        emit Deposit(msg.sender, msg.value, shares);
        return shares;
    }

    /// @notice Test admin: pooled ether grows by `bps` basis points, as after a rewards rebase.
    function simulateRewards(uint256 bps) external onlyOwner {
        _pooledEther += _pooledEther * bps / 10_000;
        emit Rebase(_pooledEther, eETH.totalShares());
    }

    function getTotalPooledEther() public view returns (uint256) {
        return _pooledEther;
    }

    function sharesForAmount(uint256 _amount) public view returns (uint256) {
        uint256 pooled = _pooledEther;
        return pooled == 0 ? 0 : _amount * eETH.totalShares() / pooled;
    }

    function amountForShare(uint256 _share) public view returns (uint256) {
        uint256 totalShares = eETH.totalShares();
        return totalShares == 0 ? 0 : _share * _pooledEther / totalShares;
    }
}

/// @title A stand-in for EtherFi's eETH: rebasing shares of the LiquidityPool's ether.
contract EETH is SharesToken {
    LiquidityPool public immutable liquidityPool;

    constructor(address _liquidityPool) SharesToken("ether.fi ETH", "eETH") {
        liquidityPool = LiquidityPool(payable(_liquidityPool));
    }

    /// @dev Only TransferShares is emitted: the ether amount needs the pool, which is still being
    /// constructed when it mints the bootstrap shares.
    function mintShares(address _user, uint256 _share) external {
        require(msg.sender == address(liquidityPool), "Only pool contract function");
        _mintShares(_user, _share);
        emit TransferShares(address(0), _user, _share);
    }

    function shares(address _user) external view returns (uint256) {
        return _shares[_user];
    }

    function totalShares() external view returns (uint256) {
        return _totalShares;
    }

    function _totalPooledEther() internal view override returns (uint256) {
        return liquidityPool.getTotalPooledEther();
    }
}

/// @title A stand-in for EtherFi's weETH: a non-rebasing ERC-20 whose unit is one eETH share.
contract WeETH is ERC20 {
    EETH public immutable eETH;
    LiquidityPool public immutable liquidityPool;

    constructor(LiquidityPool _liquidityPool) ERC20("Wrapped eETH", "weETH") {
        liquidityPool = _liquidityPool;
        eETH = _liquidityPool.eETH();
    }

    function wrap(uint256 _eETHAmount) public returns (uint256) {
        require(_eETHAmount > 0, "weETH: can't wrap zero eETH");
        uint256 weEthAmount = liquidityPool.sharesForAmount(_eETHAmount);
        _mint(msg.sender, weEthAmount);
        require(eETH.transferFrom(msg.sender, address(this), _eETHAmount), "weETH: eETH transfer failed");
        return weEthAmount;
    }

    function unwrap(uint256 _weETHAmount) external returns (uint256) {
        require(_weETHAmount > 0, "Cannot unwrap a zero amount");
        uint256 eETHAmount = liquidityPool.amountForShare(_weETHAmount);
        _burn(msg.sender, _weETHAmount);
        require(eETH.transfer(msg.sender, eETHAmount), "weETH: eETH transfer failed");
        return eETHAmount;
    }

    function getWeETHByeETH(uint256 _eETHAmount) external view returns (uint256) {
        return liquidityPool.sharesForAmount(_eETHAmount);
    }

    function getEETHByWeETH(uint256 _weETHAmount) public view returns (uint256) {
        return liquidityPool.amountForShare(_weETHAmount);
    }

    /// @notice Ether (eETH) per weETH, 18 decimals.
    function getRate() external view returns (uint256) {
        return getEETHByWeETH(1 ether);
    }
}
