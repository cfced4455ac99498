"""Data where it lives, on AWS: which buckets tasks may reach, refused at ``map()`` otherwise.

    spmd.File("s3://lab-bids/sub-01/")        the task reads it as the job role:
                                              lab-bids must be in read_buckets
    spmd.File("s3://openneuro.org/...", anon=True)   anonymous: needs nothing
    spmd.File("https://...")                  tasks have the network: needs nothing
    map(outputs_to="s3://lab-out/dti/{index}/")   the task publishes as the job role:
                                              lab-out/dti must be in write_buckets
    map(outputs_to="/home/me/out/{index}/")   a folder of the client: no task reaches it

``up`` grants the job role exactly those lists (``permissions.job_policy``). IAM would refuse
anything else only inside a running task, as a 403 after the image was pulled and the task
placed; ``check`` refuses it on the client instead, before anything is built or submitted,
with the line of config that fixes it. With ``job_role`` set, that role's own policy decides
and no bucket is checked: spmd neither grants nor knows its permissions.
"""
from __future__ import annotations

import json
import re
from typing import Iterable

from spmd.config import Settings
from spmd.destinations import Destinations
from spmd.errors import DataError
from spmd.remote import UrlRef, protocol_of

from .config import AwsSettings
from .permissions import bucket_entries, covers, jobs_prefix

S3_SCHEMES = ("s3", "s3a")
SHOWN = 3  # refused URLs named in the message; the rest are counted


def _bucket_key(url: str) -> tuple[str, str]:
    bucket, _, key = url.split("://", 1)[1].partition("/")
    return bucket, key


def _as_job_role(url: str, options: dict) -> bool:
    """Whether a task would reach url with the job role's credentials (an s3 URL, not anon)."""
    return protocol_of(url) in S3_SCHEMES and not options.get("anon")


def _allowed(opts: AwsSettings, entries: Iterable[str], url: str) -> bool:
    bucket, key = _bucket_key(url)
    if bucket == opts.bucket and key.startswith(jobs_prefix(opts.prefix)):
        return True  # the store's own job data: the job role has it already
    return any(covers(entry, bucket, key) for entry in entries)


def where(settings: Settings, key: str) -> str:
    """Where a line of config for ``key`` goes: the table and file the profile came from."""
    source = settings.sources.get(key) or settings.sources.get("bucket") or \
        settings.sources.get("backend") or ""
    table = re.fullmatch(r"(.*) \[profiles\.(.+)\]", source)
    if table:
        return f"in [profiles.{table.group(2)}] of {table.group(1)}"
    if source == "environment":
        return f"to the environment's SPMD_{key.upper()} (comma-separated)"
    if source == "argument":
        return "in the config passed to spmd.Knot (config={...})"
    if source and source != "default":
        return f"in {source}"
    return f"in [profiles.{settings.profile}] of spmd.toml" if settings.profile else "in spmd.toml"


def config_line(key: str, entries: Iterable[str]) -> str:
    """``key = ["a", "b"]``: a TOML line (a JSON list of strings is one)."""
    return f"{key} = {json.dumps(list(entries))}"


def _refusal(settings: Settings, key: str, have: tuple[str, ...], add: list[str],
             urls: list[str], what: str) -> str:
    named = ", ".join(urls[:SHOWN]) + (f" and {len(urls) - SHOWN} more" if len(urls) > SHOWN else "")
    line = config_line(key, bucket_entries((*have, *add)))
    return (f"{named}: {what}; add\n    {line}\n"
            f"{where(settings, key)}, then `spmd aws up` (or the next map) grants it")


def check(settings: Settings, opts: AwsSettings, inputs: list[UrlRef],
          destinations: Destinations | None) -> None:
    """DataError naming the URLs and the line of config to add, when a task would read an
    s3 input outside read_buckets or publish outside write_buckets as the job role (not
    checked with a job_role of the user's own), and for what no task on AWS can do: publish
    to a folder of this machine, or read with a profile= of this machine's."""
    problems: list[str] = []
    named: list[str] = []  # every URL refused, the first one is the error's path
    if destinations is not None and protocol_of(destinations.template) == "file":
        named.append(destinations.template)
        problems.append(f"outputs_to={destinations.template!r} is a folder on this machine, which "
                        "tasks on AWS cannot reach (their files would stay in the container); "
                        "publish to s3://... instead, or leave outputs_to out and fetch them "
                        "with job.download()")
    profiled = [ref.url for ref in inputs if protocol_of(ref.url) in S3_SCHEMES
                and "profile" in ref.storage_options]
    if profiled:
        named += profiled
        problems.append(f"{', '.join(profiled[:SHOWN])}: profile= names AWS CLI credentials of "
                        "this machine, which a task on AWS does not have (it reads as the job "
                        "role); drop profile= and list the bucket in read_buckets")
    checked = not opts.job_role  # a role of the user's own: its own policy decides
    reads = [ref.url for ref in inputs if checked and _as_job_role(ref.url, ref.storage_options)
             and "profile" not in ref.storage_options
             and not _allowed(opts, opts.read_buckets, ref.url)]
    if reads:
        named += reads
        add = list(dict.fromkeys(_bucket_key(url)[0] for url in reads))
        problems.append(_refusal(settings, "read_buckets", opts.read_buckets, add, reads,
                                 "tasks would read these as the job role, which may not "
                                 "read them") +
                        " (a public bucket needs nothing: pass anon=True)")
    if checked and destinations is not None and \
            _as_job_role(destinations.template, destinations.options):
        writes = [url for url in dict.fromkeys(destinations.urls)
                  if not _allowed(opts, opts.write_buckets, url)]
        if writes:
            named += writes
            problems.append(_refusal(settings, "write_buckets", opts.write_buckets,
                                     _write_entries(destinations, writes), writes,
                                     "tasks would publish outputs here as the job role, "
                                     "which may not write there"))
    if problems:
        raise DataError("\n".join(problems), path=named[0])


def _write_entries(destinations: Destinations, refused: list[str]) -> list[str]:
    """What to add for refused destinations: the template's fixed folder where it names the
    bucket (``outputs_to="s3://lab-out/dti/{index}/"`` → ``lab-out/dti``), else each bucket."""
    entries = []
    for root in destinations.roots():
        if protocol_of(root) in S3_SCHEMES and "/" in root.split("://", 1)[1]:
            bucket, key = _bucket_key(root)
            entry = f"{bucket}/{key.strip('/')}" if key.strip("/") else bucket
            if all(covers(entry, *_bucket_key(url)) for url in refused):
                return [entry]
    for url in refused:
        entries.append(_bucket_key(url)[0])
    return list(dict.fromkeys(entries))
