"""`python -m simulations.offpolicy`: estimate a candidate policy's value on logged decisions.

The candidate reads the log in order: at each decision it gives its probabilities over
the experts that were eligible, then learns from what the log shows (the chosen
expert's quality and cost), as it would have online. Its value under reward =
quality - w * cost is estimated with IPS, SNIPS, DR and switch-DR (simulations/ope.py),
the reward model for DR cross-fitted on two halves of the log; the logging policy is
estimated the same way beside it, against its observed mean, as a check.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bandit.policies import POLICIES, make_policy
from common.cli import add_deployment_args, settings_from

from . import ope
from .logs import LoggedDecisions, load


def arrays(logs: LoggedDecisions, cost_weight: float | None):
    experts = logs.experts
    col = {e: i for i, e in enumerate(experts)}
    x = np.array([r["context"] for r in logs.rows], dtype=np.float64)
    w = np.array([r.get("cost_weight", 0.0) if cost_weight is None else cost_weight for r in logs.rows])
    reward = np.array([r["quality"] for r in logs.rows]) - w * np.array([r["cost"] for r in logs.rows])
    action = np.array([col[r["chosen_expert"]] for r in logs.rows])
    pscore = np.array([r["propensity"] for r in logs.rows], dtype=np.float64)
    logging_pi = np.zeros((len(logs.rows), len(experts)))
    for i, r in enumerate(logs.rows):
        for e, p in r["probabilities"].items():
            logging_pi[i, col[e]] = p
    return experts, x, w, reward, action, pscore, logging_pi / logging_pi.sum(axis=1, keepdims=True)


def candidate_pi(name: str, params: dict, logs: LoggedDecisions, x, w, seed: int) -> np.ndarray:
    experts = logs.experts
    policy = make_policy(name, x.shape[1], params, seed=seed)
    pi = np.zeros((len(logs.rows), len(experts)))
    for i, row in enumerate(logs.rows):
        eligible = sorted(row["probabilities"])
        choice = policy.select(x[i], eligible, float(w[i]), row.get("prices"))
        for e, p in choice.probabilities.items():
            pi[i, experts.index(e)] = p
        policy.update(row["chosen_expert"], x[i], row["quality"], row["cost"])
    return pi


def reward_model(logs: LoggedDecisions, x, w, seed: int) -> np.ndarray:
    """q_hat(x, a) for every decision and expert, each half predicted by a ridge model of the other."""
    experts = logs.experts
    q_hat = np.zeros((len(logs.rows), len(experts)))
    halves = np.arange(len(logs.rows)) % 2
    params = {"alpha": 0.0, "epsilon": 0.0, "project_to": min(64, x.shape[1])}
    for h in (0, 1):
        model = make_policy("linucb", x.shape[1], params, seed=seed)
        for i in np.flatnonzero(halves != h):
            model.update(logs.rows[i]["chosen_expert"], x[i], logs.rows[i]["quality"], logs.rows[i]["cost"])
        for i in np.flatnonzero(halves == h):
            s = model.select(x[i], experts, float(w[i])).scores
            q_hat[i] = [s[e].estimated_quality - w[i] * s[e].estimated_cost for e in experts]
    return q_hat


def evaluate_logs(logs: LoggedDecisions, name: str, params: dict, cost_weight: float | None = None,
                  seed: int = 0, n_boot: int = 200) -> dict:
    experts, x, w, reward, action, pscore, logging_pi = arrays(logs, cost_weight)
    d = ope.Logged(reward, action, pscore, reward_model(logs, x, w, seed))
    return {"n": len(logs.rows), "experts": experts, "skipped": logs.skipped,
            "candidate": {"policy": name, "params": params,
                          **ope.evaluate(d, candidate_pi(name, params, logs, x, w, seed), n_boot=n_boot, seed=seed)},
            "logging_policy": {"observed_mean": float(reward.mean()),
                               **ope.evaluate(d, logging_pi, n_boot=n_boot, seed=seed)}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logs", type=Path, required=True, help="JSON lines from `python -m simulations.logs`")
    add_deployment_args(ap, policy=True)
    ap.add_argument("--cost-weight", type=float, help="w in quality - w * cost (default: each decision's own)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--skip-bad", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    s = settings_from(args)
    if s.policy not in POLICIES:
        raise SystemExit(f"unknown policy {s.policy!r}; registered: {sorted(POLICIES)}")
    report = evaluate_logs(load(args.logs, args.skip_bad), s.policy, s.policy_params,
                           args.cost_weight, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ope.json").write_text(json.dumps(report, indent=1))
    for who in ("logging_policy", "candidate"):
        r = report[who]
        print(f"{who}: ESS {r['ess']:.0f} of {r['n']}" +
              (f", observed mean {r['observed_mean']:.4f}" if "observed_mean" in r else ""))
        for est, v in r["estimates"].items():
            print(f"  {est:<10} {v['value']:.4f}  [{v['ci'][0]:.4f}, {v['ci'][1]:.4f}]")


if __name__ == "__main__":
    main()
