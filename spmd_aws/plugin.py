"""Registers the AWS backend and the s3:// store. Imports nothing of boto3 until used."""
from spmd.hookspecs import hookimpl


@hookimpl
def spmd_register_backends(register):
    register("aws", "spmd_aws.backend:AwsBackend", install_hint="pip install 'spmd[aws]'",
             runtime_requirements=("boto3", "s3fs", "aiobotocore"),
             runtime_packages=("spmd", "spmd_aws"))


@hookimpl
def spmd_register_stores(register):
    register("s3", "spmd_aws.store:S3Store", install_hint="pip install 'spmd[aws]'")


@hookimpl
def spmd_register_commands(register):
    register("aws", "spmd_aws.cli:configure", help="provision or remove the AWS stack (spmd aws up/down)")
