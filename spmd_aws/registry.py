"""EcrRegistry: task images in one ECR repository of the stack, tagged by content hash.

    exists(tag)   ECR DescribeImages for the tag (no image pulled, nothing built)
    publish       repository created if missing (tagged, scan on push)
                  ──> ECR GetAuthorizationToken ──> docker tag + push (Docker SDK)
                  ──> the remote name is untagged here again (the engine keeps spmd-task:<tag>)

``registry`` in the config replaces the address docker pushes to and Batch pulls from
(a private mirror, a VPC endpoint name, a test registry); the ECR API still holds the
repository and answers whether a tag exists.
"""
from __future__ import annotations

import base64
import logging
from functools import cached_property

from spmd import docker_engine
from spmd.errors import ImageError
from spmd.image_registry import ImageRegistry

from .aws import Clients, boundary, error_code
from .stack import Stack

log = logging.getLogger("spmd")


def ensure_repository(clients: Clients, stack: Stack) -> tuple[str, str]:
    """(repository URI, 'created' or 'found'); created tagged, with scan on push."""
    ecr = clients("ecr")
    with boundary(ImageError, f"finding ECR repository {stack.repository}"):
        try:
            repo = ecr.describe_repositories(repositoryNames=[stack.repository])["repositories"][0]
            return repo["repositoryUri"], "found"
        except Exception as exc:
            if error_code(exc) != "RepositoryNotFoundException":
                raise
    with boundary(ImageError, f"creating ECR repository {stack.repository}"):
        try:
            repo = ecr.create_repository(
                repositoryName=stack.repository, tags=stack.tag_list,
                imageScanningConfiguration={"scanOnPush": True}, imageTagMutability="MUTABLE",
                encryptionConfiguration={"encryptionType": "AES256"})["repository"]
        except Exception as exc:  # made meanwhile by another process
            if error_code(exc) != "RepositoryAlreadyExistsException":
                raise
            return ensure_repository(clients, stack)[0], "found"
    return repo["repositoryUri"], "created"


def delete_repository(clients: Clients, stack: Stack) -> str:
    """Delete the stack's repository and its images when it carries the stack's tag."""
    ecr = clients("ecr")
    try:
        repo = ecr.describe_repositories(repositoryNames=[stack.repository])["repositories"][0]
    except Exception as exc:
        if error_code(exc) == "RepositoryNotFoundException":
            return "absent"
        raise
    if not stack.owns(ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]):
        return "kept (not tagged by this stack)"
    ecr.delete_repository(repositoryName=stack.repository, force=True)
    return "deleted"


class EcrRegistry(ImageRegistry):
    """Images live in the stack's ECR repository (or at the configured registry address)."""

    def __init__(self, clients: Clients, stack: Stack, *, address: str | None = None):
        self.clients = clients
        self.stack = stack
        self.address = address.rstrip("/") if address else None

    @cached_property
    def repository_uri(self) -> str:
        uri, action = ensure_repository(self.clients, self.stack)
        if action == "created":
            log.info("created ECR repository %s", uri)
        if self.address:
            return f"{self.address}/{self.stack.repository}"
        return uri

    def reference(self, tag: str) -> str:
        return f"{self.repository_uri}:{tag}"

    def exists(self, tag: str) -> bool:
        ecr = self.clients("ecr")
        with boundary(ImageError, f"looking up image {self.stack.repository}:{tag} in ECR"):
            try:
                ecr.describe_images(repositoryName=self.stack.repository,
                                    imageIds=[{"imageTag": tag}])
            except Exception as exc:
                if error_code(exc) in ("ImageNotFoundException", "RepositoryNotFoundException"):
                    return False
                raise
        return True

    def credentials(self) -> dict:
        """Docker credentials for the registry, from ECR's authorization token (valid 12 hours)."""
        with boundary(ImageError, "getting an ECR authorization token"):
            data = self.clients("ecr").get_authorization_token()["authorizationData"][0]
        username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        return {"username": username, "password": password}

    def publish(self, local_image: str, tag: str) -> str:
        reference = self.reference(tag)
        repository = self.repository_uri
        engine = docker_engine.client()
        from docker.errors import APIError
        log.warning("pushing task image %s", reference)
        try:
            engine.images.get(local_image).tag(repository, tag)
            try:
                for chunk in engine.images.push(repository, tag=tag, auth_config=self.credentials(),
                                                stream=True, decode=True):
                    if "error" in chunk:
                        raise ImageError(f"pushing {reference} failed: {chunk['error']}")
            finally:
                if local_image != reference:
                    engine.images.remove(reference, noprune=True)
        except APIError as exc:
            raise ImageError(f"pushing {reference} failed: {exc.explanation or exc}") from exc
        return reference
