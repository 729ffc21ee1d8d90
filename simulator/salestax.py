"""Automated Sales Tax (AST) as the simulator computes it: a rate from the ship-to state.

Intuit's AST computes US sales tax from the transaction's addresses (qbo-api.md §3.4) with
rates the simulator cannot know (state, county, city and district rates that change over time).
The simulator uses one fixed, deterministic rate per state: the statewide base rate, no local
taxes. States without a sales tax, and addresses without a known state, give 0.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

# Statewide base rates in percent (illustrative, fixed; not kept in step with the law).
STATE_RATES: dict[str, Decimal] = {
    code: Decimal(rate)
    for code, rate in {
        "AL": "4",
        "AK": "0",
        "AZ": "5.6",
        "AR": "6.5",
        "CA": "7.25",
        "CO": "2.9",
        "CT": "6.35",
        "DE": "0",
        "DC": "6",
        "FL": "6",
        "GA": "4",
        "HI": "4",
        "ID": "6",
        "IL": "6.25",
        "IN": "7",
        "IA": "6",
        "KS": "6.5",
        "KY": "6",
        "LA": "5",
        "ME": "5.5",
        "MD": "6",
        "MA": "6.25",
        "MI": "6",
        "MN": "6.875",
        "MS": "7",
        "MO": "4.225",
        "MT": "0",
        "NE": "5.5",
        "NV": "6.85",
        "NH": "0",
        "NJ": "6.625",
        "NM": "4.875",
        "NY": "4",
        "NC": "4.75",
        "ND": "5",
        "OH": "5.75",
        "OK": "4.5",
        "OR": "0",
        "PA": "6",
        "RI": "7",
        "SC": "6",
        "SD": "4.2",
        "TN": "7",
        "TX": "6.25",
        "UT": "6.1",
        "VT": "6",
        "VA": "5.3",
        "WA": "6.5",
        "WV": "6",
        "WI": "5",
        "WY": "4",
    }.items()
}


def tax_state(txn: dict[str, Any]) -> str | None:
    """The state the tax follows: ShipAddr's, else BillAddr's (CountrySubDivisionCode)."""
    for key in ("ShipAddr", "BillAddr"):
        addr = txn.get(key)
        code = addr.get("CountrySubDivisionCode") if isinstance(addr, dict) else None
        if isinstance(code, str) and code.strip():
            return code.strip().upper()
    return None


def state_rate(state: str | None) -> Decimal:
    """The simulator's rate for a state code; 0 for none or an unknown one."""
    return STATE_RATES.get(state or "", Decimal("0"))
