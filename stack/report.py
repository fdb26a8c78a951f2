"""What the demo prints and draws: progress lines, the summary table, the plot."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from common.dataset import Row, RoutingDataset


class DemoLog:
    def __init__(self, dataset: RoutingDataset):
        self.dataset = dataset
        self.rows: list[Row] = []
        self.served: list[str] = []
        self.quality: list[float] = []
        self.cost: list[float] = []
        self.fallbacks = 0
        self.errors: Counter = Counter()
        self.version = 0

    @property
    def n(self) -> int:
        return len(self.rows)

    def add(self, row: Row, resp, quality: float) -> None:
        self.rows.append(row)
        self.served.append(resp.expert)
        self.quality.append(quality)
        self.cost.append(resp.cost)
        self.fallbacks += resp.fallback
        self.version = max(self.version, resp.policy_version)

    def error(self, code: str) -> None:
        self.errors[code] += 1

    def premium_share(self, last: int | None = None) -> float:
        served = self.served[-last:] if last else self.served
        return sum(e == self.dataset.premium for e in served) / max(1, len(served))

    def progress(self, total: int, elapsed: float) -> str:
        recent = self.quality[-200:]
        top = ", ".join(f"{e} {c / self.n:.0%}" for e, c in Counter(self.served).most_common(3))
        return (f"[{self.n:>5}/{total}] {self.n / elapsed:5.1f} q/s  quality(last 200) "
                f"{sum(recent) / len(recent):.3f}  premium share {self.premium_share(200):.0%}  "
                f"policy v{self.version}  top: {top}")

    def table(self, s: dict) -> str:
        lines = ["", f"== summary: {s['queries']} queries in {s['wall_s']:.0f}s "
                 f"({s['errors'] or 'no errors'}) ==",
                 f"{'':26}{'quality':>9}{'cost':>12}{'premium calls':>15}",
                 f"{'router (all)':26}{s['quality']:9.3f}{s['cost']:12.4g}{s['premium_share']:15.0%}",
                 f"{'router (last half)':26}{s['quality_last_half']:9.3f}{s['cost_last_half']:12.4g}"
                 f"{s['premium_share_last_half']:15.0%}",
                 f"{'always-premium':26}{s['always_premium']['quality']:9.3f}"
                 f"{s['always_premium']['cost']:12.4g}{1:15.0%}",
                 f"{'oracle (best per query)':26}{s['oracle_quality']:9.3f}",
                 f"cost vs always-premium: {s['cost_ratio']:.0%}; fallbacks: {s['fallbacks']}; "
                 f"final policy version {s['policy_version']}",
                 "share per expert: " + ", ".join(f"{e} {v:.1%}" for e, v in s["share"].items())]
        return "\n".join(lines)


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else 0.0


def summary(log: DemoLog, wall_s: float) -> dict:
    d, n, half = log.dataset, log.n, log.n // 2
    premium_q = _mean(r.outcomes[d.premium].quality for r in log.rows)
    premium_c = _mean(r.outcomes[d.premium].cost for r in log.rows)
    return {
        "dataset": d.name, "queries": n, "wall_s": round(wall_s, 1), "errors": dict(log.errors),
        "quality": _mean(log.quality), "cost": _mean(log.cost), "premium_share": log.premium_share(),
        "quality_last_half": _mean(log.quality[half:]), "cost_last_half": _mean(log.cost[half:]),
        "premium_share_last_half": log.premium_share(n - half),
        "always_premium": {"expert": d.premium, "quality": premium_q, "cost": premium_c},
        "oracle_quality": _mean(max(o.quality for o in r.outcomes.values()) for r in log.rows),
        "cost_ratio": _mean(log.cost) / premium_c if premium_c else 0.0,
        "fallbacks": log.fallbacks, "policy_version": log.version,
        "share": {e: c / max(1, n) for e, c in Counter(log.served).most_common()},
    }


def plot(log: DemoLog, path: Path, window: int = 200) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = log.dataset
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.5))
    roll = [_mean(log.quality[max(0, i - window + 1):i + 1]) for i in range(log.n)]
    prem = [_mean(r.outcomes[d.premium].quality for r in log.rows[max(0, i - window + 1):i + 1])
            for i in range(log.n)]
    ax1.plot(roll, label="router")
    ax1.plot(prem, label=f"always {d.premium}", linestyle="--")
    ax1.set(title=f"quality (rolling mean of {window})", xlabel="query")
    ax1.legend(fontsize=8)
    share = [sum(e == d.premium for e in log.served[max(0, i - window + 1):i + 1]) / min(i + 1, window)
             for i in range(log.n)]
    ax2.plot(share)
    ax2.set(title=f"premium-call share (rolling {window})", xlabel="query", ylim=(0, 1))
    counts = Counter(log.served)
    names = sorted(d.experts, key=lambda e: -counts[e])
    ax3.barh(names, [counts[e] / max(1, log.n) for e in names])
    ax3.set(title="share per expert")
    ax3.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
