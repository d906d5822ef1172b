// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title A rebasing token over shares of a pool of ether (what stETH and eETH are).
/// @notice Holders own shares; a balance is shares x total pooled ether / total shares, so every
/// balance grows when the pool's ether grows (staking rewards) without a transfer. Amounts passed
/// to transfer / transferFrom are in pooled-ether terms and converted to shares rounding down, as
/// Lido and EtherFi do; the checks are on shares.
abstract contract SharesToken {
    string public name;
    string public symbol;
    uint8 public constant decimals = 18;
    uint256 internal _totalShares;
    mapping(address => uint256) internal _shares;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event TransferShares(address indexed from, address indexed to, uint256 sharesValue);

    constructor(string memory name_, string memory symbol_) {
        name = name_;
        symbol = symbol_;
    }

    /// @dev The ether the shares are a claim on (buffered, at validators, and rewards).
    function _totalPooledEther() internal view virtual returns (uint256);

    function totalSupply() external view returns (uint256) {
        return _totalPooledEther();
    }

    function balanceOf(address account) external view returns (uint256) {
        return _amountForShares(_shares[account]);
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _transferAmount(msg.sender, to, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            require(allowed >= amount, "ALLOWANCE_EXCEEDED");
            allowance[from][msg.sender] = allowed - amount;
        }
        _transferAmount(from, to, amount);
        return true;
    }

    function _sharesForAmount(uint256 amount) internal view returns (uint256) {
        uint256 pooled = _totalPooledEther();
        return pooled == 0 ? amount : amount * _totalShares / pooled;
    }

    function _amountForShares(uint256 shares) internal view returns (uint256) {
        return _totalShares == 0 ? 0 : shares * _totalPooledEther() / _totalShares;
    }

    function _transferAmount(address from, address to, uint256 amount) internal {
        uint256 shares = _sharesForAmount(amount);
        _transferShares(from, to, shares);
        emit Transfer(from, to, amount);
        emit TransferShares(from, to, shares);
    }

    function _transferShares(address from, address to, uint256 shares) internal {
        require(to != address(0), "TRANSFER_TO_ZERO_ADDR");
        uint256 held = _shares[from];
        require(shares <= held, "BALANCE_EXCEEDED");
        _shares[from] = held - shares;
        _shares[to] += shares;
    }

    function _mintShares(address to, uint256 shares) internal {
        require(to != address(0), "MINT_TO_ZERO_ADDR");
        _totalShares += shares;
        _shares[to] += shares;
    }
}
