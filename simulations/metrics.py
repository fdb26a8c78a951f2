"""Cost-quality metrics of a router: the frontier, AIQ, and premium share at parity."""
from __future__ import annotations

import numpy as np


def upper_hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-decreasing upper convex hull of (cost, quality) points, by cost.

    A point may be mixed with another by routing a share of queries to each, so every
    point under the segment between two others is dominated (RouterBench's hull).
    """
    pts = sorted(set(points))
    hull: list[tuple[float, float]] = []
    for p in pts:
        if hull and p[1] <= hull[-1][1]:
            continue                      # costs more, no better: never worth it
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) >= 0:
            hull.pop()
        hull.append(p)
    return hull


def _cross(o, a, b) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def aiq(points: list[tuple[float, float]], c_min: float, c_max: float) -> float:
    """Average quality over [c_min, c_max] under the hull: its area divided by the width.

    Below the hull's cheapest point the quality is 0 (nothing that cheap was reached);
    beyond its dearest point the hull stays flat.
    """
    hull = upper_hull(points)
    if not hull or c_max <= c_min:
        return float(hull[-1][1]) if hull else 0.0
    xs = np.linspace(c_min, c_max, 2001)
    hx, hy = np.array([p[0] for p in hull]), np.array([p[1] for p in hull])
    ys = np.where(xs < hx[0], 0.0, np.interp(xs, hx, hy))
    return float(np.trapezoid(ys, xs) / (c_max - c_min))


def quality_at_cost(points: list[tuple[float, float]], cost: float) -> float | None:
    """The hull's quality at a mean cost (None when the points never get that cheap)."""
    hull = upper_hull(points)
    if not hull or cost < hull[0][0] * (1 - 1e-9):
        return None
    return float(np.interp(cost, [p[0] for p in hull], [p[1] for p in hull]))


def premium_share_at_parity(sweep: list[dict], target_quality: float) -> float | None:
    """The smallest premium share among sweep points whose quality reaches the target."""
    shares = [p["premium_share"] for p in sweep if p["quality"] >= target_quality]
    return min(shares) if shares else None


def quality_at_premium_share(sweep: list[dict], share: float) -> float | None:
    """The best quality among sweep points that call the premium expert at most `share`."""
    qs = [p["quality"] for p in sweep if p["premium_share"] <= share + 1e-9]
    return max(qs) if qs else None


def frontier_checks(policies: dict[str, dict]) -> dict:
    """What a router must show to be worth deploying, from the replay's entries:
    - `single_experts`: at each single expert's mean cost, the best bandit policy's quality
      (its hull over the cost-weight sweep, whole stream) against that expert's, and the
      hint oracle's there when the replay had hints (what routing by the hints can reach);
    - `knn_late`: at each point of the kNN baseline's frontier, the best bandit's quality
      over the second half of the stream (learning done) minus kNN's there."""
    bandits = {n: r for n, r in policies.items() if r["kind"] == "bandit"}
    hinted = [(p["cost"], p["quality"]) for p in policies["hint_oracle"]["frontier"]] if "hint_oracle" in policies else None

    def best(cost: float, late: bool) -> tuple[float | None, str | None]:
        q_key, c_key = ("late_quality", "late_cost") if late else ("quality", "cost")
        found = [(quality_at_cost([(p[c_key], p[q_key]) for p in r["frontier"]], cost), n) for n, r in bandits.items()]
        found = [f for f in found if f[0] is not None]
        return max(found) if found else (None, None)

    singles = {}
    for name, r in policies.items():
        if name.startswith("always:"):
            q, by = best(r["cost"], late=False)
            singles[name.removeprefix("always:")] = {
                "cost": r["cost"], "quality": r["quality"], "best_bandit": q, "by": by,
                "ok": q is not None and q >= r["quality"] - 1e-9,
                "hint_oracle": quality_at_cost(hinted, r["cost"]) if hinted else None}
    knn = []
    for p in policies.get("knn", {}).get("frontier", []):
        q, by = best(p["late_cost"], late=True)
        knn.append({"cost_weight": p["cost_weight"], "cost": p["late_cost"], "knn": p["late_quality"],
                    "best_bandit": q, "by": by, "gap": None if q is None else q - p["late_quality"]})
    return {"single_experts": singles, "knn_late": knn}
