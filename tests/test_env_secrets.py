"""Check 424: the (name, value, should_flag) table, the sources, and values kept out of output."""

from __future__ import annotations

import base64
import importlib
import json
import os
import pkgutil
import random
import re
import string
from pathlib import Path
from typing import Any

import pytest

import scanner
import scanner.checks
from scanner import cli, environment
from scanner.checks import BUILTIN_CHECKS
from scanner.checks.env_secrets import judge, judge_source, sensitive_word
from scanner.environment import EnvVar
from scanner.errors import UsageError

SHARED = Path(
    os.environ.get("SCANNER_SHARED", Path(__file__).resolve().parent.parent.parent / "shared")
)

# Fake but well-formed material, made here from a fixed seed: never a real credential.
_RNG = random.Random(424)
ALNUM = string.ascii_letters + string.digits


def _rand(count: int, alphabet: str = ALNUM) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(count))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _aws_secret() -> str:
    # Mixed case guaranteed: a real secret key is base64, not a single-case digest.
    return "Ab" + _rand(38, ALNUM + "/+")


def _pem() -> str:
    body = base64.b64encode(_RNG.randbytes(600)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join(["-----BEGIN PRIVATE KEY-----", *lines, "-----END PRIVATE KEY-----"])


def _jwt(header: dict[str, str]) -> str:
    payload = {"sub": _rand(12), "iat": "1700000000"}
    return ".".join(
        [
            _b64url(json.dumps(header).encode()),
            _b64url(json.dumps(payload).encode()),
            _b64url(_RNG.randbytes(32)),
        ]
    )


GITHUB = "ghp_" + _rand(36)
GITHUB_PAT = "github_pat_" + _rand(22) + "_" + _rand(59)
GITLAB = "glpat-" + _rand(20, ALNUM + "_-")
SLACK_BOT = "xoxb-" + _rand(11, string.digits) + "-" + _rand(12, string.digits) + "-" + _rand(24)
SLACK_USER = "xoxp-" + _rand(11, string.digits) + "-" + _rand(13, string.digits) + "-" + _rand(32)
SLACK_APP = "xapp-1-A" + _rand(10, string.ascii_uppercase + string.digits) + "-" + _rand(40)
STRIPE = "sk_live_" + _rand(24)
STRIPE_RESTRICTED = "rk_live_" + _rand(24)
AKIA = "AKIA" + _rand(16, string.ascii_uppercase + string.digits)
ASIA = "ASIA" + _rand(16, string.ascii_uppercase + string.digits)
AWS_SECRET = _aws_secret()
PEM = _pem()
JWT = _jwt({"alg": "HS256", "typ": "JWT"})
URL_PASSWORD = _rand(14)
DB_URL = f"postgres://app:{URL_PASSWORD}@db.internal:5432/app"

# (id, name, value, should_flag)
CASES = [
    # Sensitive names with literal values.
    ("password", "DB_PASSWORD", "Tr0ub4dor-prod", True),
    ("passwd", "SMTP_PASSWD", _rand(12), True),
    ("mysql-pwd", "MYSQL_PWD", _rand(12), True),
    ("pgpassword-inside-word", "PGPASSWORD", _rand(12), True),
    ("camel-case", "dbPassword", _rand(12), True),
    ("secret", "CLIENT_SECRET", _rand(24), True),
    ("secret-key-base", "SECRET_KEY_BASE", _rand(64), True),
    ("token", "AWS_SESSION_TOKEN", _rand(80), True),
    ("token-word-end", "GHTOKEN", _rand(30), True),
    ("api-key", "API_KEY", _rand(32), True),
    ("apikey-one-word", "SENDGRID_APIKEY", _rand(32), True),
    ("camel-api-key", "stripeApiKey", _rand(32), True),
    ("access-key", "MINIO_ACCESS_KEY", _rand(20), True),
    ("private-key", "JWT_PRIVATE_KEY", _rand(40), True),
    ("credentials", "DB_CREDENTIALS", "app:" + _rand(12), True),
    ("auth-last-word", "REDIS_AUTH", _rand(16), True),
    ("auth-header", "PROXY_AUTH_HEADER", "Bearer " + _rand(24), True),
    ("passphrase", "GPG_PASSPHRASE", _rand(16), True),
    ("six-digit-pin", "ADMIN_PASSWORD", "482913", True),
    ("docker-kept-quotes", "DB_PASSWORD", '"' + _rand(12) + '"', True),
    ("file-name-but-not-a-path", "DB_PASSWORD_FILE", _rand(12), True),
    # Known secret shapes, whatever the name.
    ("github-classic", "GH", GITHUB, True),
    ("github-oauth", "VALUE_1", "gho_" + _rand(36), True),
    ("github-user-to-server", "VALUE_2", "ghu_" + _rand(36), True),
    ("github-server-to-server", "VALUE_3", "ghs_" + _rand(36), True),
    ("github-refresh", "VALUE_4", "ghr_" + _rand(36), True),
    ("github-fine-grained", "VALUE_5", GITHUB_PAT, True),
    ("gitlab", "CI_THING", GITLAB, True),
    ("slack-bot", "SLACK", SLACK_BOT, True),
    ("slack-user", "SLACK_USER_VALUE", SLACK_USER, True),
    ("slack-app", "SLACK_APP_LEVEL", SLACK_APP, True),
    ("stripe-secret", "STRIPE", STRIPE, True),
    ("stripe-restricted", "STRIPE_RK", STRIPE_RESTRICTED, True),
    ("aws-access-key-id", "AWS_ACCESS_KEY_ID", AKIA, True),
    ("aws-temporary-key-id", "SOME_ID", ASIA, True),
    ("aws-secret-named", "AWS_SECRET_ACCESS_KEY", AWS_SECRET, True),
    ("pem-private-key", "TLS_MATERIAL", PEM, True),
    ("pem-escaped-newlines", "TLS_ONE_LINE", PEM.replace("\n", "\\n"), True),
    ("url-with-password", "DATABASE_URL", DB_URL, True),
    ("amqp-url-with-password", "BROKER", f"amqp://svc:{_rand(12)}@mq:5672/", True),
    ("jwt", "SESSION", JWT, True),
    ("jwt-bearer", "HEADER_VALUE", "Bearer " + _jwt({"alg": "RS256"}), True),
    ("token-inside-value", "X", "token=" + GITHUB, True),
    # Not secrets: the shell, paths, descriptions of secrets.
    ("shell-pwd", "PWD", "/app", False),
    ("shell-oldpwd", "OLDPWD", "/", False),
    ("tokenizer", "TOKENIZER_PATH", "/models/tokenizer.json", False),
    ("secret-file-path", "DB_PASSWORD_FILE", "/run/secrets/db_password", False),
    ("secret-dir-path", "PASSWORD_STORE_DIR", "./store", False),
    ("secret-name", "DB_SECRET_NAME", "prod/db/app", False),
    (
        "secret-arn",
        "DB_SECRET_ARN",
        "arn:aws:secretsmanager:us-east-1:012345678910:secret:db",
        False,
    ),
    ("access-key-id-qualifier", "KMS_ACCESS_KEY_ID", "alias-prod", False),
    ("token-ttl", "TOKEN_TTL", "3600", False),
    ("password-min-length", "PASSWORD_MIN_LENGTH", "12", False),
    ("token-url", "OAUTH_TOKEN_URL", "https://login.internal/oauth2/token", False),
    ("ssh-auth-sock", "SSH_AUTH_SOCK", "/tmp/ssh-abc/agent.12", False),
    ("auth-method", "POSTGRES_HOST_AUTH_METHOD", "trust", False),
    ("secretary", "SECRETARY", "Jane Doe", False),
    ("cache-key", "CACHE_KEY", "v2-" + _rand(12), False),
    ("home", "HOME", "/root", False),
    # Empty values, placeholders, references.
    ("empty", "DB_PASSWORD", "", False),
    ("blank", "DB_PASSWORD", "   ", False),
    ("changeme", "DB_PASSWORD", "changeme", False),
    ("changeme-quoted", "DB_PASSWORD", '"changeme"', False),
    ("angle-brackets", "API_KEY", "<your-api-key>", False),
    ("dollar-braces", "API_TOKEN", "${API_TOKEN}", False),
    ("dollar-name", "API_TOKEN", "$API_TOKEN", False),
    ("mustache", "API_TOKEN", "{{ api_token }}", False),
    ("xxx", "SECRET", "xxx", False),
    ("stars", "PASSWORD", "********", False),
    ("example", "API_KEY", "example", False),
    ("example-inside", "API_KEY", "my-example-key", False),
    ("dummy", "DB_PASSWORD", "dummy", False),
    ("placeholder", "TOKEN", "placeholder", False),
    ("none", "PASSWORD", "none", False),
    ("null", "SECRET", "null", False),
    ("true", "BASIC_AUTH", "true", False),
    ("false", "REQUIRE_PASSWORD", "false", False),
    ("yes", "MYSQL_ALLOW_EMPTY_PASSWORD", "yes", False),
    ("short-number", "PASSWORD", "1234", False),
    ("your-here", "GITHUB_TOKEN", "your-token-here", False),
    ("ssm-reference", "DB_PASSWORD", "arn:aws:ssm:us-east-1:012345678910:parameter/db", False),
    ("aws-documented-key-id", "AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE", False),
    (
        "aws-documented-secret",
        "AWS_SECRET_ACCESS_KEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        False,
    ),
    ("github-template-token", "GH", "ghp_" + "x" * 36, False),
    ("pem-header-only", "DOC", "-----BEGIN RSA PRIVATE KEY-----", False),
    ("public-key-pem", "TLS_CERT", PEM.replace("PRIVATE KEY", "PUBLIC KEY"), False),
    ("jwt-lookalike", "HOSTNAME", "abcdefghijk.lmnopqrstuv.wxyzabcdefg", False),
    ("url-without-password", "DATABASE_URL", "postgres://app@db.internal:5432/app", False),
    ("url-password-variable", "DATABASE_URL", "postgres://app:${DB_PASS}@db/app", False),
    ("git-commit-40-hex", "GIT_COMMIT", "3cd6631" + "a" * 9 + "0123456789abcdef0123456b", False),
    # Variables ECS injects.
    (
        "ecs-creds-relative",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "/v2/credentials/" + _rand(8),
        False,
    ),
    (
        "ecs-creds-full",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "http://169.254.170.23/v1/credentials",
        False,
    ),
    ("ecs-metadata", "ECS_CONTAINER_METADATA_URI", "http://169.254.170.2/v3/" + _rand(10), False),
    (
        "ecs-metadata-v4",
        "ECS_CONTAINER_METADATA_URI_V4",
        "http://169.254.170.2/v4/" + _rand(10),
        False,
    ),
    ("ecs-execution-env", "AWS_EXECUTION_ENV", "AWS_ECS_FARGATE", False),
    ("ecs-region", "AWS_DEFAULT_REGION", "us-east-1", False),
]


@pytest.mark.parametrize(
    ("name", "value", "should_flag"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_table(name: str, value: str, should_flag: bool) -> None:
    verdict = judge(name, value)
    assert (verdict is not None) is should_flag, verdict
    if verdict is not None:
        assert verdict.reason and verdict.hint


def test_table_is_large_and_balanced() -> None:
    assert len(CASES) >= 40
    assert len({case[0] for case in CASES}) == len(CASES)
    assert sum(case[3] for case in CASES) >= 20 and sum(not case[3] for case in CASES) >= 20


def test_shapes_are_high_and_names_medium() -> None:
    github = judge("X", GITHUB)
    assert github is not None and github.known_shape
    assert github.reason == "value looks like a GitHub token" and github.hint == "ghp_…(40 chars)"
    aws = judge("AWS_ACCESS_KEY_ID", AKIA)
    assert aws is not None and aws.known_shape and aws.hint == "AKIA…(20 chars)"
    # A public prefix of 8+ characters stays out of the hint all the same.
    stripe = judge("X", STRIPE)
    assert stripe is not None and stripe.hint == f"{len(STRIPE)} chars"
    named = judge("DB_PASSWORD", "Tr0ub4dor-prod")
    assert named is not None and not named.known_shape
    assert (named.reason, named.hint) == ("name contains PASSWORD", "14 chars")


def test_word_boundaries() -> None:
    assert sensitive_word("TOKENIZER_PATH") is None
    assert sensitive_word("PASSPORT_NUMBER") is None
    assert sensitive_word("AUTHOR") is None
    assert sensitive_word("OLDPWD") is None
    assert sensitive_word("MYSQL_PWD") == "PWD"
    assert sensitive_word("apiKey") == "API_KEY"
    assert sensitive_word("NODE_AUTH_TOKEN") == "TOKEN"


def test_aws_secret_key_recognised_by_its_pair() -> None:
    alone = [EnvVar("BACKUP_K2", AWS_SECRET, "s")]
    assert judge_source(alone) == []
    paired = [EnvVar("BACKUP_K1", AKIA, "s"), EnvVar("BACKUP_K2", AWS_SECRET, "s")]
    paired.append(EnvVar("GIT_COMMIT", "0123456789abcdef" * 2 + "01234567", "s"))
    flagged = {variable.name: verdict for variable, verdict in judge_source(paired)}
    assert "GIT_COMMIT" not in flagged  # single-case hex (a digest), not base64
    assert flagged["BACKUP_K2"].reason == "value looks like an AWS secret access key"
    assert flagged["BACKUP_K1"].reason == "value looks like an AWS access key id"


def test_envvar_repr_hides_the_value() -> None:
    variable = EnvVar("DB_PASSWORD", "Tr0ub4dor-prod", "env-file:/x")
    assert "Tr0ub4dor" not in repr(variable) and "Tr0ub4dor" not in str(variable)
    assert "DB_PASSWORD" in repr(variable)


# --- sources -------------------------------------------------------------------------------------


def test_reference_task_definition_has_no_secrets() -> None:
    path = SHARED / "examples" / "fargate-task-definition.json"
    if not path.is_file():
        pytest.skip(f"../shared is absent ({path} not found)")
    task = environment.read_task_definition(str(path))
    assert task.family == "fargate-vulnerability-compliance-task"
    assert task.containers == ("Fargate-vul-comp-test",)
    assert task.variables == () and task.references == () and task.problems == ()
    assert environment.from_task_definition(str(path)) == ([], [])


def _task_definition(tmp_path: Path, *, wrapped: bool) -> Path:
    body: dict[str, Any] = {
        "family": "web",
        "containerDefinitions": [
            {
                "name": "app",
                "image": "ubuntu:18.04",
                "environment": [
                    {"name": "DB_PASSWORD", "value": "Tr0ub4dor-prod"},
                    {"name": "GITHUB_TOKEN", "value": GITHUB},
                    {"name": "LOG_LEVEL", "value": "info"},
                    {"name": "EMPTY_SECRET"},
                ],
                "secrets": [
                    {
                        "name": "API_KEY",
                        "valueFrom": "arn:aws:secretsmanager:us-east-1:012345678910:secret:api",
                    }
                ],
            },
            {
                "name": "sidecar",
                "environment": [{"name": "PORT", "value": "8080"}],
                "environmentFiles": [{"value": "arn:aws:s3:::bucket/app.env", "type": "s3"}],
            },
        ],
    }
    if wrapped:
        body = {"taskDefinition": {**body, "revision": 7}, "tags": []}
    path = tmp_path / ("describe.json" if wrapped else "register.json")
    path.write_text(json.dumps(body))
    return path


@pytest.mark.parametrize("wrapped", [False, True], ids=["register", "describe"])
def test_task_definition_with_planted_secrets(tmp_path: Path, wrapped: bool) -> None:
    task = environment.read_task_definition(str(_task_definition(tmp_path, wrapped=wrapped)))
    assert task.family == "web" and task.containers == ("app", "sidecar")
    app = f"task-definition:web{':7' if wrapped else ''}/container:app"
    assert [(v.name, v.source) for v in task.variables[:2]] == [
        ("DB_PASSWORD", app),
        ("GITHUB_TOKEN", app),
    ]
    # valueFrom is a reference, the right practice: never read as a variable.
    assert [r.name for r in task.references] == ["API_KEY"]
    assert "API_KEY" not in {v.name for v in task.variables}
    assert len(task.problems) == 1 and "environment file" in task.problems[0]
    flagged = judge_source([v for v in task.variables if v.source == app])
    assert [v.name for v, _ in flagged] == ["DB_PASSWORD", "GITHUB_TOKEN"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"family": "x", "containerDefinitions": [', "not valid JSON"),
        ('{"family": "x"}', "no containerDefinitions"),
        ('{"taskDefinition": {"family": "x"}}', "no containerDefinitions"),
        ('["not", "an", "object"]', "top level must be a JSON object"),
        ('{"containerDefinitions": {}}', "containerDefinitions must be a list"),
        ('{"containerDefinitions": []}', "containerDefinitions is empty"),
        (
            '{"containerDefinitions": [{"name": "a", "environment": [{"value": "Zq8sLk3Pw1"}]}]}',
            "environment[0].name is missing",
        ),
        (
            '{"containerDefinitions": [{"name": "a", "environment": [{"name": "P", "value": 5}]}]}',
            "environment[0].value is not a string",
        ),
    ],
    ids=[
        "truncated",
        "missing",
        "wrapped-missing",
        "array",
        "not-list",
        "empty",
        "no-name",
        "number",
    ],
)
def test_bad_task_definition_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "task.json"
    path.write_text(text)
    with pytest.raises(UsageError, match=re.escape(message)):
        environment.read_task_definition(str(path))
    root = tmp_path / "root"
    root.mkdir()
    assert cli.main([str(root), "--quiet", "--task-definition", str(path)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert str(path) in err and message in err
    assert "Zq8sLk3Pw1" not in err  # the error names the field, never its value


def test_missing_sources_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for option in ("--task-definition", "--env-file"):
        argv = [str(tmp_path), option, str(tmp_path / "absent")]
        assert cli.main(argv) == cli.EXIT_USAGE
        assert "absent" in capsys.readouterr().err


def test_env_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_bytes(
        b"\xef\xbb\xbfFIRST=1\n"
        b"# a comment\n"
        b"\n"
        b"   INDENTED=kept \n"
        b'QUOTED="in quotes"\n'
        b"export EXPORTED=yes\n"
        b"WINDOWS=crlf\r\n"
        b"EQUALS=a=b=c\n"
        b"EMPTY=\n"
        b"FROM_CLIENT\n"
    )
    variables, problems = environment.from_env_file(str(path))
    got = {v.name: v.value for v in variables}
    assert got == {
        "FIRST": "1",
        "INDENTED": "kept ",  # trailing whitespace is part of the value, as in docker
        "QUOTED": '"in quotes"',  # docker keeps quotes
        "EXPORTED": "yes",
        "WINDOWS": "crlf",
        "EQUALS": "a=b=c",
        "EMPTY": "",
    }
    assert {v.source for v in variables} == {f"env-file:{path}"}
    assert len(problems) == 1 and "line 10" in problems[0]
    assert "FROM_CLIENT" not in problems[0]  # a bare line is named by its number only


# Lines without `=` that are not names at all: what people paste into env files by mistake.
PASTED = (
    "ghp_" + "Zq7Rk2Lm9Xw4Tb8Nc3Vd6Hj1Py5Gs0Fe2Aa",
    "postgres://app:Pr0d-Passw0rd@db.internal:5432/app",
    "DB_PASSWORD:Tr0ub4dor-prod",
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",
)


@pytest.mark.parametrize("output_format", ["json", "table", "sarif"])
def test_env_file_lines_without_equals_never_reach_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], output_format: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    env_file = tmp_path / "pasted.env"
    env_file.write_text("OK=1\n" + "\n".join(PASTED) + "\n")
    code = cli.main(
        [
            str(root),
            "--checks",
            "424",
            "--env-file",
            str(env_file),
            "--no-process-env",
            "--format",
            output_format,
        ]
    )
    out, err = capsys.readouterr()
    assert code == 3  # not verified: those values would come from the docker client
    for line in PASTED:
        for part in (line, line[8:40]):
            assert part not in out and part not in err, (output_format, part)
    for number in range(2, 2 + len(PASTED)):
        assert f"line {number}" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"=Zq8sLk3Pw1\n", "line 1: no variable name"),
        (b"OK=1\nA B=Zq8sLk3Pw1\n", "line 2: variable name contains whitespace"),
        (b"P=\xff\xfeZq8sLk3Pw1\n", "line 1: invalid UTF-8"),
    ],
    ids=["no-name", "space-in-name", "not-utf8"],
)
def test_env_file_errors_never_echo_the_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.env"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=re.escape(message)) as caught:
        environment.from_env_file(str(path))
    assert "Zq8sLk3Pw1" not in str(caught.value)


def test_process_environ(tmp_path: Path) -> None:
    environ = tmp_path / "environ"
    environ.write_bytes(
        b"PATH=/usr/bin\0DB_PASSWORD=Tr0ub4dor-prod\0ODD=\xff\xfe\0NAME\xe9=x\0\0NOEQUALS\0"
    )
    variables, problems = environment.from_process(str(environ))
    assert problems == []
    got = {v.name: v.value for v in variables}
    assert got["DB_PASSWORD"] == "Tr0ub4dor-prod"
    assert got["ODD"].encode("utf-8", "surrogateescape") == b"\xff\xfe"
    assert "NAME\\xe9" in got and "NOEQUALS" not in got
    assert {v.source for v in variables} == {"process:pid1"}


def test_process_environ_unreadable_is_a_problem(tmp_path: Path) -> None:
    for path in (tmp_path, tmp_path / "absent"):  # EISDIR, ENOENT (EACCES without ptrace)
        variables, problems = environment.from_process(str(path))
        assert variables == [] and len(problems) == 1 and "could not read" in problems[0]


def test_process_env_only_for_the_live_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = tmp_path / "environ"
    environ.write_bytes(b"GITHUB_TOKEN=" + GITHUB.encode() + b"\0")
    monkeypatch.setattr(environment, "PROC_ENVIRON", str(environ))
    root = tmp_path / "root"
    root.mkdir()
    assert scanner.scan_root(root, checks=["424"]).findings == []
    live = scanner.scan_root("/", checks=["424"])
    assert [f.extra["source"] for f in live.findings] == ["process:pid1"]
    assert scanner.scan_root("/", checks=["424"], process_env=False).findings == []


def test_unreadable_process_env_makes_the_scan_incomplete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(environment, "PROC_ENVIRON", str(tmp_path / "absent"))
    report = scanner.scan_root("/", checks=["424"])
    assert report.findings == [] and not report.complete
    assert [p.kind for p in report.problems] == ["could-not-verify"]


# --- acceptance: values never appear in any output -----------------------------------------------

PLANTED = {
    "DB_PASSWORD": "Tr0ub4dor-prod",
    "GITHUB_TOKEN": GITHUB,
    "GITLAB_TOKEN": GITLAB,
    "SLACK_BOT_TOKEN": SLACK_BOT,
    "STRIPE_KEY": STRIPE,
    "STRIPE_RESTRICTED": STRIPE_RESTRICTED,
    "GH_PAT": GITHUB_PAT,
    "AWS_ACCESS_KEY_ID": AKIA,
    "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    "DATABASE_URL": DB_URL,
    "SESSION_JWT": JWT,
    "TLS_KEY": PEM.replace("\n", "\\n"),
}


def _planted_sources(tmp_path: Path) -> tuple[Path, Path, Path]:
    task = tmp_path / "task.json"
    environ = [{"name": name, "value": value} for name, value in PLANTED.items()]
    task.write_text(
        json.dumps(
            {"family": "leaky", "containerDefinitions": [{"name": "app", "environment": environ}]}
        )
    )
    env_file = tmp_path / "app.env"
    env_file.write_text("".join(f'{name}="{value}"\n' for name, value in PLANTED.items()))
    proc = tmp_path / "environ"
    proc.write_bytes(b"".join(f"{n}={v}\0".encode() for n, v in PLANTED.items()))
    return task, env_file, proc


def _assert_no_value(text: str) -> None:
    for name, value in PLANTED.items():
        assert value not in text, name
        for start in range(len(value) - 7):
            assert value[start : start + 8] not in text, (name, start)


@pytest.mark.parametrize("fmt", ["json", "table"])
def test_values_never_appear_in_cli_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    task, env_file, _proc = _planted_sources(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    argv = [str(root), "--format", fmt, "--task-definition", str(task), "--env-file", str(env_file)]
    assert cli.main(argv) == cli.EXIT_FINDINGS
    captured = capsys.readouterr()
    _assert_no_value(captured.out + captured.err)
    assert "DB_PASSWORD" in captured.out and "task-definition:leaky/container:app" in captured.out
    if fmt == "json":
        findings = [f for f in json.loads(captured.out)["findings"] if f["check"] == "424"]
        assert [f["source"] for f in findings] == [
            "task-definition:leaky/container:app",
            f"env-file:{env_file}",
        ]
        for finding in findings:
            assert finding["severity"] == "high" and finding["kind"] == "secret-in-environment"
            assert [v["name"] for v in finding["variables"]] == list(PLANTED)


def test_values_never_appear_in_reports_or_reprs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task, env_file, proc = _planted_sources(tmp_path)
    monkeypatch.setattr(environment, "PROC_ENVIRON", str(proc))
    report = scanner.scan_root(
        "/", checks=["424"], task_definitions=[str(task)], env_files=[str(env_file)]
    )
    assert len(report.findings) == 3
    variables = environment.from_task_definition(str(task))[0]
    texts = [
        report.to_json(),
        report.to_json(indent=None),
        repr(report),
        str(report.findings),
        str(report.problems),
        repr(variables),
        repr(judge_source(variables)),
    ]
    for text in texts:
        _assert_no_value(text)


def test_every_check_module_is_registered() -> None:
    modules = {
        info.name
        for info in pkgutil.iter_modules(scanner.checks.__path__)
        # custom.py is no built-in: its instances come from a policy's custom checks.
        if info.name not in ("base", "custom")
    }
    registered = {check.__module__.rsplit(".", 1)[1] for check in BUILTIN_CHECKS}
    assert modules <= registered, sorted(modules - registered)
    assert [check.id for check in BUILTIN_CHECKS][:2] == ["448", "424"]
    for name in modules:
        assert importlib.import_module(f"scanner.checks.{name}").__doc__


def test_docker_env_file_keeps_quotes_as_documented() -> None:
    # The check must see through them: `"changeme"` is a placeholder, `"<secret>"` a secret.
    assert judge("DB_PASSWORD", '"changeme"') is None
    assert judge("GH", f'"{GITHUB}"') is not None


PASTED_WITH_EQUALS = (
    "https://admin:Hunter2Secret@db.example.org/app?token=abcdef123456",
    "postgres://app:Zq8sLk3Pw1xx@db:5432/app?password=Zq8sLk3Pw1xx",
    # a name that is itself a token's shape (a pasted line with a `=` further on)
    "ghp_" + "Zq8sLk3Pw1" * 4 + "=secretvalue9",
)


@pytest.mark.parametrize("output_format", ["json", "table", "sarif"])
def test_env_file_names_that_are_pasted_text_never_reach_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], output_format: str
) -> None:
    # Docker takes everything before the first `=` as the name, so a pasted URL with a query
    # string becomes a "variable" whose name holds the password, flagged by its TOKEN/SECRET.
    root = tmp_path / "root"
    root.mkdir()
    env_file = tmp_path / "pasted.env"
    env_file.write_text("\n".join(PASTED_WITH_EQUALS) + "\n")
    code = cli.main(
        [
            str(root),
            "--checks",
            "424",
            "--env-file",
            str(env_file),
            "--no-process-env",
            "--format",
            output_format,
            "--quiet",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1  # still flagged: a secret by name or shape
    for secret in ("Hunter2Secret", "Zq8sLk3Pw1"):
        assert secret not in out and secret not in err, (output_format, secret)
    assert "a name not shown" in out
