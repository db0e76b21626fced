"""A task definition checked against ECS's own `RegisterTaskDefinition` input model, offline.

botocore ships the model and the validator the AWS CLI runs before it sends a request: the same
judge as `aws ecs register-task-definition`, not a schema of ours.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["register_errors"]

OPERATION = "RegisterTaskDefinition"
MAX_ERRORS = 20
MAX_LINE = 300


def register_errors(document: dict[str, Any]) -> list[str]:
    """What botocore's validator says is wrong with `document` as that call's input ([]: valid)."""
    # Imported here: the rest of scan-root does not need botocore (an extra), and it is
    # untyped (no stubs are published for it).
    import botocore  # type: ignore[import-untyped]
    import botocore.loaders  # type: ignore[import-untyped]
    import botocore.model  # type: ignore[import-untyped]
    import botocore.validate  # type: ignore[import-untyped]

    # The model botocore itself ships, only: a session would also read ~/.aws/models and
    # $AWS_DATA_PATH, where anyone who can write there would rewrite the judge.
    shipped = os.path.join(os.path.dirname(botocore.__file__), "data")
    loader = botocore.loaders.Loader(
        extra_search_paths=[shipped], include_default_search_paths=False
    )
    model = botocore.model.ServiceModel(loader.load_service_model("ecs", "service-2"), "ecs")
    shape = model.operation_model(OPERATION).input_shape
    report = botocore.validate.ParamValidator().validate(document, shape)
    if not report.has_errors():
        return []
    lines = [line.strip() for line in report.generate_report().splitlines() if line.strip()]
    # A hostile document can hold thousands of errors; the first few say what is wrong.
    if len(lines) > MAX_ERRORS:
        lines = [*lines[:MAX_ERRORS], f"... and {len(lines) - MAX_ERRORS} more"]
    return [line[:MAX_LINE] for line in lines]
