"""Bounded retries with exponential backoff and jitter, for failures of the environment, not of the input.

Why jitter: when the object store goes down, every worker thread fails at about the same moment; fixed
delays would bring them all back at the same instant again and hammer a store that is just coming up.
Each pause is drawn at random ("full jitter") between `base_s` and an exponentially growing ceiling
(`base_s * 2**(n+1)`, capped at `max_s`).

Why a floor of `base_s` on every pause (plain full jitter draws from 0): it makes the retry budget a
contract rather than a probability. With `attempts` tries, an outage shorter than `min_total_s()` is
always ridden out, and a fetch never takes longer than `max_total_s()` (plus the tries themselves) before
the caller gives up — which is what the operations runbook and the fault tests rely on.

Pure apart from the injected `sleep` and random source, so it is unit-tested without waiting.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """`attempts` tries in all (`attempts - 1` pauses), pause n in [base_s, min(max_s, base_s * 2**(n+1))]."""

    attempts: int = 6
    base_s: float = 1.0
    max_s: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_s < 0 or self.max_s < self.base_s:
            raise ValueError("need 0 <= base_s <= max_s")

    def ceiling(self, n: int) -> float:
        """Upper bound of the pause after the `n`-th failed try (0-based)."""
        return min(self.max_s, self.base_s * 2.0 ** (n + 1))

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The `attempts - 1` pauses, each drawn uniformly in [base_s, ceiling(n)]."""
        uniform = (rng or random).uniform
        for n in range(self.attempts - 1):
            yield uniform(self.base_s, self.ceiling(n))

    def min_total_s(self) -> float:
        """Every outage shorter than this is ridden out (sum of the pauses' floors)."""
        return self.base_s * (self.attempts - 1)

    def max_total_s(self) -> float:
        """No caller pauses longer than this in all before giving up."""
        return sum(self.ceiling(n) for n in range(self.attempts - 1))


def retry_call(
    fn: Callable[[], T],
    policy: Backoff,
    retryable: Callable[[BaseException], bool],
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    delays: Iterator[float] | None = None,
    on_retry: Callable[[int, float, BaseException], None] | None = None,
) -> T:
    """Call `fn` until it returns, retrying the exceptions `retryable` accepts after a backoff pause.

    A non-retryable exception propagates at once; a retryable one propagates after the last attempt
    (`policy.attempts` calls in all). `delays` replaces the policy's random pauses (tests, fixed schedules);
    `on_retry(attempt, pause, exc)` is told about each pause before it is taken (logging, metrics).
    """
    pauses = iter(delays) if delays is not None else policy.delays(rng)
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            if not retryable(exc):
                raise
            pause = next(pauses, None)
            if pause is None:
                raise
            if on_retry is not None:
                on_retry(attempt, pause, exc)
            sleep(pause)
