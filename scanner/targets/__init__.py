"""What is scanned: a root directory, an image, a Fargate task."""
