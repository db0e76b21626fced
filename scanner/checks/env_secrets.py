"""Check 424: sensitive information in environment variables, by name or by a secret's shape.

Sources: each `--task-definition` (the literal `containerDefinitions[].environment`), each
`--env-file`, and — only when the scanned root is the live `/`, unless `--no-process-env` —
the environment PID 1 started with. One finding per source, naming the flagged variables.

A variable is flagged when, after docker's kept quotes and surrounding blanks are set aside:
  * its value has the shape of a known secret (HIGH): an AWS access key id (AKIA/ASIA + 16),
    an AWS secret access key (40 mixed-case base64 characters, when an access key id is set in
    the same source or the name says AWS + SECRET), a GitHub token (ghp_ gho_ ghu_ ghs_ ghr_
    github_pat_), a GitLab token (glpat-), a Slack token (xoxb- xoxp- xoxa- xoxr- xoxs- xapp-),
    a Stripe live key (sk_live_ rk_live_), a PEM private key, a URL with a password
    (scheme://user:pass@host) or a JWT (three base64url parts, the first a JSON header with
    "alg"); or
  * its name holds a sensitive word and its value is a non-empty literal (MEDIUM). Names are
    split into words at `_`, `-`, `.` and camelCase. PASSWORD, PASSWD, PASSPHRASE, SECRET,
    CREDENTIAL match inside a word (PGPASSWORD, DBSECRET); TOKEN at a word's end (GHTOKEN, not
    TOKENIZER); PASS, PWD, CREDS only as whole words (MYSQL_PWD, but the shell's PWD and OLDPWD
    are never flagged); API KEY, ACCESS KEY, PRIVATE KEY, SECRET KEY, SIGNING KEY, ENCRYPTION
    KEY, MASTER KEY as adjacent words or one (APIKEY); AUTH only last or before HEADER, STRING,
    KEY, … (BASIC_AUTH, not SSH_AUTH_SOCK or POSTGRES_HOST_AUTH_METHOD). KEY alone is not a
    sensitive word (CACHE_KEY, S3_KEY); real keys are caught by their shape.
Not flagged: empty values; `secrets`/`valueFrom` references (never read as variables); names
ending in a word that describes the secret rather than holding it (…_FILE, _PATH, _DIR with a
path value; …_NAME, _ARN, _ID, _URL, _HOST, _TTL, _ENABLED, …); obvious placeholders
(changeme, <...>, ${...}, $VAR, {{...}}, xxx, ***, a single repeated character, anything with
"example" — which covers AWS's documented AKIAIOSFODNN7EXAMPLE —, dummy, placeholder, none, null,
true/false, yes/no, numbers of up to 5 digits, your-…, …-here); Secrets Manager / SSM / KMS ARNs;
and the name rule for the variables ECS injects (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, …):
their values are still matched against the secret shapes.
Why: a literal secret in an environment is readable by anyone who can describe the task, read
/proc/1/environ or the image config; ECS `secrets` fetches it from Secrets Manager/SSM instead.
A finding carries names, reasons and a redacted hint (a length, and at most a public prefix of
fewer than 8 characters such as "ghp_" or "AKIA"): never the value or any part of it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .. import environment
from ..environment import EnvVar
from ..report import Finding, FindingKind, Problem, ProblemKind, Severity
from .base import ScanContext

__all__ = ["EnvSecretsCheck", "Verdict", "judge", "judge_source", "shown_name"]

ID = "424"
TITLE = "Sensitive information in environment variables"
# Its most severe finding: a SARIF rule's default level must not depend on one run's findings.
WORST = Severity.HIGH
KIND = FindingKind.SECRET_IN_ENVIRONMENT

# Set by ECS / the Fargate agent, not by the task's author.
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-metadata-endpoint-v4.html
ECS_INJECTED = frozenset(
    {
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_REGION",
        "ECS_AGENT_URI",
        "ECS_CONTAINER_METADATA_URI",
        "ECS_CONTAINER_METADATA_URI_V4",
    }
)
_SHELL_NAMES = frozenset({"PWD", "OLDPWD"})  # the shell's working directories

_INSIDE_WORD = ("PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "CREDENTIAL")
_NOT_SECRET_WORDS = frozenset({"SECRETARY", "SECRETARIES"})
_WHOLE_WORD = frozenset({"PASS", "PWD", "CREDS", "APIKEY", "ACCESSKEY", "PRIVATEKEY", "SECRETKEY"})
_KEY_QUALIFIERS = frozenset(
    {"API", "ACCESS", "PRIVATE", "SECRET", "SIGNING", "ENCRYPTION", "MASTER"}
)
_AUTH_FOLLOWERS = frozenset({"HEADER", "STRING", "VALUE", "INFO", "DATA", "KEY", "CODE"})
# A last word that makes the name describe the secret instead of holding it.
_DESCRIBES = frozenset(
    {
        "NAME", "NAMES", "ARN", "ID", "IDS", "USER", "USERNAME", "LENGTH", "LEN", "MIN", "MAX",
        "TTL", "TIMEOUT", "EXPIRY", "EXPIRES", "EXPIRATION", "LIFETIME", "AGE", "ENABLED",
        "DISABLED", "ENABLE", "DISABLE", "REQUIRED", "MODE", "TYPE", "METHOD", "PROVIDER",
        "REGION", "VERSION", "COUNT", "SIZE", "POLICY", "ALGORITHM", "ALG", "HOST", "PORT",
        "URL", "URI", "ENDPOINT", "ISSUER", "AUDIENCE", "SCOPE", "SCOPES", "REALM",
    }
)  # fmt: skip
_NAMES_A_PATH = frozenset({"FILE", "PATH", "DIR", "LOCATION"})

_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

_PLACEHOLDER_WORDS = frozenset(
    {
        "changeme", "changeit", "replaceme", "dummy", "placeholder", "none", "null", "nil",
        "undefined", "true", "false", "yes", "no", "on", "off", "enabled", "disabled", "todo",
        "tbd", "tba", "fixme", "redacted", "unset", "empty", "n/a", "na",
    }
)  # fmt: skip
_PLACEHOLDER_SHAPES = re.compile(
    r"<[^<>]*>|\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\{\{.*\}\}|\$\([^)]*\)|%[A-Za-z_]+%"
    r"|[0-9]{1,5}|your[-_ .].*|.*[-_ ]here|change[-_ ]?me.*|replace[-_ ]?me.*",
    re.IGNORECASE | re.DOTALL,
)
_REFERENCE = re.compile(r"arn:aws[a-z-]*:(secretsmanager|ssm|kms):", re.IGNORECASE)
_PATH_VALUE = re.compile(r"(/|\./|\.\./|~/|file://|[A-Za-z]:\\)")


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a variable is flagged, with a hint that never holds a part of the value."""

    reason: str
    hint: str
    known_shape: bool  # a known secret's shape (HIGH) rather than a sensitive name (MEDIUM)


@dataclass(frozen=True, slots=True)
class _Shape:
    pattern: re.Pattern[str]
    what: str
    prefix_groups: bool  # group 1 is the token's public prefix (shown in the hint if short)
    valid: Callable[[str], bool] = lambda _token: True


def _jwt_header_ok(token: str) -> bool:
    header = token.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


def _pem_body_ok(token: str) -> bool:
    # A header alone (documentation, a template) is not a key: want a base64 body after it.
    body = token.split("-----", 2)[-1]
    return len(re.findall(r"[A-Za-z0-9+/=]", body)) >= 64


# Prefixes and lengths: GitHub docs "About authentication to GitHub" (token formats),
# GitLab "Personal access tokens" (glpat-), Slack "Token types", Stripe "API keys",
# AWS IAM "Understanding unique ID prefixes" (AKIA long-term, ASIA temporary).
_AWS_KEY_ID = re.compile(r"(?<![A-Z0-9])(AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")
_SHAPES = (
    _Shape(_AWS_KEY_ID, "an AWS access key id", True),
    _Shape(
        re.compile(r"(?<![A-Za-z0-9])(gh[pousr]_)[A-Za-z0-9]{36,255}(?![A-Za-z0-9])"),
        "a GitHub token",
        True,
    ),
    _Shape(
        re.compile(r"(?<![A-Za-z0-9])(github_pat_)[A-Za-z0-9_]{82}(?![A-Za-z0-9_])"),
        "a GitHub fine-grained token",
        True,
    ),
    _Shape(re.compile(r"(?<![A-Za-z0-9])(glpat-)[A-Za-z0-9_.-]{20,}"), "a GitLab token", True),
    _Shape(
        re.compile(r"(?<![A-Za-z0-9])(xox[abposr]-|xapp-)[A-Za-z0-9-]{10,}"), "a Slack token", True
    ),
    _Shape(re.compile(r"(?<![A-Za-z0-9])([sr]k_live_)[A-Za-z0-9]{20,}"), "a Stripe live key", True),
    _Shape(
        re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*", re.DOTALL),
        "a PEM private key",
        False,
        _pem_body_ok,
    ),
    _Shape(
        re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
        "a JWT",
        False,
        _jwt_header_ok,
    ),
)
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*:([^\s/@?#]+)@[^\s/@]")
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+]{40}")
# What a report may print as a variable's name. Docker's env files take any text before the
# first `=` as the name: a pasted `https://user:pw@host/?token=x` becomes the "name"
# `https://user:pw@host/?token`, which must not reach a report either.
_SHOWN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")


def _words(name: str) -> list[str]:
    return [w.upper() for part in _WORD_SPLIT.split(name) for w in _CAMEL.findall(part)]


def sensitive_word(name: str) -> str | None:
    """The sensitive word `name` holds (see the module docstring), or None."""
    if name.upper() in _SHELL_NAMES:
        return None
    words = _words(name)
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else None
        if word not in _NOT_SECRET_WORDS:
            for inside in _INSIDE_WORD:
                if inside in word:
                    return inside
        if word in _WHOLE_WORD:
            return word
        if word.endswith(("TOKEN", "TOKENS")):
            return "TOKEN"
        if word in _KEY_QUALIFIERS and following == "KEY":
            return f"{word}_KEY"
        if word == "AUTH" and (following is None or following in _AUTH_FOLLOWERS):
            return "AUTH"
    return None


def _unquoted(value: str) -> str:
    # docker keeps quotes in env files (`A="x"` sets `"x"`); the secret inside is the same.
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def is_placeholder(value: str) -> bool:
    """True for values that hold no secret: templates, examples, booleans, small numbers."""
    lowered = value.lower()
    return (
        lowered in _PLACEHOLDER_WORDS
        or len(set(lowered)) <= 1
        or "example" in lowered
        or "placeholder" in lowered
        or _PLACEHOLDER_SHAPES.fullmatch(value) is not None
        or _REFERENCE.match(value) is not None
    )


def _hint(prefix: str, length: int) -> str:
    # A public prefix of 8+ characters (sk_live_, github_pat_) is left out all the same, so that
    # no 8-character run of a value ever reaches a report.
    return f"{prefix}…({length} chars)" if prefix and len(prefix) < 8 else f"{length} chars"


def _shape(value: str) -> Verdict | None:
    for shape in _SHAPES:
        for match in shape.pattern.finditer(value):
            token = match.group(0)
            prefix = match.group(1) if shape.prefix_groups else ""
            body = token[len(prefix) :]
            if is_placeholder(token) or len(set(body)) <= 2 or not shape.valid(token):
                continue
            return Verdict(f"value looks like {shape.what}", _hint(prefix, len(token)), True)
    for match in _URL_PASSWORD.finditer(value):
        password = match.group(1)
        if not is_placeholder(password) and not is_placeholder(match.group(0)):
            return Verdict(
                "value looks like a URL with a password", f"password {len(password)} chars", True
            )
    return None


def _aws_secret(name: str, value: str, access_key_seen: bool) -> Verdict | None:
    if _AWS_SECRET.fullmatch(value) is None:
        return None
    # Mixed case: a 40-character hex digest (a git commit id) is not base64.
    if not (re.search(r"[a-z]", value) and re.search(r"[A-Z]", value)):
        return None
    words = _words(name)
    if access_key_seen or ("AWS" in words and "SECRET" in words):
        return Verdict("value looks like an AWS secret access key", "40 chars", True)
    return None


def judge(name: str, value: str, *, access_key_seen: bool = False) -> Verdict | None:
    """Whether one variable holds a secret; `access_key_seen`: an AWS key id is set alongside."""
    text = _unquoted(value)
    if not text or is_placeholder(text):
        return None
    verdict = _shape(text) or _aws_secret(name, text, access_key_seen)
    if verdict is not None:
        return verdict
    if name in ECS_INJECTED:
        return None
    word = sensitive_word(name)
    if word is None:
        return None
    last = _words(name)[-1]
    if last != word and (
        last in _DESCRIBES or (last in _NAMES_A_PATH and _PATH_VALUE.match(text) is not None)
    ):
        return None
    return Verdict(f"name contains {word}", f"{len(value)} chars", False)


def shown_name(name: str) -> str:
    """`name` as a report may print it: as is when it has a name's shape and no secret's, else
    only its length (it is then most likely pasted text, a secret among it)."""
    if _SHOWN_NAME.fullmatch(name) is None or _shape(name) is not None:
        return f"(a name not shown: {len(name)} chars)"
    return name


def judge_source(variables: Sequence[EnvVar]) -> list[tuple[EnvVar, Verdict]]:
    """The flagged variables of one source (an AWS key id makes its secret key recognisable)."""
    access_key_seen = any(
        _AWS_KEY_ID.search(variable.value) and not is_placeholder(_unquoted(variable.value))
        for variable in variables
    )
    flagged = []
    for variable in variables:
        verdict = judge(variable.name, variable.value, access_key_seen=access_key_seen)
        if verdict is not None:
            flagged.append((variable, verdict))
    return flagged


def _live_root(context: ScanContext) -> bool:
    return os.path.realpath(context.root.path) == b"/"


class EnvSecretsCheck:
    """Reads each environment source the options name and flags literal secrets in it."""

    id = ID
    title = TITLE
    worst: Severity | None = WORST

    def run(self, context: ScanContext) -> Iterator[Finding | Problem]:
        options = context.options
        loaded: list[tuple[list[EnvVar], list[str]]] = []
        for path in options.task_definitions:
            loaded.append(environment.from_task_definition(path))
        for path in options.env_files:
            loaded.append(environment.from_env_file(path))
        if options.process_env and options.process_pid is not None:
            pid = options.process_pid
            loaded.append(environment.from_process(f"/proc/{pid}/environ", f"process:pid{pid}"))
        elif options.process_env and _live_root(context):
            loaded.append(environment.from_process(environment.PROC_ENVIRON))
        if options.image_env:
            source = f"image-config:{options.image_name or 'image'}"
            loaded.append(([EnvVar(name, value, source) for name, value in options.image_env], []))
        for variables, problems in loaded:
            for message in problems:
                yield Problem(kind=ProblemKind.COULD_NOT_VERIFY, message=message, check=ID)
            by_source: dict[str, list[EnvVar]] = {}
            for variable in variables:
                by_source.setdefault(variable.source, []).append(variable)
            for source, group in by_source.items():
                flagged = judge_source(group)
                if flagged:
                    yield self._finding(source, flagged)

    @staticmethod
    def _finding(source: str, flagged: list[tuple[EnvVar, Verdict]]) -> Finding:
        names = [shown_name(variable.name) for variable, _ in flagged]
        return Finding(
            check=ID,
            title=TITLE,
            severity=(Severity.HIGH if any(v.known_shape for _, v in flagged) else Severity.MEDIUM),
            kind=KIND,
            path=b"",  # not a file: the source is in `extra`
            detail=f"{source}: {', '.join(names)}",
            extra={
                "source": source,
                "variables": [
                    {"name": name, "reason": verdict.reason, "hint": verdict.hint}
                    for name, (_, verdict) in zip(names, flagged)
                ],
            },
        )
