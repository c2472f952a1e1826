"""Exact queueing-theory oracles used by the engine's statistical tests.

All rates are per unit time (e.g. per second); the results are in the same
time unit.  ``lam`` is the arrival rate, ``mu`` the service rate of ONE server,
``c`` the number of servers and ``a = lam / mu`` the offered load in Erlangs.

Every function requires a stable queue (``lam < c * mu``) and raises
``ValueError`` otherwise: an unstable queue has no steady state.
"""

from __future__ import annotations

__all__ = [
    "ekm1_time_in_system",
    "ekm1_wait",
    "erlang_b",
    "erlang_c",
    "mm1_number_in_system",
    "mm1_time_in_system",
    "mm1_wait",
    "mmc_number_in_system",
    "mmc_time_in_system",
    "mmc_wait",
]


def _check_rates(lam: float, mu: float, c: int) -> None:
    if not isinstance(c, int) or isinstance(c, bool) or c < 1:
        raise ValueError(f"c must be a positive integer, got {c!r}")
    if lam <= 0 or mu <= 0:
        raise ValueError(f"rates must be positive, got lam={lam!r}, mu={mu!r}")
    if lam >= c * mu:
        raise ValueError(f"unstable queue: lam={lam!r} >= c*mu={c * mu!r} (utilisation >= 1)")


def erlang_b(c: int, a: float) -> float:
    """Erlang B blocking probability for ``c`` servers and offered load ``a``.

    Uses the recursion B(0) = 1, B(k) = a*B(k-1) / (k + a*B(k-1)), which never
    forms a factorial or a power and so is stable for any ``c``.
    """
    if not isinstance(c, int) or isinstance(c, bool) or c < 0:
        raise ValueError(f"c must be a non-negative integer, got {c!r}")
    if a < 0:
        raise ValueError(f"offered load must be >= 0, got {a!r}")
    b = 1.0
    for k in range(1, c + 1):
        ab = a * b
        b = ab / (k + ab)
    return b


def erlang_c(c: int, a: float) -> float:
    """Erlang C: probability that an arrival to an M/M/c queue has to wait.

    ``a = lam / mu`` is the offered load in Erlangs and must be below ``c``.
    Computed from Erlang B: C = c*B / (c - a*(1 - B)), numerically stable.
    """
    if not isinstance(c, int) or isinstance(c, bool) or c < 1:
        raise ValueError(f"c must be a positive integer, got {c!r}")
    if a <= 0:
        raise ValueError(f"offered load must be positive, got {a!r}")
    if a >= c:
        raise ValueError(f"unstable queue: offered load a={a!r} >= c={c}")
    b = erlang_b(c, a)
    return c * b / (c - a * (1.0 - b))


def mm1_time_in_system(lam: float, mu: float) -> float:
    """M/M/1 mean time in system (sojourn) W = 1 / (mu - lam)."""
    _check_rates(lam, mu, 1)
    return 1.0 / (mu - lam)


def mm1_wait(lam: float, mu: float) -> float:
    """M/M/1 mean wait in queue (before service starts) Wq = rho / (mu - lam)."""
    _check_rates(lam, mu, 1)
    return (lam / mu) / (mu - lam)


def mm1_number_in_system(lam: float, mu: float) -> float:
    """M/M/1 mean number in system L = rho / (1 - rho)  (= lam * W)."""
    _check_rates(lam, mu, 1)
    rho = lam / mu
    return rho / (1.0 - rho)


def mmc_wait(lam: float, mu: float, c: int) -> float:
    """M/M/c mean wait in queue Wq = C(c, a) / (c*mu - lam)."""
    _check_rates(lam, mu, c)
    return erlang_c(c, lam / mu) / (c * mu - lam)


def mmc_time_in_system(lam: float, mu: float, c: int) -> float:
    """M/M/c mean time in system W = Wq + 1/mu."""
    return mmc_wait(lam, mu, c) + 1.0 / mu


def mmc_number_in_system(lam: float, mu: float, c: int) -> float:
    """M/M/c mean number in system L = lam * W (Little's law)."""
    return lam * mmc_time_in_system(lam, mu, c)


def _ekm1_sigma(lam: float, k: int, mu: float) -> float:
    """Root in (0, 1) of sigma = (lam / (lam + mu*(1 - sigma)))**k  (GI/M/1 with Erlang-k gaps)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    _check_rates(lam / k, mu, 1)
    sigma = 0.0
    # Fixed-point iteration from 0 rises monotonically to the smallest root,
    # which lies in (0, 1) when lam/k < mu.
    for _ in range(100_000):
        nxt = (lam / (lam + mu * (1.0 - sigma))) ** k
        if abs(nxt - sigma) < 1e-15:
            return nxt
        sigma = nxt
    return sigma


def ekm1_time_in_system(lam: float, k: int, mu: float) -> float:
    """E_k/M/1 mean time in system: one server fed every k-th arrival of a Poisson(lam) stream.

    That is what one partition sees when unkeyed events are spread round-robin
    over k partitions: gaps are Erlang(k, lam), arrival rate lam/k.  GI/M/1
    theory gives W = 1 / (mu * (1 - sigma)) with sigma = A*(mu * (1 - sigma)).
    For k = 1 this is M/M/1.
    """
    return 1.0 / (mu * (1.0 - _ekm1_sigma(lam, k, mu)))


def ekm1_wait(lam: float, k: int, mu: float) -> float:
    """E_k/M/1 mean wait in queue Wq = sigma / (mu * (1 - sigma))."""
    sigma = _ekm1_sigma(lam, k, mu)
    return sigma / (mu * (1.0 - sigma))
