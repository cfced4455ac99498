"""EcrRegistry: task images in one ECR repository of the stack, tagged by content hash.

    exists(tag)   ECR DescribeImages for the tag (no image pulled, nothing built)
    publish       repository created if missing (tagged, scan on push); ``up`` gives it a
                  lifecycle policy keeping the newest KEEP_IMAGES task images
                  ──> ECR GetAuthorizationToken ──> docker tag + push (Docker SDK)
                  ──> the remote name is untagged here again (the engine keeps spmd-task:<tag>)

``registry`` in the config replaces the address docker pushes to and Batch pulls from.
An ECR address (the ``proxyEndpoint`` GetAuthorizationToken names,
``<account>.dkr.ecr.<region>.amazonaws.com``, or an ECR VPC endpoint's name in that region)
is still ECR: the ECR API answers and its token authenticates the push. Any other
registry (a private mirror, a test registry) is asked itself, through the engine's
distribution endpoint (the manifest, no image pulled), and gets the engine's own
credentials for it (``docker login``); no ECR call is made and the ECR token never
leaves for it.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import time
from functools import cached_property
from urllib.parse import urlparse

from spmd import docker_engine
from spmd.errors import ImageError
from spmd.image_registry import ImageRegistry

from .aws import Clients, boundary, error_code
from .stack import Stack

log = logging.getLogger("spmd")

#: task images the repository keeps (its lifecycle policy expires older ones)
KEEP_IMAGES = 10


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


def lifecycle_policy(keep: int = KEEP_IMAGES) -> dict:
    """The repository's lifecycle policy: untagged images go after a day, and only the
    newest ``keep`` task images stay (each a content-hash tag)."""
    return {"rules": [
        {"rulePriority": 1, "description": "untagged layers of replaced pushes",
         "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                       "countUnit": "days", "countNumber": 1},
         "action": {"type": "expire"}},
        {"rulePriority": 2, "description": f"keep the newest {keep} task images",
         "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep},
         "action": {"type": "expire"}}]}


def ensure_lifecycle_policy(clients: Clients, stack: Stack) -> str:
    """'found' when the stack's repository has its lifecycle policy, else 'set' once it does
    (a repository the stack does not own is left as it is)."""
    ecr = clients("ecr")
    wanted = lifecycle_policy()
    repo = ecr.describe_repositories(repositoryNames=[stack.repository])["repositories"][0]
    if not stack.owns(ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]):
        return "found (not tagged by this stack; left as it is)"
    try:
        current = json.loads(ecr.get_lifecycle_policy(
            repositoryName=stack.repository)["lifecyclePolicyText"])
    except Exception as exc:
        if error_code(exc) != "LifecyclePolicyNotFoundException":
            raise
        current = None
    if current == wanted:
        return "found"
    ecr.put_lifecycle_policy(repositoryName=stack.repository,
                             lifecyclePolicyText=json.dumps(wanted))
    return "set"


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


def looks_like_ecr(address: str) -> bool:
    """Whether an address has the shape of ECR's (decides only whether ECR is asked at all)."""
    host = address.split("/", 1)[0].lower()
    return ".dkr.ecr." in host


def is_ecr(address: str, proxy_endpoint: str) -> bool:
    """Whether a registry address is the ECR registry whose token GetAuthorizationToken gave:
    its ``proxyEndpoint`` host exactly, or an ECR interface VPC endpoint of that region
    (``vpce-<id>.dkr.ecr.<region>.vpce.amazonaws.com``). Whole names, never a substring:
    ``123.dkr.ecr.attacker.example`` is not ECR and never gets the account's token."""
    host = address.split("/", 1)[0].lower()
    proxy = (urlparse(proxy_endpoint).hostname or "").lower()
    if not proxy:
        return False
    if host == proxy:
        return True
    found = re.fullmatch(r"\d{12}\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?", proxy)
    if not found:
        return False
    region = re.escape(found.group(1))
    return re.fullmatch(rf"vpce-[0-9a-z-]+\.dkr\.ecr\.{region}\.vpce\.amazonaws\.com", host) \
        is not None


class EcrRegistry(ImageRegistry):
    """Images live in the stack's ECR repository (or at the configured registry address)."""

    def __init__(self, clients: Clients, stack: Stack, *, address: str | None = None):
        self.clients = clients
        self.stack = stack
        self.address = address.rstrip("/") if address else None

    @cached_property
    def ecr(self) -> bool:
        """Whether images go to ECR (then ECR's API and token are used, else never): no
        address, or one that is the account's ECR endpoint (asked of ECR only when the
        address looks like ECR's)."""
        if self.address is None:
            return True
        if not looks_like_ecr(self.address):
            return False
        proxy = self._authorization()["proxyEndpoint"]
        if is_ecr(self.address, proxy):
            return True
        log.warning("registry %s is not this account's ECR endpoint (%s): it gets the engine's "
                    "own credentials (docker login), never the ECR token", self.address, proxy)
        return False

    @cached_property
    def repository_uri(self) -> str:
        if not self.ecr:
            return f"{self.address}/{self.stack.repository}"
        uri, action = ensure_repository(self.clients, self.stack)
        if action == "created":
            log.info("created ECR repository %s", uri)
        if self.address:
            return f"{self.address}/{self.stack.repository}"
        return uri

    def reference(self, tag: str) -> str:
        return f"{self.repository_uri}:{tag}"

    def exists(self, tag: str) -> bool:
        if not self.ecr:
            return self._in_registry(tag)
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

    def _in_registry(self, tag: str) -> bool:
        """Whether the configured (non-ECR) registry has the tag: the engine fetches its
        manifest with the engine's credentials for that registry."""
        from docker.errors import APIError, NotFound
        reference = self.reference(tag)
        try:
            docker_engine.client().api.inspect_distribution(reference)
        except NotFound:
            return False
        except APIError as exc:
            raise ImageError(f"asking registry {self.address} for {reference} failed: "
                             f"{exc.explanation or exc}; check the address and `docker login "
                             f"{self.address}`") from exc
        return True

    def credentials(self) -> dict | None:
        """Credentials for the push: ECR's, only when images go to ECR; None lets the engine
        use its own (``docker login``) for another registry."""
        if not self.ecr:
            return None
        return self._ecr_credentials()

    def _authorization(self) -> dict:
        """GetAuthorizationToken's authorizationData: the token (valid 12 hours) and the
        proxyEndpoint it is for; asked again when less than 10 minutes are left."""
        data = self.__dict__.get("_token")
        expires = data and data.get("expiresAt")
        if data is None or expires and expires.timestamp() - time.time() < 600:
            with boundary(ImageError, "getting an ECR authorization token"):
                data = self.clients("ecr").get_authorization_token()["authorizationData"][0]
            self.__dict__["_token"] = data
        return data

    def _ecr_credentials(self) -> dict:
        """Docker credentials for the registry, from ECR's authorization token (valid 12 hours)."""
        data = self._authorization()
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
