"""The replay report as Markdown and PNG plots (frontier, regret, traffic)."""
from __future__ import annotations

import json
from pathlib import Path


def _fmt(v, pct=False) -> str:
    if v is None:
        return "never"
    return f"{v:.0%}" if pct else f"{v:.3f}"


def write_markdown(report: dict, path: Path) -> None:
    ap = report["always_premium"]
    knows = ("know each expert's list price (the meta's mean cost) before its first call"
             if report.get("list_prices") else "learn every cost from rewards (no list prices)")
    hints = f"; request hints: {', '.join(report['hints'])}" if report.get("hints") else ""
    lines = [f"# Replay of {report['dataset']} ({report['rows']} queries, {report['seeds']} seeds, "
             f"reward delay {report['delay']}, cost weight {report['cost_weight']})", "",
             f"Always-premium ({report['premium']}): quality {ap['quality']:.3f}, cost {ap['cost']:.4g} "
             f"{report['cost_unit']} per query. Policies {knows}{hints}.", "",
             "| policy | kind | quality (± sd) | cost / query | premium share | regret | AIQ | premium share at parity "
             "| quality at 33% premium |",
             "|---|---|---|---|---|---|---|---|---|"]
    rows = sorted(report["policies"].items(), key=lambda kv: -kv[1]["quality"])
    for name, r in rows:
        lines.append(f"| {name} | {r['kind']} | {r['quality']:.3f} ± {r['spread']['quality']:.3f} | {r['cost']:.4g} | "
                     f"{r['premium_share']:.0%} | {r['regret']:.1f} | {r['aiq']:.3f} | "
                     f"{_fmt(r['premium_share_at_parity'], pct=True)} | {_fmt(r['quality_at_premium_share_0.33'])} |")
    lines += ["", "Quality and cost are per-query means over the whole replay at the cost weight above; AIQ, "
              "parity and the 33% column come from the sweep over cost weights. Plots: frontier.png, "
              "regret.png (regret, quality and cost over time), traffic.png.", ""]
    lines += [f"- `{name}` hyperparameters: `{json.dumps(r['params'], sort_keys=True)}`"
              for name, r in report["policies"].items() if r.get("params") is not None]
    checks = report.get("checks") or {}
    if checks.get("single_experts"):
        bound = "hint_oracle" in report["policies"]
        lines += ["", "## The best bandit against every single expert (whole stream, at that expert's cost)", "",
                  "| expert | its cost | its quality | best bandit there | by | on or above |"
                  + (" hint oracle there |" if bound else ""), "|---|---|---|---|---|---|" + ("---|" if bound else "")]
        for e, c in sorted(checks["single_experts"].items(), key=lambda kv: kv[1]["cost"]):
            lines.append(f"| {e} | {c['cost']:.4g} | {c['quality']:.3f} | {_fmt(c['best_bandit'])} | "
                         f"{c['by'] or '-'} | {'yes' if c['ok'] else 'NO'} |"
                         + (f" {_fmt(c.get('hint_oracle'))} |" if bound else ""))
        if bound:
            lines += ["", "The hint oracle knows every outcome and calls each hint value's best expert: where it "
                      "is not above an expert, no policy that routes by the hints can be either."]
    if checks.get("knn_late"):
        lines += ["", "## The best bandit against the kNN baseline, second half of the stream", "",
                  "| kNN cost weight | cost | kNN quality | best bandit there | gap |", "|---|---|---|---|---|"]
        for c in checks["knn_late"]:
            gap = "never that cheap" if c["gap"] is None else f"{c['gap']:+.3f}"
            lines.append(f"| {c['cost_weight']} | {c['cost']:.4g} | {c['knn']:.3f} | {_fmt(c['best_bandit'])} | {gap} |")
    lines += _who_answers_what(report)
    path.write_text("\n".join(lines))


def _who_answers_what(report: dict) -> list[str]:
    """The learned split: per task, each expert's share of the best bandit's (by AIQ) and
    kNN's queries over the second half, at the report's cost weight."""
    pol = report["policies"]
    bandits = [n for n, r in pol.items() if r["kind"] == "bandit"]
    shown = ([max(bandits, key=lambda n: pol[n]["aiq"])] if bandits else []) + [n for n in ("knn",) if n in pol]
    tasks = sorted({t for n in shown for t in pol[n].get("late_traffic_by_task", {})})
    if not shown or len(tasks) < 2:
        return []
    experts = report.get("experts") or sorted({e for n in shown for t in tasks
                                               for e in pol[n]["late_traffic_by_task"].get(t, {})})
    out = ["", f"## Who answers what (second half of the stream, cost weight {report['cost_weight']})", "",
           "| policy | task | " + " | ".join(experts) + " |", "|---|---|" + "---|" * len(experts)]
    for n in shown:
        for t in tasks:
            share = pol[n]["late_traffic_by_task"].get(t, {})
            out.append(f"| {n} | {t} | " + " | ".join(f"{share.get(e, 0.0):.0%}" for e in experts) + " |")
    return out


def write_plots(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pol = report["policies"]
    learned = [n for n, r in pol.items() if len(r["frontier"]) > 1 and n != "oracle"]
    fig, ax = plt.subplots(figsize=(7, 5))
    for name in [*learned, "oracle"]:
        f = sorted(pol[name]["frontier"], key=lambda p: p["cost"])
        ax.plot([p["cost"] for p in f], [p["quality"] for p in f], marker="o", label=name)
    for name, r in pol.items():
        if name.startswith("always:") or name == "random":
            ax.scatter([r["cost"]], [r["quality"]], marker="x", color="grey")
            ax.annotate(name.removeprefix("always:"), (r["cost"], r["quality"]), fontsize=6)
    ax.axhline(report["always_premium"]["quality"], linestyle="--", color="black", linewidth=0.8)
    ax.set(xlabel=f"cost per query ({report['cost_unit']})", ylabel="quality", title="cost-quality frontier")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "frontier.png", dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for ax, key, label in zip(axes, ("regret", "quality", "cost"),
                              ("cumulative regret vs oracle", "mean quality so far", "mean cost so far")):
        for name in [*learned, "random", f"always:{report['premium']}"]:
            curve = pol[name][f"{key}_curve"]
            ax.plot([i * (report["rows"] - 1) / (len(curve) - 1) for i in range(len(curve))], curve, label=name)
        ax.set(xlabel="query", ylabel=label, title=f"{key} over time")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "regret.png", dpi=100)
    plt.close(fig)

    experts = sorted({e for n in learned for e in pol[n]["traffic"]})
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.5 + 0.35 * len(experts) * max(1, len(learned)) / 2)))
    h = 0.8 / max(1, len(learned))
    for j, name in enumerate(learned):
        ax.barh([i + j * h for i in range(len(experts))], [pol[name]["traffic"].get(e, 0) for e in experts],
                height=h, label=name)
    ax.set_yticks([i + 0.4 - h / 2 for i in range(len(experts))], experts, fontsize=7)
    ax.set(xlabel="share of queries", title="traffic per expert")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "traffic.png", dpi=100)
    plt.close(fig)
