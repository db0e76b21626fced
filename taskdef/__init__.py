"""ECS task definitions rewritten to carry the defender (`scan-root embed`), checked by botocore."""
