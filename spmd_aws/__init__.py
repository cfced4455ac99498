"""spmd's AWS backend (AWS Batch, ECR, S3). Not built yet: see the AWS backend issue."""
