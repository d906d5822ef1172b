"""Risk evaluation: breaches, warnings, breach_pct signs, and which breaches count as unhandled."""

from __future__ import annotations

import pytest

from basis_live.config import RiskLimit, RiskLimits
from basis_live.risk.limits import RiskInputs, breach_pct, evaluate, unhandled_breaches


def _inputs(**changes: float | None) -> RiskInputs:
    base = dict(drawdown=0.0, largest_position=1000.0, daily_loss=0.0, health_factor=None, worst_margin_ratio=None)
    base.update(changes)
    return RiskInputs(**base)  # type: ignore[arg-type]


LIMITS = RiskLimits(
    max_drawdown=RiskLimit(limit=0.05, policy="emergency_stop"),
    max_position_size=RiskLimit(limit=50_000, policy="reduce"),
    max_daily_loss=RiskLimit(limit=2_000, policy="warn"),
    health_factor_threshold=RiskLimit(limit=1.2, policy="reduce"),
    margin_ratio_threshold=RiskLimit(limit=0.2, policy="reduce"),
)


def test_all_within_limits_is_ok() -> None:
    report = evaluate(LIMITS, _inputs(drawdown=0.01, health_factor=2.0, worst_margin_ratio=0.5), "t")
    assert report.status == "ok" and report.breaches == [] and not report.action_required


def test_drawdown_beyond_the_limit_is_a_breach_with_positive_breach_pct() -> None:
    report = evaluate(LIMITS, _inputs(drawdown=0.06), "t")
    assert report.status == "breach" and report.action_required
    (breach,) = report.breaches
    assert (breach.type, breach.limit, breach.current, breach.policy) == ("max_drawdown", 0.05, 0.06, "emergency_stop")
    assert breach.breach_pct == pytest.approx(20.0)


def test_lower_is_worse_limits_report_a_worse_value_as_a_positive_breach() -> None:
    report = evaluate(LIMITS, _inputs(health_factor=1.08, worst_margin_ratio=0.15, largest_position=0), "t")
    by_type = {b.type: b for b in report.breaches}
    assert by_type["health_factor_threshold"].breach_pct == pytest.approx(10.0)
    assert by_type["margin_ratio_threshold"].breach_pct == pytest.approx(25.0)
    assert breach_pct("lower_is_worse", 1.2, 1.5) < 0  # better than the limit: negative


def test_values_approaching_a_limit_are_warnings() -> None:
    report = evaluate(LIMITS, _inputs(drawdown=0.04, worst_margin_ratio=0.24), "t")
    assert report.status == "warning"
    assert {w.type for w in report.warnings} == {"max_drawdown", "margin_ratio_threshold"}
    assert not report.action_required


def test_a_warn_policy_breach_needs_no_automatic_action() -> None:
    report = evaluate(LIMITS, _inputs(daily_loss=2500), "t")
    assert report.status == "breach" and not report.action_required


def test_disabled_limits_and_missing_figures_are_not_checked() -> None:
    limits = RiskLimits(max_drawdown=RiskLimit(limit=None))
    report = evaluate(limits, _inputs(drawdown=0.9, health_factor=None), "t")
    assert report.breaches == []
    assert report.figures["health_factor_threshold"] is None


def test_unhandled_breaches_depend_on_the_trading_state() -> None:
    risk = evaluate(LIMITS, _inputs(drawdown=0.06, worst_margin_ratio=0.1, daily_loss=3000), "t").as_dict()
    types = lambda state: sorted(b["type"] for b in unhandled_breaches(risk, state))  # noqa: E731
    assert types("ACTIVE") == ["margin_ratio_threshold", "max_daily_loss", "max_drawdown"]
    assert types("REDUCING") == ["max_daily_loss", "max_drawdown"]
    assert types("HALTED") == ["max_daily_loss"]  # a warn-policy breach always needs a human
    assert unhandled_breaches(None, "ACTIVE") == []
