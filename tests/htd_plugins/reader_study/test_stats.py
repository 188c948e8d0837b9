"""The statistics against published values and independent hand computations."""

from __future__ import annotations

import math

import pytest

from htd_plugins.reader_study import stats


def tail_ge(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed by hand."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def cp_by_bisection(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Clopper-Pearson by inverting the binomial tails (no scipy): an independent check."""

    def solve(f, target):  # f increasing in p
        lo, hi = 0.0, 1.0
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
        return (lo + hi) / 2

    lower = 0.0 if k == 0 else solve(lambda p: tail_ge(k, n, p), alpha / 2)
    upper = 1.0 if k == n else solve(lambda p: tail_ge(k + 1, n, p), 1 - alpha / 2)
    return lower, upper


def test_clopper_pearson_known_values() -> None:
    assert stats.clopper_pearson(7, 10) == pytest.approx((0.3475, 0.9333), abs=1e-4)
    # k = n: lower = (alpha/2)^(1/n); k = 0: upper = 1 - (alpha/2)^(1/n)
    assert stats.clopper_pearson(10, 10) == pytest.approx((0.025 ** (1 / 10), 1.0), abs=1e-9)
    assert stats.clopper_pearson(0, 10) == pytest.approx((0.0, 1 - 0.025 ** (1 / 10)), abs=1e-9)
    for k, n in [(17, 20), (1, 3), (50, 120), (61, 120)]:
        assert stats.clopper_pearson(k, n) == pytest.approx(cp_by_bisection(k, n), abs=1e-9)
    with pytest.raises(ValueError):
        stats.clopper_pearson(3, 0)


def test_binomial_test_exact_two_sided() -> None:
    assert stats.binom_p(7, 10) == pytest.approx(2 * 176 / 1024)  # 0.34375
    assert stats.binom_p(10, 10) == pytest.approx(2 / 1024)
    assert stats.binom_p(5, 10) == pytest.approx(1.0)
    assert stats.binom_p(17, 20) == pytest.approx(2 * (1140 + 190 + 20 + 1) / 2**20)


def test_accuracy_summary_counts() -> None:
    rows = (
        [{"truth": "synthetic", "call": "synthetic"}] * 3
        + [{"truth": "synthetic", "call": "real"}] * 2
        + [{"truth": "real", "call": "real"}] * 4
        + [{"truth": "real", "call": "synthetic"}] * 1
    )
    s = stats.accuracy_summary(rows)
    assert (s["accuracy"]["k"], s["accuracy"]["n"]) == (7, 10)
    assert s["accuracy"]["ci95"] == pytest.approx([0.3475, 0.9333], abs=1e-4)
    assert s["sensitivity"]["estimate"] == pytest.approx(0.6)
    assert s["specificity"]["estimate"] == pytest.approx(0.8)
    assert s["indistinguishable"] is True
    perfect = stats.accuracy_summary([{"truth": "real", "call": "real"}] * 10)
    assert perfect["indistinguishable"] is False
    assert perfect["sensitivity"] == {"k": 0, "n": 0, "estimate": None, "ci95": None}


def test_fleiss_kappa_hand_computed() -> None:
    # 2 raters, 10 items: 7 agree, 3 disagree; 9 of 20 calls "synthetic".
    # P_bar = 0.7, P_e = 0.45^2 + 0.55^2 = 0.505, kappa = 0.195 / 0.495.
    table = [[2, 0]] * 4 + [[0, 2]] * 3 + [[1, 1]] * 3
    assert stats.fleiss_kappa(table) == pytest.approx(0.195 / 0.495)
    # Fleiss (1971) style check: perfect agreement on mixed items is 1.
    assert stats.fleiss_kappa([[3, 0], [0, 3], [3, 0]]) == pytest.approx(1.0)
    assert stats.fleiss_kappa([[2, 0], [2, 0]]) is None  # chance agreement is 1: undefined
    with pytest.raises(ValueError):
        stats.fleiss_kappa([[2, 0], [1, 0]])


def test_agreement_uses_only_images_all_readers_rated() -> None:
    rows = [
        {"reader_id": "a", "image_id": "x", "call": "real"},
        {"reader_id": "b", "image_id": "x", "call": "real"},
        {"reader_id": "a", "image_id": "y", "call": "synthetic"},
        {"reader_id": "b", "image_id": "y", "call": "real"},
        {"reader_id": "a", "image_id": "z", "call": "real"},  # b did not rate z
    ]
    ag = stats.agreement(rows)
    assert ag["n_images"] == 2 and ag["n_readers"] == 2
    # P_bar = 0.5, p_real = 3/4, P_e = 0.625, kappa = -0.125 / 0.375
    assert ag["fleiss_kappa"] == pytest.approx(-1 / 3)
    assert stats.agreement(rows[:1])["fleiss_kappa"] is None


def test_mann_whitney_u_statistic() -> None:
    real = [3] * 5 + [4] * 5
    syn = [3] * 5 + [2] * 5
    res = stats.mann_whitney(real, syn)
    # pairs: (3,3) ties 25 x 0.5, (3,2) 25, (4,3) 25, (4,2) 25 -> U = 87.5 of 100
    assert res["u"] == pytest.approx(87.5)
    assert 0 < res["p_value"] < 0.01
    assert stats.mann_whitney([], syn)["u"] is None


def test_power_of_the_report_decision_rule() -> None:
    # n = 8: only 0/8 and 8/8 put 50% outside the exact interval (7/8: P(X >= 7) = 9/256 >
    # 0.025), so power(p) = p^8 + (1 - p)^8 and 80% power needs p = 0.9725 (p^8 = 0.8).
    assert stats.detection_power(0.9, 8) == pytest.approx(0.9**8 + 0.1**8)
    assert stats.min_detectable_accuracy(8) == pytest.approx(0.97249, abs=1e-4)
    # n <= 5: even 5/5 has P = 1/32 > 0.025, nothing is ever significant
    assert stats.detection_power(1.0, 5) == 0.0 and stats.min_detectable_accuracy(5) is None
    # the rejection region is exactly where the Clopper-Pearson interval excludes 50%
    for n in (8, 20, 37, 120):
        k = stats._rejection_k(n, 0.05)
        assert stats.clopper_pearson(k, n)[0] > 0.5 >= stats.clopper_pearson(k - 1, n)[0]
        by_hand = sum(math.comb(n, i) * 0.7**i * 0.3 ** (n - i) for i in range(n + 1)
                      if i >= k or i <= n - k)  # fmt: skip
        assert stats.detection_power(0.7, n) == pytest.approx(by_hand)
    mdas = [stats.min_detectable_accuracy(n) for n in (10, 20, 40, 120, 400)]
    assert mdas == sorted(mdas, reverse=True) and 0.6 < mdas[3] < 0.65
    assert stats.detection_power(mdas[3], 120) == pytest.approx(0.8, abs=1e-4)


def test_answers_needed_against_the_normal_approximation() -> None:
    from scipy.stats import norm

    needed = stats.answers_needed(0.65)
    assert needed == 97
    assert all(stats.detection_power(0.65, n) >= 0.8 for n in range(needed, needed + 150))
    assert stats.detection_power(0.65, needed - 1) < 0.8
    # Chow, Shao & Wang (2008) 4.1: n = (z_.975 sqrt(.25) + z_.8 sqrt(.65 .35))^2 / .15^2 = 85;
    # the exact equal-tailed test is conservative: more, but the same order
    z_a, z_b = norm.ppf(0.975), norm.ppf(0.8)
    approx = math.ceil((z_a * 0.5 + z_b * math.sqrt(0.65 * 0.35)) ** 2 / 0.15**2)
    assert approx == 85 and approx <= needed <= 1.2 * approx
    summary = stats.power_summary(8)
    assert summary["underpowered"] is True and summary["answers_needed"] == 97
    assert summary["min_detectable_accuracy"] == pytest.approx(0.9725, abs=1e-4)
    assert stats.power_summary(120)["underpowered"] is False
