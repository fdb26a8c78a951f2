"""`python -m simulations.replay`: replay a routing data set through the router's policies.

Bandit replay: each policy sees only the outcome of the expert it chose, through the
same objects the router uses (bandit.policies), with rewards delivered `--delay`
queries late as they are through Kafka. Every learned policy is swept over a grid of
cost weights for the cost-quality frontier; baselines (each single expert, random,
oracle) are computed beside it. Writes DIR/report.json, DIR/report.md and plots.

Costs are divided by the premium expert's mean cost inside the replay, so a cost weight
of 0.1 means "the premium expert's average cost is worth 0.1 quality" on any data set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from bandit.policies import POLICIES
from common.dataset import DatasetError, RoutingDataset

from . import metrics, supervised
from .embeddings import HINT_FIELDS, contexts, parse_hints
from .policy_runs import Jobs, all_bandit_picks, parse_params, policy_params
from .streams import Run, Stream, streams
from .warmstart import labelled_rows

DEFAULT_POLICIES = "grouped_ts,pooled_linucb,linucb,lints,vw,epsilon_greedy"
# Fine where the frontier bends (0.1 to 1: the middle experts' costs), then about 2.5x apart
# up to where the cheap experts' small price gaps decide, and extended per data set
# (`reaching_cheapest`) until cost outweighs quality even between the two cheapest experts:
# every budget is covered.
SWEEP = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.5, 0.7, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0,
         100.0, 200.0, 500.0, 1000.0)
SUPERVISED = ("knn", "threshold")   # trained with full information on the train split


def parse_drift(spec: str, experts: list[str]) -> tuple[int, float, float]:
    """"EXPERT:DELTA@FRACTION": from that fraction of the stream on, the expert's quality moves by DELTA."""
    try:
        name, rest = spec.rsplit(":", 1)
        delta, frac = rest.split("@")
        delta, frac = float(delta), float(frac)
    except ValueError:
        raise SystemExit(f"--drift {spec!r}: expected EXPERT:DELTA@FRACTION, e.g. gpt-4o:-0.3@0.5") from None
    if name not in experts or not 0.0 <= frac <= 1.0:
        raise SystemExit(f"--drift {spec!r}: expert must be one of {experts}, fraction in [0, 1]")
    return experts.index(name), delta, frac


def reaching_cheapest(sweep: tuple[float, ...], cost: np.ndarray, share: float = 0.05) -> tuple[float, ...]:
    """`sweep`, sorted, with decades added above its top until, on all but `share` of the
    queries, a unit of quality is worth less than the gap between the query's cheapest
    expert and the next cheapest (`cost`: per query and expert, in premium units). With
    llmrouter_9models' experts re-priced 225x apart, as real APIs are, and short queries,
    a weight of 1000 still traded the cheapest expert for one a quarter dearer."""
    c = np.sort(cost, axis=1)
    dearer = np.where(c > c[:, :1] * (1 + 1e-9) + 1e-15, c, np.inf).min(axis=1) - c[:, 0]
    gaps = dearer[np.isfinite(dearer)]
    out = sorted(sweep)
    if len(gaps) and out and out[-1] > 0:
        needed = min(1.0 / max(float(np.quantile(gaps, share)), 1e-12), 1e9)
        while out[-1] < needed:
            out.append(out[-1] * 10.0)
    return tuple(out)


class Baselines:
    """Picks of every baseline on a stream: single experts, random, oracle, and the
    supervised kNN and threshold routers trained on the train split. With request hints,
    also `hint_oracle`: the best expert for each hint value, knowing every outcome; no
    policy that routes by the hints alone can beat it, so it shows what the hints can buy."""

    def __init__(self, ds: RoutingDataset, emb: np.ndarray, ref: Stream, hints: tuple[str, ...] = ()):
        q, c = ds.outcome_arrays()
        c = c / ref.scale
        train = supervised.train_mask([r.split for r in ds.rows])
        self.q_hat, self.c_hat = supervised.knn_estimates(supervised.neighbours(emb, train), q, c)
        # The weak model: the best expert that is cheaper than the premium one on average.
        others = [k for k in range(len(ds.experts)) if k != ref.premium]
        cheap = [k for k in others if c[:, k].mean() < c[:, ref.premium].mean()] or others
        self.weak = max(cheap, key=lambda k: q[train, k].mean())
        self.premium = ref.premium
        self.thresholds = (-0.2, -0.1, 0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
        self.train, self.q, self.c = train, q, c
        self.names = [*(f"always:{e}" for e in ds.experts), "random", "oracle", "knn", "threshold"]
        self.hint_group = None
        if hints:
            keys = ["\x1f".join(str(getattr(r, h) or "") for h in hints) for r in ds.rows]
            self.hint_group = np.unique(keys, return_inverse=True)[1]
            self.names.append("hint_oracle")

    def threshold_for(self, weight: float) -> float:
        """The threshold that earns most on the training rows at this cost weight."""
        def earn(t):
            p = supervised.threshold_picks(self.q_hat[self.train], self.premium, self.weak, t)
            n = np.arange(len(p))
            return (self.q[self.train][n, p] - weight * self.c[self.train][n, p]).mean()
        return max(self.thresholds, key=earn)

    def picks(self, name: str, st: Stream, weight: float, seed: int, knob=None) -> np.ndarray:
        n, k = st.quality.shape
        if name.startswith("always:"):
            return np.full(n, st.experts.index(name.removeprefix("always:")))
        if name == "random":
            return np.random.default_rng(seed).integers(0, k, n)
        if name == "oracle":
            return (st.quality - weight * st.cost).argmax(axis=1)
        if name == "knn":
            return supervised.knn_picks(self.q_hat[st.order], self.c_hat[st.order], weight)
        if name == "hint_oracle":
            group = self.hint_group[st.order]
            value = st.quality - weight * st.cost
            best = np.zeros(group.max() + 1, dtype=int)
            for g in np.unique(group):
                best[g] = value[group == g].mean(axis=0).argmax()
            return best[group]
        t = self.threshold_for(weight) if knob is None else knob
        return supervised.threshold_picks(self.q_hat[st.order], self.premium, self.weak, t)


def aggregate(runs: list[Run]) -> dict:
    def ms(vals):
        return {"mean": float(np.mean(vals)), "std": float(np.std(vals))}
    traffic = Counter()
    by_task: dict[str, Counter] = {}
    for r in runs:
        traffic.update(r.traffic)
        for task, shares in r.late_by_task.items():
            by_task.setdefault(task, Counter()).update(shares)
    return {"quality": ms([r.quality for r in runs]), "cost": ms([r.cost for r in runs]),
            "late_quality": ms([r.late_quality for r in runs]), "late_cost": ms([r.late_cost for r in runs]),
            "premium_share": ms([r.premium_share for r in runs]), "regret": ms([r.regret for r in runs]),
            "traffic": {e: v / len(runs) for e, v in traffic.most_common()},
            "late_traffic_by_task": {t: {e: v / len(runs) for e, v in c.most_common()} for t, c in sorted(by_task.items())},
            **{f"{k}_curve": np.mean([getattr(r, f"{k}_curve") for r in runs], axis=0).tolist()
               for k in ("regret", "quality", "cost")}}


def evaluate(ds: RoutingDataset, x: np.ndarray, emb: np.ndarray, policies: list[str], seeds: int,
             weight: float, delay: int, drift=(), sweep: tuple[float, ...] = SWEEP, log=print,
             params: dict | None = None, jobs: int = 1, warm_start: bool = False,
             hints: tuple[str, ...] = (), prices: bool = True) -> dict:
    """Replay every policy and baseline. With `warm_start`, the policies first learn from the
    train split with full information (simulations/warmstart.py) and everything is replayed
    on the other rows only. With `prices`, the policies know the list prices (meta mean costs)."""
    labelled = labelled_rows(ds, "train")
    rest = np.setdiff1d(np.arange(len(ds.rows)), labelled) if warm_start else None
    runs_of = streams(ds, x, seeds, list(drift), rest, prices)
    base = Baselines(ds, emb, runs_of[0], hints)
    premium_q = float(np.mean([st.quality[:, st.premium].mean() for st in runs_of]))
    premium_c = float(runs_of[0].cost[:, runs_of[0].premium].mean() * runs_of[0].scale)
    grid = sorted(set(reaching_cheapest(sweep, runs_of[0].cost)) | {weight})
    t0 = time.monotonic()
    work = Jobs(runs_of, delay, params)
    if warm_start:
        q, c = ds.outcome_arrays()
        work.warm_start(policies, grid, x, q, c / runs_of[0].scale, labelled, log)
    learned = all_bandit_picks(policies, grid, work, jobs, log)
    log(f"replayed {len(policies)} policies x {len(grid)} cost weights x {seeds} seeds "
        f"on {max(jobs, 1)} processes ({time.monotonic() - t0:.1f}s)")
    results: dict[str, dict] = {}
    for name in [*base.names, *policies]:
        if name in policies:
            points = {w: (w, lambda st, s, w=w: learned[name, w, s]) for w in grid}
        elif name in ("oracle", "knn", "hint_oracle"):
            points = {w: (w, lambda st, s, w=w: base.picks(name, st, w, s)) for w in grid}
        elif name == "threshold":   # its frontier is swept over thresholds; the main point is tuned on train
            points = {("t", t): (weight, lambda st, s, t=t: base.picks(name, st, weight, s, knob=t))
                      for t in base.thresholds}
            points[weight] = (weight, lambda st, s: base.picks(name, st, weight, s))
        else:
            points = {weight: (weight, lambda st, s: base.picks(name, st, weight, s))}
        per_point = {key: aggregate([st.summarize(pick(st, s), w) for s, st in enumerate(runs_of)])
                     for key, (w, pick) in points.items()}
        main = per_point[weight]
        frontier = [{"cost_weight": key if not isinstance(key, tuple) else None,
                     "threshold": key[1] if isinstance(key, tuple) else None,
                     "quality": a["quality"]["mean"], "cost": a["cost"]["mean"],
                     "premium_share": a["premium_share"]["mean"], "late_quality": a["late_quality"]["mean"],
                     "late_cost": a["late_cost"]["mean"]} for key, a in per_point.items()]
        results[name] = {
            "kind": "bandit" if name in policies else "supervised" if name in SUPERVISED else "baseline",
            "quality": main["quality"]["mean"], "cost": main["cost"]["mean"],
            "premium_share": main["premium_share"]["mean"], "regret": main["regret"]["mean"],
            "spread": {k: main[k]["std"] for k in ("quality", "cost", "premium_share", "regret")},
            "aiq": None, "premium_share_at_parity": metrics.premium_share_at_parity(frontier, premium_q),
            "quality_at_premium_share_0.33": metrics.quality_at_premium_share(frontier, 0.33),
            "seeds": seeds, "params": policy_params(name, weight, params) if name in policies else None,
            "traffic": main["traffic"], "late_traffic_by_task": main["late_traffic_by_task"],
            "regret_curve": main["regret_curve"],
            "quality_curve": main["quality_curve"], "cost_curve": main["cost_curve"], "frontier": frontier}
        log(f"{name:<42} quality {results[name]['quality']:.3f}  cost {results[name]['cost']:.4g}  "
            f"premium {results[name]['premium_share']:.0%}")
    costs = [p["cost"] for r in results.values() for p in r["frontier"]]
    for r in results.values():
        r["aiq"] = metrics.aiq([(p["cost"], p["quality"]) for p in r["frontier"]], min(costs), max(costs))
    return {"dataset": ds.name, "premium": ds.premium, "cost_unit": ds.cost_unit, "experts": ds.experts, "rows": len(runs_of[0].order),
            "warm_start": {"rows": int(len(labelled))} if warm_start else None,
            "hints": list(hints), "list_prices": bool(runs_of[0].prices), "cost_weight": weight, "delay": delay, "seeds": seeds, "drift": list(drift),
            "always_premium": {"quality": premium_q, "cost": premium_c}, "policies": results,
            "checks": metrics.frontier_checks(results)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="routing data set (.jsonl, meta beside it)")
    p.add_argument("--out", type=Path, required=True, help="folder for report.json, report.md and plots")
    p.add_argument("--policies", default=DEFAULT_POLICIES, help=f"registered policies (default {DEFAULT_POLICIES})")
    p.add_argument("--params", default="{}", metavar="JSON",
                   help='per-policy hyperparameters over the defaults, e.g. \'{"linucb": {"alpha": 0.1}}\'')
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="processes for the policy replays (default: one per CPU)")
    p.add_argument("--cost-weight", type=float, default=0.1, help="lambda in premium-mean-cost units")
    p.add_argument("--delay", type=int, default=16, help="rewards arrive this many queries late")
    p.add_argument("--limit", type=int, help="use only the first N rows")
    p.add_argument("--experts", default="", metavar="E1,E2,...",
                   help="route between these experts only (a smaller catalog; without the premium, the dearest "
                        "kept expert stands in for it)")
    p.add_argument("--drift", action="append", default=[], metavar="EXPERT:DELTA@FRACTION",
                   help="from FRACTION of the stream on, EXPERT's quality moves by DELTA (repeatable)")
    p.add_argument("--warm-start", action="store_true",
                   help="policies first learn from the train split with full information; replay the rest")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad rows instead of stopping")
    p.add_argument("--embedding-model", default="", help="sentence-transformers name or path")
    p.add_argument("--embedding-backend", default="torch", choices=["torch", "onnx", "onnx-int8"],
                   help="as the router's BR_EMBEDDING_BACKEND (default torch: the cached embeddings)")
    p.add_argument("--embedding-max-seq-length", type=int, help="as BR_EMBEDDING_MAX_SEQ_LENGTH")
    p.add_argument("--hints", default="", metavar="FIELDS",
                   help=f"row fields passed as request hints (context features), e.g. task; one of {list(HINT_FIELDS)}")
    p.add_argument("--no-prices", action="store_true",
                   help="hide the list prices (the meta's mean costs) from the policies: every cost is learned")
    return p.parse_args(argv)


def main(argv=None) -> None:
    sys.stdout.reconfigure(line_buffering=True)   # progress shows as it happens, also when piped
    args = parse_args(argv)
    if args.seeds < 1 or args.jobs < 1:
        raise SystemExit("--seeds and --jobs must be >= 1")
    ds = RoutingDataset.load_or_exit(args.data, skip_bad=args.skip_bad, limit=args.limit)
    if ds.skipped:
        print(f"skipped bad rows: {ds.skipped}")
    if args.experts:
        try:
            ds = ds.only([e for e in args.experts.split(",") if e])
        except DatasetError as exc:
            raise SystemExit(f"error: --experts: {exc}") from None
        print(f"experts: {', '.join(ds.experts)}; premium: {ds.premium}")
    if len(ds.experts) < 2:
        named = "--experts names" if args.experts else f"{args.data.name} has"
        raise SystemExit(f"error: {named} {len(ds.experts)} expert; a router chooses between two or more")
    if supervised.train_mask([r.split for r in ds.rows]).sum() < 2:
        raise SystemExit(f"error: {args.data.name} has too few rows ({len(ds.rows)}) to train the kNN baseline on")
    policies = [p for p in args.policies.split(",") if p]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise SystemExit(f"unknown policies {unknown}; registered: {sorted(POLICIES)}")
    t0 = time.monotonic()
    hints = parse_hints(args.hints)
    x, emb, model = contexts(ds, args.embedding_model, hints=hints, backend=args.embedding_backend,
                             max_seq_length=args.embedding_max_seq_length)
    drift = [parse_drift(d, ds.experts) for d in args.drift]
    params = parse_params(args.params, policies, x.shape[1])
    print(f"{ds.name}: {len(ds.rows)} queries, {len(ds.experts)} experts; contexts from {model}"
          f"{' with hints ' + ','.join(hints) if hints else ''} ({time.monotonic() - t0:.1f}s)")
    if "task" not in hints and any(r.task for r in ds.rows):
        print("the rows name their task: --hints task passes it to the policies as a request hint, as a "
              "product that labels its traffic would (grouped_ts then learns each task's best expert)")
    report = evaluate(ds, x, emb, policies, args.seeds, args.cost_weight, args.delay, drift, params=params, jobs=args.jobs,
                      warm_start=args.warm_start, hints=hints, prices=not args.no_prices)
    report["wall_s"] = round(time.monotonic() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    from .report import write_markdown, write_plots

    write_markdown(report, args.out / "report.md")
    write_plots(report, args.out)
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    main()
