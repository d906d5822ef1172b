"""Risk limit evaluation: pure functions from portfolio figures to the check_risk_limits result.

Figures are floats (analytics compared with limits). breach_pct = (current - limit) / limit x 100
for limits where higher is worse (drawdown, position size, daily loss) and (limit - current) /
limit x 100 where lower is worse (health factor, margin ratio): a worse value is always positive.
A limit within its warning band (see WARN_BANDS) makes the status ``warning``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # keep `health` free of pydantic imports
    from basis_live.config import RiskLimits

Direction = Literal["higher_is_worse", "lower_is_worse"]

#: limit name -> (direction, warning band). A warning starts at band x limit (higher-is-worse) or
#: at limit x band (lower-is-worse).
LIMITS: dict[str, tuple[Direction, float]] = {
    "max_drawdown": ("higher_is_worse", 0.75),
    "max_position_size": ("higher_is_worse", 0.9),
    "max_daily_loss": ("higher_is_worse", 0.75),
    # eMode targets sit close to the floor (HF ~1.045 at LTV 0.909 vs a 1.02 floor): a wide band
    # would warn for ever.
    "health_factor_threshold": ("lower_is_worse", 1.02),
    "margin_ratio_threshold": ("lower_is_worse", 1.25),
}


@dataclass(frozen=True)
class RiskInputs:
    """The current figures the limits are checked against (None: not applicable to this run)."""

    drawdown: float  # fraction below peak equity
    largest_position: float  # share-class units
    daily_loss: float  # share-class units lost since 00:00 UTC (negative = gain)
    health_factor: float | None
    worst_margin_ratio: float | None
    worst_margin_venue: str | None = None


@dataclass(frozen=True)
class Breach:
    type: str
    limit: float
    current: float
    breach_pct: float
    policy: str
    detail: str = ""


@dataclass(frozen=True)
class RiskReport:
    status: Literal["ok", "warning", "breach"]
    breaches: list[Breach]
    warnings: list[Breach]
    action_required: bool
    evaluated_at: str
    figures: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        # What dataclasses.asdict gives, built directly: it runs on every snapshot.
        return {"status": self.status, "breaches": [dict(b.__dict__) for b in self.breaches],
                "warnings": [dict(w.__dict__) for w in self.warnings], "action_required": self.action_required,
                "evaluated_at": self.evaluated_at, "figures": dict(self.figures)}

    @property
    def breach_types(self) -> list[str]:
        return [b.type for b in self.breaches]


def breach_pct(direction: Direction, limit: float, current: float) -> float:
    if limit == 0:
        return 0.0
    raw = (current - limit) / limit if direction == "higher_is_worse" else (limit - current) / limit
    return round(raw * 100, 4)


def _current(name: str, inputs: RiskInputs) -> tuple[float | None, str]:
    if name == "max_drawdown":
        return inputs.drawdown, "peak-to-trough equity"
    if name == "max_position_size":
        return inputs.largest_position, "largest position value"
    if name == "max_daily_loss":
        return inputs.daily_loss, "loss since 00:00 UTC"
    if name == "health_factor_threshold":
        return inputs.health_factor, "AAVE health factor"
    if name == "margin_ratio_threshold":
        venue = f" ({inputs.worst_margin_venue})" if inputs.worst_margin_venue else ""
        return inputs.worst_margin_ratio, f"worst margin ratio{venue}"
    raise KeyError(name)


def evaluate(limits: "RiskLimits", inputs: RiskInputs, evaluated_at: str) -> RiskReport:
    """Check every enabled limit that applies (its figure is not None)."""
    breaches: list[Breach] = []
    warnings: list[Breach] = []
    figures: dict[str, float | None] = {}
    for name, (direction, band) in LIMITS.items():
        limit_cfg = getattr(limits, name)
        current, detail = _current(name, inputs)
        figures[name] = current
        if limit_cfg.limit is None or current is None:
            continue
        limit = float(limit_cfg.limit)
        if direction == "higher_is_worse":
            into = breaches if current > limit else (warnings if current >= limit * band else None)
        else:
            into = breaches if current < limit else (warnings if current <= limit * band else None)
        if into is not None:  # most checks pass: the entry is made only when one is listed
            into.append(Breach(name, limit, round(current, 10), breach_pct(direction, limit, current),
                               limit_cfg.policy, detail))
    status: Literal["ok", "warning", "breach"] = "breach" if breaches else ("warning" if warnings else "ok")
    return RiskReport(
        status=status,
        breaches=breaches,
        warnings=warnings,
        action_required=any(b.policy != "warn" for b in breaches),
        evaluated_at=evaluated_at,
        figures=figures,
    )


def unhandled_breaches(risk: dict[str, Any] | None, trading_state: str) -> list[dict[str, Any]]:
    """Breaches in a stored risk report that no automatic action covers: policy ``warn`` (a human
    must look), ``reduce`` while not REDUCING/HALTED, ``emergency_stop`` while not HALTED."""
    if not risk:
        return []
    out = []
    for breach in risk.get("breaches", []):
        policy = breach.get("policy")
        handled = (policy == "reduce" and trading_state in ("REDUCING", "HALTED")) or (
            policy == "emergency_stop" and trading_state == "HALTED"
        )
        if not handled:
            out.append(breach)
    return out
