"""Polynomials over named symbols with numpy coefficients: how the matcher reads one neuron update.

The matcher rewrites one time step of a candidate layer as a polynomial in a few symbols — the previous membrane
`U`, the reset flag `R` (the threshold compare on the previous membrane), input currents `I:…`, recurrent currents
`V:…`, other carried state `S:…` — with the layer's parameters (β, θ, …) folded into numeric coefficients. The same
update spelled by different exporters (Clip kept or folded, Identity inserted, operands swapped, `Mul(R, θ)` folded
when θ = 1) gives the same polynomial, which is what makes the match independent of spelling.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

Monomial = tuple[str, ...]  # sorted symbol names, repeated for powers; () is the constant term
FLAGS = frozenset({"R", "Rold", "Snow", "Sprev"})  # 0/1 spike and reset flags: R·R = R


def _product(m1: Monomial, m2: Monomial, flags: frozenset[str] = FLAGS) -> Monomial:
    merged = list(m1)
    for symbol in m2:
        if symbol not in flags or symbol not in merged:
            merged.append(symbol)
    return tuple(sorted(merged))


@dataclass(frozen=True)
class Poly:
    """sum(coefficient * product(symbols)) with numpy-broadcastable coefficients."""

    terms: tuple[tuple[Monomial, np.ndarray], ...]

    @staticmethod
    def constant(value: np.ndarray | float) -> Poly:
        return Poly((((), np.asarray(value, dtype=np.float64)),))

    @staticmethod
    def symbol(name: str) -> Poly:
        return Poly((((name,), np.asarray(1.0)),))

    def as_dict(self) -> dict[Monomial, np.ndarray]:
        return dict(self.terms)

    @staticmethod
    def _build(terms: dict[Monomial, np.ndarray]) -> Poly:
        kept = tuple(sorted((m, c) for m, c in terms.items() if np.any(c != 0)))
        return Poly(kept)

    def __add__(self, other: Poly) -> Poly:
        out = self.as_dict()
        for monomial, coef in other.terms:
            out[monomial] = out[monomial] + coef if monomial in out else coef
        return Poly._build(out)

    def __neg__(self) -> Poly:
        return Poly(tuple((m, -c) for m, c in self.terms))

    def __sub__(self, other: Poly) -> Poly:
        return self + (-other)

    def __mul__(self, other: Poly) -> Poly:
        return self.multiply(other)

    def multiply(self, other: Poly, flags: frozenset[str] = FLAGS) -> Poly:
        """The product; symbols in `flags` are 0/1 valued (R·R = R). With no flags, R·R stays R² — which shows
        a term that R·(1 − R) would otherwise cancel."""
        out: dict[Monomial, np.ndarray] = {}
        for m1, c1 in self.terms:
            for m2, c2 in other.terms:
                monomial = _product(m1, m2, flags)
                coef = c1 * c2
                out[monomial] = out[monomial] + coef if monomial in out else coef
        return Poly._build(out)

    def scale(self, factor: np.ndarray) -> Poly:
        return Poly._build({m: c * factor for m, c in self.terms})

    # --- reading a polynomial -------------------------------------------------------------------------------------
    def symbols(self) -> set[str]:
        return {s for m, _ in self.terms for s in m}

    def coefficient(self, monomial: Iterable[str]) -> np.ndarray | None:
        key = tuple(sorted(monomial))
        for m, c in self.terms:
            if m == key:
                return c
        return None

    def monomials(self) -> list[Monomial]:
        return [m for m, _ in self.terms]

    def constant_value(self) -> np.ndarray | None:
        """The value when the polynomial has no symbols at all."""
        if all(m == () for m, _ in self.terms):
            return self.terms[0][1] if self.terms else np.asarray(0.0)
        return None

    def __str__(self) -> str:
        if not self.terms:
            return "0"
        text = ""
        for monomial, coef in self.terms:
            value = coef if coef.size != 1 else float(coef.reshape(-1)[0])  # shape (1,) thresholds too
            negative = not isinstance(value, np.ndarray) and value < 0
            number = f"{abs(value):.4g}" if not isinstance(value, np.ndarray) else f"[{coef.size} values]"
            term = number + "".join(f"·{s}" for s in monomial)
            # a − b, not a + -b (and a leading −b as such)
            text += (("−" if negative else "") if not text else (" − " if negative else " + ")) + term
        return text
