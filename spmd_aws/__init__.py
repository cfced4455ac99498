"""spmd's AWS backend: tasks run as AWS Batch array jobs, job data in S3, images in ECR.

    Knot.map ──> S3Store (s3://bucket/jobs/<id>/...)        store.py
             ──> EcrRegistry (describe_images, docker push) registry.py
             ──> AwsBatchQueue (array jobs of ≤10,000)       queue.py
                   └─ provision.deployment ──> up() when the stack is missing,
                      broken or differs from the config                        provision.py
                      (compute environment + job queue: compute.py; IAM: permissions.py)
    in each container: python3 -m spmd_aws.task -- python3 -m spmd.task.worker       task.py

Selected with ``backend = "aws"`` in a profile; ``spmd aws up`` / ``down`` (cli.py, a command group the plugin registers) call
``spmd_aws.provision.up(settings)`` and ``down(settings)``. boto3 is imported only when
a client is first made (aws.py).
"""
