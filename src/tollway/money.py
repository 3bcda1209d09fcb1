"""The one money representation: integer nano-USD, and the only place floats or strings convert.

Prices are kept finer than money, in femto-USD per token, because list prices such as
0.0000000375 USD per token are not whole nano-dollars; a charge is rounded up to nano-USD once,
in `charge_nanos`, and never again.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

NANOS_PER_USD = 1_000_000_000
FEMTOS_PER_USD = 10**15
FEMTOS_PER_NANO = FEMTOS_PER_USD // NANOS_PER_USD
# Amounts must fit a signed 64-bit column with room to add many of them.
MAX_NANOS = 10**9 * NANOS_PER_USD


class MoneyFormatError(ValueError):
    """A USD amount or price that cannot be represented exactly."""


def _decimal(value: str | int | float | Decimal, what: str) -> Decimal:
    if isinstance(value, bool):
        raise MoneyFormatError(f"{what} must be a number, not a boolean")
    try:
        # str() first: a float such as 0.1 becomes "0.1", the value the user wrote, not its binary expansion.
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise MoneyFormatError(f"{what} must be a decimal number of USD, got {value!r}") from exc
    if not number.is_finite():
        raise MoneyFormatError(f"{what} must be a finite number, got {value!r}")
    if number and not -30 <= number.adjusted() <= 30:  # 1e999999 would overflow Decimal's arithmetic
        raise MoneyFormatError(f"{what} is out of range: {str(value)[:40]!r}")
    return number


def usd_to_nanos(value: str | int | float | Decimal, what: str = "amount") -> int:
    """Convert a USD amount to nano-USD; amounts finer than one nano-dollar are rejected, not rounded."""
    nanos = _decimal(value, what) * NANOS_PER_USD
    if abs(nanos) > MAX_NANOS:
        raise MoneyFormatError(f"{what} is too large: at most {MAX_NANOS // NANOS_PER_USD} USD")
    if nanos != nanos.to_integral_value():
        raise MoneyFormatError(f"{what} has more than 9 decimal places: {value!r}")
    return int(nanos)


def price_to_femtos(value: str | int | float | Decimal, what: str = "price") -> int:
    """Convert a USD-per-unit price to femto-USD per unit (exact up to 15 decimal places)."""
    femtos = _decimal(value, what) * FEMTOS_PER_USD
    if femtos > MAX_NANOS * FEMTOS_PER_NANO:
        raise MoneyFormatError(f"{what} is too large: {value!r}")
    if femtos != femtos.to_integral_value():
        raise MoneyFormatError(f"{what} has more than 15 decimal places: {value!r}")
    if femtos < 0:
        raise MoneyFormatError(f"{what} must not be negative: {value!r}")
    return int(femtos)


def femtos_to_price_string(femtos: int) -> str:
    """Render a per-unit price the way OpenRouter's /models does: a plain decimal string, "0" when free."""
    text = format(Decimal(femtos) / FEMTOS_PER_USD, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def charge_nanos(total_femtos: int) -> int:
    """Round a charge up to whole nano-USD: the single rounding step of every bill."""
    return -((-total_femtos) // FEMTOS_PER_NANO)


def nanos_to_usd(nanos: int) -> float:
    """USD as a JSON number, for the API edge only; round(usd * 1e9) gives back the exact nanos."""
    return nanos / NANOS_PER_USD


def nanos_to_decimal(nanos: int) -> Decimal:
    return Decimal(nanos) / NANOS_PER_USD


def format_usd(nanos: int, min_decimals: int = 2) -> str:
    """Render USD with 2 to 9 decimals, as many as it takes to be exact (for sentences and CLI tables)."""
    text = format(nanos_to_decimal(nanos), "f")
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0")
    fraction = fraction.ljust(min_decimals, "0")
    return f"{whole}.{fraction}"


def round_half_up_cents(nanos: int) -> int:
    """Round an amount to whole cents, half up (used for payment fees)."""
    cents = (nanos_to_decimal(nanos) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(cents) * (NANOS_PER_USD // 100)


def ceil_div(numerator: int, denominator: int) -> int:
    return -((-numerator) // denominator)


__all__ = [
    "FEMTOS_PER_NANO",
    "FEMTOS_PER_USD",
    "NANOS_PER_USD",
    "MoneyFormatError",
    "ceil_div",
    "charge_nanos",
    "femtos_to_price_string",
    "format_usd",
    "nanos_to_decimal",
    "nanos_to_usd",
    "price_to_femtos",
    "round_half_up_cents",
    "usd_to_nanos",
]
