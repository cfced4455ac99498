"""A real S3 API for the data contract: moto's server, reachable from tasks in containers.

The server listens on the Docker bridge's gateway address (this machine as containers on
the default network see it), so the client, a local scheduler, a Slurm task and a task in a
container all reach the same URL. Buckets are read anonymously, as OpenNeuro's are.
"""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

_SERVER: tuple | None = None
_LOCK = threading.Lock()


def bridge_address() -> str:
    """The Docker bridge's gateway, or 127.0.0.1 where no engine answers."""
    try:
        from spmd import docker_engine
        network = docker_engine.client().networks.get("bridge").attrs
    except Exception:
        return "127.0.0.1"
    for config in network.get("IPAM", {}).get("Config") or ():
        if config.get("Gateway"):
            return config["Gateway"]
        if config.get("Subnet"):
            import ipaddress
            return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
    return "127.0.0.1"


def s3_endpoint() -> str:
    """The URL of this process's moto server, started on first use."""
    global _SERVER
    with _LOCK:
        if _SERVER is None:
            import logging

            from moto.server import ThreadedMotoServer
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            server = ThreadedMotoServer(ip_address=bridge_address(), port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            _SERVER = (server, f"http://{host}:{port}")
        return _SERVER[1]


@dataclass
class Bucket:
    """A fresh bucket on the S3 server, with what spmd.File needs to read it anonymously."""

    name: str
    endpoint: str

    @classmethod
    def create(cls, prefix: str = "spmd-data", writable: bool = False) -> "Bucket":
        """A public bucket (as OpenNeuro's); ``writable``: anyone may also write (a test's
        destination, so tasks publish without credentials of their own)."""
        endpoint = s3_endpoint()
        bucket = cls(f"{prefix}-{uuid.uuid4().hex[:10]}", endpoint)
        bucket.client().create_bucket(Bucket=bucket.name,
                                      ACL="public-read-write" if writable else "public-read")
        return bucket

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    @property
    def options(self) -> dict:
        """Storage options of an anonymous reader (spmd.File(url, **options))."""
        return {"anon": True, "endpoint_url": self.endpoint}

    def url(self, key: str = "") -> str:
        return f"s3://{self.name}/{key}"

    def put(self, key: str, body: bytes) -> str:
        self.client().put_object(Bucket=self.name, Key=key, Body=body, ACL="public-read")
        return self.url(key)

    def get(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.name, Key=key)["Body"].read()

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))
