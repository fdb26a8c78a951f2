"""`./run.sh promote --candidate NAME`: serve a shadow policy once the logs show it is better.

The evidence is the traffic the serving policy decided while NAME ran in its shadow
(BR_SHADOW_POLICIES), with the rewards those decisions earned. Each such decision logs
the serving policy's propensity for what it chose and the candidate's probabilities over
the same eligible experts, so the candidate's value is estimated off-policy: doubly
robust, its reward model cross-fitted on two halves of the log (simulations/offpolicy.py),
with a bootstrap interval. The serving policy's value on the same decisions comes from
the same estimator and model (on-policy: its observed mean, less noisy). NAME is promoted
only when its DR lower bound beats that value; otherwise the command refuses, says why with the numbers, and
exits 1. Either way an AuditEvent on router.audit records the verdict and its figures.
Reward = quality - cost_weight * cost with each decision's own weight (--cost-weight
overrides). Redis, Kafka and the prefix come from the same BR_* settings as the services.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass

import numpy as np

from common.cli import add_deployment_args, settings_from
from common.redis_client import connect
from common.serving import ServingPointer, audit_event, send_audit
from common.settings import PolicySettings
from common.snapshots import SnapshotStore

from . import ope
from .logs import LoggedDecisions, rewarded_decisions
from .offpolicy import arrays, reward_model


@dataclass
class Verdict:
    promote: bool
    reason: str
    figures: dict[str, float]


def judge(rows: list[dict], serving: str, candidate: str, *, min_decisions: int = 200,
          confidence: float = 0.95, n_boot: int = 500, cost_weight: float | None = None, seed: int = 0) -> Verdict:
    """Promote `candidate` over `serving` on these rewarded decisions?"""
    rows = [r for r in rows if r.get("policy_name") == serving and candidate in r.get("shadows", {})]
    if len(rows) < min_decisions:
        return Verdict(False, f"only {len(rows)} rewarded decisions of {serving!r} with {candidate!r} in its "
                              f"shadow; at least {min_decisions} are needed (--min-decisions)",
                       {"decisions": float(len(rows))})
    logs = LoggedDecisions(rows)
    experts, x, w, reward, action, pscore, logging_pi = arrays(logs, cost_weight)
    col = {e: i for i, e in enumerate(experts)}
    pi = np.zeros((len(rows), len(experts)))
    for i, r in enumerate(rows):
        for e, p in r["shadows"][candidate]["probabilities"].items():
            if e in col:
                pi[i, col[e]] = p
    pi /= pi.sum(axis=1, keepdims=True)
    d = ope.Logged(reward, action, pscore, reward_model(logs, x, w, seed))
    alpha = 1.0 - confidence
    est = ope.evaluate(d, pi, (ope.DR(),), n_boot=n_boot, alpha=alpha, seed=seed)
    value, (lo, hi) = est["estimates"]["dr"]["value"], est["estimates"]["dr"]["ci"]
    # The serving policy's value by the same estimator and reward model (its weights are 1:
    # the observed mean, with the model's variance reduction), so both carry the same bias.
    mine = ope.evaluate(d, logging_pi, (ope.DR(),), n_boot=n_boot, alpha=alpha, seed=seed)["estimates"]["dr"]
    live, (live_lo, live_hi) = mine["value"], mine["ci"]
    figures = {"decisions": float(len(rows)), "candidate_dr": value, "candidate_lower": lo, "candidate_upper": hi,
               "candidate_ess": est["ess"], "serving_value": live, "serving_lower": live_lo,
               "serving_upper": live_hi, "serving_observed": float(reward.mean()), "confidence": confidence}
    said = (f"{candidate!r}: DR estimate {value:.4f}, {confidence:.0%} interval [{lo:.4f}, {hi:.4f}] "
            f"(ESS {est['ess']:.0f} of {len(rows)} decisions); {serving!r} served them at {live:.4f} "
            f"[{live_lo:.4f}, {live_hi:.4f}] (observed mean {reward.mean():.4f})")
    if lo > live:
        return Verdict(True, f"{said}: the lower bound beats it", figures)
    return Verdict(False, f"{said}: the lower bound {lo:.4f} does not beat {live:.4f}", figures)


async def promote(s: PolicySettings, candidate: str, *, dry_run: bool = False, **judge_args) -> Verdict:
    """Judge `candidate` on the logged traffic; switch the serving policy when it wins; audit."""
    redis = connect(s.redis_url)
    try:
        pointer = ServingPointer(redis, s.redis_prefix, s.policy)
        serving = await pointer.get()
        if candidate == serving:
            raise SystemExit(f"error: {candidate!r} already serves")
        rows = await rewarded_decisions(s)
        if not any(candidate in r.get("shadows", {}) for r in rows):
            verdict = Verdict(False, f"no rewarded decision has {candidate!r} in its shadow: is it in the "
                                     "routers' BR_SHADOW_POLICIES, and have its decisions been rated?", {})
        else:
            verdict = judge(rows, serving, candidate, **judge_args)
        versions = [await SnapshotStore(redis, s.redis_prefix, n).current_version() for n in (serving, candidate)]
        if verdict.promote and not dry_run:
            before = await pointer.switch(candidate, expected=serving)
            if before != serving:
                verdict = Verdict(False, f"{before!r} started serving while {candidate!r} was judged; "
                                         "nothing changed, judge again", verdict.figures)
        if not dry_run:
            await send_audit(s, audit_event(
                "promote" if verdict.promote else "promote_refused", from_policy=serving, to_policy=candidate,
                from_version=versions[0], to_version=versions[1], reason=verdict.reason, figures=verdict.figures))
        return verdict
    finally:
        await redis.aclose()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidate", required=True, help="a shadow policy's name (BR_SHADOW_POLICIES)")
    p.add_argument("--min-decisions", type=int, default=200, help="refuse on fewer rewarded decisions (200)")
    p.add_argument("--confidence", type=float, default=0.95, help="of the bootstrap intervals (0.95)")
    p.add_argument("--cost-weight", type=float, help="w in quality - w * cost (default: each decision's own)")
    p.add_argument("--dry-run", action="store_true", help="judge and print; change nothing, audit nothing")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    add_deployment_args(p, kafka=True, redis=True)
    args = p.parse_args(argv)
    if not 0 < args.confidence < 1:
        raise SystemExit("error: --confidence must be between 0 and 1")
    verdict = asyncio.run(promote(settings_from(args), args.candidate, dry_run=args.dry_run,
                                  min_decisions=args.min_decisions, confidence=args.confidence,
                                  cost_weight=args.cost_weight))
    if args.json:
        print(json.dumps({"promoted": verdict.promote and not args.dry_run, "would_promote": verdict.promote,
                          "reason": verdict.reason, "figures": verdict.figures}, indent=1))
    else:
        word = "would promote" if args.dry_run and verdict.promote else "promoted" if verdict.promote else "refused"
        print(f"{word}: {verdict.reason}")
    sys.exit(0 if verdict.promote else 1)


if __name__ == "__main__":
    main()
