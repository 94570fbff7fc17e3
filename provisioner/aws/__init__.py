"""Drivers for S3 APIs (a cluster's MinIO, AWS S3): :mod:`provisioner.aws.s3`."""
