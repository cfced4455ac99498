"""Secrets on the backend under test.

    SecretsContract   a value secret is the task's environment variable, a file secret a
                      0600 file whose path is in it; once the job has ended, no object in the
                      store holds either value, nor does the job's log or report
"""
from __future__ import annotations

import secrets as _random
from hashlib import sha256

import spmd

from . import functions as fn
from .fixtures import WAIT, BackendFixtures, wait_for


class SecretsContract(BackendFixtures):
    """``Knot(secrets=[...])`` on the backend under test."""

    def test_secrets_reach_the_task_and_nothing_spmd_writes(self, spmd_knot, spmd_store, tmp_path):
        token = f"tok-{_random.token_hex(12)}"
        licence = f"licence-{_random.token_hex(12)}\n"
        path = tmp_path / "license.txt"
        path.write_text(licence)
        knot = spmd_knot(fn.read_secrets, secrets=[spmd.Secret("LAB_TOKEN", value=token),
                                                   spmd.Secret("LAB_LICENSE_FILE", file=str(path))])
        job = knot.map([["LAB_TOKEN", "LAB_LICENSE_FILE"]])
        seen = job.results(timeout=WAIT)[0]
        assert seen["LAB_TOKEN"] == sha256(token.encode()).hexdigest()
        assert seen["LAB_LICENSE_FILE"] == (sha256(licence.encode()).hexdigest(), "0o600")
        job.wait(timeout=WAIT)
        text = job.logs(0) + repr(job.report().rows)
        assert token not in text and licence.strip() not in text

        def holders() -> list[str]:
            found = []
            for key in spmd_store.list(""):
                try:
                    data = spmd_store.get(key)
                except spmd.ObjectNotFound:  # removed while listed
                    continue
                if token.encode() in data or licence.strip().encode() in data:
                    found.append(key)
            return found
        wait_for(lambda: not holders(), what="the job's secrets to leave the store")
