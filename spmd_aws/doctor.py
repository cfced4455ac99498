"""``spmd doctor``'s checks of the AWS backend: credentials, region, the stack's queue and
compute environment (state, and drift from the config), without changing anything."""
from __future__ import annotations

from typing import Iterator

from spmd.checks import Check, probe

from . import compute


def checks(backend) -> Iterator[Check]:
    opts, clients = backend.opts, backend.clients
    region = probe("region", lambda: clients.region, 'add region = "us-east-1" (or yours) to '
                   "the profile, or set AWS_DEFAULT_REGION")
    yield region
    if not region.ok:
        return
    who = probe("credentials", lambda: _identity(clients),
                "configure credentials (aws configure, AWS_PROFILE, or an SSO login) and try again")
    yield who
    if not who.ok:
        return
    yield probe("stack", lambda: _stack(opts, clients),
                f"run `spmd aws up` to make or repair stack {opts.stack.name}")


def _identity(clients) -> str:
    identity = clients("sts").get_caller_identity()
    return f"{identity['Arn']} (account {identity['Account']})"


def _stack(opts, clients) -> str:
    batch, stack = clients("batch"), opts.stack
    queue = compute.live_queue(batch, stack.job_queue)
    env = compute.live_environment(batch, stack.compute_environment)
    if queue is None or env is None:
        missing = [name for name, found in ((stack.job_queue, queue),
                                            (stack.compute_environment, env)) if found is None]
        raise LookupError(f"not set up yet: {', '.join(missing)} missing (a first map makes it)")
    for what, found in ((stack.job_queue, queue), (stack.compute_environment, env)):
        if (found.get("status"), found.get("state")) != ("VALID", "ENABLED"):
            raise RuntimeError(f"{what} is {found.get('status')}/{found.get('state')}: "
                               f"{found.get('statusReason') or 'no reason given'}")
    drift = compute.config_drift(opts, env)
    if drift:
        raise RuntimeError(f"compute environment {stack.compute_environment} differs from the "
                           f"config ({compute._said(drift)}); maps run on it as it is")
    return f"{stack.job_queue} and {stack.compute_environment}: VALID, ENABLED, as configured"
