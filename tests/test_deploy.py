"""The supervisors' and the container's files under deploy/, Dockerfile and docker-compose.yml.

Checked with the tools that read them where this machine has them (`systemd-analyze verify`, Debian's
`docker-compose config`, the `run-with-env` wrapper itself), and by parsing them for the options the
flow relies on: restart on a crash but not on a bad configuration (78), SIGTERM with more than the
flow's 30 s to stop, secrets from an environment file only. There is no Docker engine here: the image
is held to the commands the README's set-up runs (`./dev`). A missing tool fails a test, naming the
Debian package `./dev test` installs; nothing is skipped.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
SYSTEMD_UNITS = {
    "replay": DEPLOY / "systemd" / "quantbot-replay.service",
    "run": DEPLOY / "systemd" / "quantbot-run.service",
}
"""Each flow command's unit."""
SUPERVISORD_CONF = DEPLOY / "supervisord" / "quantbot.conf"
RUN_WITH_ENV = DEPLOY / "run-with-env"
ENV_EXAMPLE = DEPLOY / "env.example"
DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DEV_SCRIPT = REPO_ROOT / "dev"

FLOW_STOP_S = 30
"""A flow stops cleanly within this long after SIGTERM: every supervisor must wait longer."""
EX_CONFIG = 78
INSTALLED_QUANTBOT = "/opt/quantbot/bin/quantbot"
"""Where the unit files expect the installed command (a virtualenv in /opt/quantbot)."""
STORES = ("postgres", "mongo", "influxdb", "redis")
TOOL_TIMEOUT_S = 60


def _tool(command: str, package: str) -> str:
    path = shutil.which(command)
    if path is None:
        pytest.fail(f"{command} is not installed (Debian package {package}): `./dev test` installs it", pytrace=False)
    return path


def _unit(command: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(SYSTEMD_UNITS[command].read_text())
    return parser


def _seconds(value: str) -> float:
    """A systemd/compose time span such as `45s`, `1min 30s` or `45`, in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


# ---------------------------------------------------------------------------------------------- systemd


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(SYSTEMD_UNITS))
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path, command: str) -> None:
    """systemd itself reads the unit without a warning (its ExecStart pointed at this environment's quantbot)."""
    analyze = _tool("systemd-analyze", "systemd")
    quantbot = Path(sys.executable).parent / "quantbot"
    assert quantbot.exists(), f"the quantbot console script is not installed beside {sys.executable}"
    unit = tmp_path / SYSTEMD_UNITS[command].name
    unit.write_text(SYSTEMD_UNITS[command].read_text().replace(INSTALLED_QUANTBOT, str(quantbot)))

    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"systemd warned about the unit:\n{result.stderr}"


@pytest.mark.parametrize("flow", sorted(SYSTEMD_UNITS))
def test_systemd_unit_restarts_a_crash_but_not_a_bad_configuration(flow: str) -> None:
    """Restart=on-failure except exit 78, SIGTERM with more than 30 s, secrets from a file, own user, state dir."""
    service = _unit(flow)["Service"]

    assert service["Restart"] == "on-failure"
    assert str(EX_CONFIG) in service["RestartPreventExitStatus"].split()
    assert service["KillSignal"] == "SIGTERM"
    assert _seconds(service["TimeoutStopSec"]) > FLOW_STOP_S
    assert service["EnvironmentFile"].startswith("/etc/"), "secrets come from a root-owned environment file"
    assert service.get("DynamicUser") == "yes" or service.get("User") not in (None, "root")
    assert "quantbot" in service["StateDirectory"].split()
    assert service["WorkingDirectory"] == "/var/lib/quantbot"
    command = shlex.split(service["ExecStart"])
    assert command[:2] == [INSTALLED_QUANTBOT, flow]
    assert command[command.index("--recovery-dir") + 1].startswith("/var/lib/quantbot/")
    assert "PASSWORD" not in service.get("Environment", "") and "TOKEN" not in service.get("Environment", "")


# ------------------------------------------------------------------------------------------- supervisord


def _program(flow: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(SUPERVISORD_CONF.read_text())
    programs = [name for name in parser.sections() if name.startswith("program:")]
    assert sorted(programs) == ["program:quantbot-replay", "program:quantbot-run"], programs
    return parser[f"program:quantbot-{flow}"]


@pytest.mark.parametrize("flow", ["replay", "run"])
def test_supervisord_program_restarts_only_unexpected_exits_and_stops_with_sigterm(flow: str) -> None:
    """autorestart=unexpected, exitcodes 0 and 78, TERM with more than 30 s, env file through run-with-env, logs."""
    program = _program(flow)

    assert program["autorestart"] == "unexpected"
    assert program["exitcodes"].split(",") == ["0", str(EX_CONFIG)]  # a finished or stopped flow; a bad configuration
    assert program["stopsignal"] == "TERM"
    assert int(program["stopwaitsecs"]) > FLOW_STOP_S
    command = shlex.split(program["command"])
    assert Path(command[0]).name == "run-with-env" and command[1].startswith("/etc/")
    assert command[2:4] == [INSTALLED_QUANTBOT, flow] and "--recovery-dir" in command
    assert program["stdout_logfile"].startswith("/var/log/") and program["stderr_logfile"].startswith("/var/log/")
    assert program["user"] not in ("", "root")
    assert "PASSWORD" not in program.get("environment", "") and "TOKEN" not in program.get("environment", "")


@pytest.mark.slow
def test_run_with_env_exports_the_file_literally_and_execs_the_command(tmp_path: Path) -> None:
    """run-with-env adds KEY=VALUE lines verbatim (spaces, quotes, `$(...)` untouched), skipping comments."""
    values = {"QB_PLAIN": "s3cret", "QB_SPACES": "a b  c", "QB_SHELL": "$(touch pwned) `x` \"q\" 'r' $HOME"}
    env_file = tmp_path / "quantbot.env"
    env_file.write_text("# a comment\n\n" + "".join(f"{k}={v}\n" for k, v in values.items()))
    show = "import json, os, sys; print(json.dumps({k: os.environ[k] for k in sys.argv[1:]}))"

    result = subprocess.run(
        [str(RUN_WITH_ENV), str(env_file), sys.executable, "-c", show, *values],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == values
    assert not (tmp_path / "pwned").exists(), "a value was run as shell"


@pytest.mark.slow
def test_run_with_env_refuses_a_malformed_line_with_78_and_without_printing_it(tmp_path: Path) -> None:
    """A line that is not KEY=VALUE stops it with 78, naming the line number but not the (secret) text."""
    env_file = tmp_path / "quantbot.env"
    env_file.write_text("QB_OK=1\nexport QB_SECRET=hunter2\n")

    result = subprocess.run(
        [str(RUN_WITH_ENV), str(env_file), "true"], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
    )

    assert result.returncode == EX_CONFIG
    assert "line 2" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


# ------------------------------------------------------------------------------------------------ image


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), " ".join(rest.split())))
    return instructions


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(rest))
    return env


def test_dockerfile_builds_in_one_stage_and_runs_unprivileged_from_another() -> None:
    """Two stages (the compiler only in the build one), a non-root user, the state volume, quantbot as entry point."""
    instructions = _dockerfile_instructions()
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    final = _final_stage()

    assert len(stages) == 2 and stages[0].endswith("AS build")
    assert not any("gcc" in rest for keyword, rest in final if keyword == "RUN"), "the runtime image has no compiler"
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("VOLUME", '["/var/lib/quantbot"]') in final
    assert ("ENTRYPOINT", '["quantbot"]') in final
    assert ("STOPSIGNAL", "SIGTERM") in final


def test_dockerfile_healthcheck_asks_healthz_on_the_exposed_port() -> None:
    """HEALTHCHECK reads /healthz with Python's urllib on HTTP_PORT, the port EXPOSE names; the server binds all."""
    final = _final_stage()
    env = _env(final)
    healthchecks = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]

    assert len(healthchecks) == 1
    assert "urllib.request.urlopen" in healthchecks[0] and "/healthz" in healthchecks[0]
    assert "os.environ['HTTP_PORT']" in healthchecks[0] and "127.0.0.1" in healthchecks[0]
    assert ("EXPOSE", env["HTTP_PORT"]) in final
    assert env["QUANTBOT_OBSERVABILITY_HTTP_HOST"] == "0.0.0.0"  # noqa: S104 - a container's port is its interface


def _commands(run: str) -> list[list[str]]:
    """The simple commands of a RUN step (split on &&, ||, ; and |), each as its words."""
    return [shlex.split(part) for part in re.split(r"&&|\|\||;|\|", run) if part.strip()]


# What the image may run beside the README's set-up commands: plumbing that changes no software.
IMAGE_PLUMBING = frozenset({"useradd", "mkdir", "chown", "rm"})
# The Debian packages of the build stage: the C compiler that setup.py compiles the decoder with (the
# README: "Without a C compiler ... it stays plain Python").
BUILD_PACKAGES = frozenset({"gcc", "libc6-dev"})


def test_dockerfile_runs_only_the_commands_of_the_readme_set_up() -> None:
    """RUN steps are ./dev's apt-get and `python -m pip install` (plus `pip wheel` of the same source) and plumbing."""
    dev = DEV_SCRIPT.read_text()
    assert "-m pip install --quiet -e '.[dev]'" in dev and "-m pip install --quiet --upgrade pip" in dev
    assert "apt-get update" in dev and "apt-get install -y" in dev
    runs = [rest for keyword, rest in _dockerfile_instructions() if keyword == "RUN"]
    assert runs

    pip_targets = []
    for run in runs:
        for words in _commands(run):
            if words[0] in IMAGE_PLUMBING:
                continue
            if words[0] == "apt-get":
                assert words[1] in ("update", "install"), words
                packages = [w for w in words[2:] if not w.startswith("-")]
                assert set(packages) <= BUILD_PACKAGES, packages
                continue
            assert words[:3] == ["python", "-m", "pip"], f"not a command of the README's set-up: {words}"
            assert words[3] in ("install", "wheel"), words
            pip_targets += [w for w in words[4:] if not w.startswith("-") and w != "/wheels"]
    # The project's source (as `pip install -e .` installs it), pip itself, and the wheel built from the source.
    assert set(pip_targets) == {".", "pip", "/wheels/*.whl"}, pip_targets


# ------------------------------------------------------------------------------------------------ compose


def _secret_markers() -> dict[str, str]:
    """A distinct value for every variable of deploy/env.example, to find where each one lands."""
    names = [line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines() if line and line[0] != "#"]
    return {name: f"marker-{i}-{name.lower().replace('_', '-')}" for i, name in enumerate(names)}


def _compose_config(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    compose = _tool("docker-compose", "docker-compose")
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return subprocess.run(
        [compose, "config"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )


@pytest.mark.slow
def test_compose_file_is_valid_and_orders_stores_migration_and_pipeline(tmp_path: Path) -> None:
    """docker-compose config accepts it: four healthy-checked stores, `migrate` once, then the pipeline."""
    markers = _secret_markers()
    result = _compose_config(tmp_path, markers)
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = yaml.safe_load(result.stdout)["services"]

    assert set(services) == {*STORES, "migrate", "pipeline"}
    for store in STORES:
        assert services[store]["healthcheck"]["test"][0] == "CMD", store
    migrate, pipeline = services["migrate"], services["pipeline"]
    assert migrate["command"] == ["migrate", "up"] and migrate["restart"] == "no"
    assert migrate["healthcheck"] == {"test": ["NONE"]}, "a one-shot serves no /healthz"
    assert all(migrate["depends_on"][s]["condition"] == "service_healthy" for s in STORES)
    assert pipeline["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert pipeline["command"][0] == "run" and "--recovery-dir" in pipeline["command"]
    assert pipeline["restart"] == "on-failure"
    assert pipeline["stop_signal"] == "SIGTERM" and _seconds(pipeline["stop_grace_period"]) > FLOW_STOP_S
    assert any(v.startswith("quantbot:/var/lib/quantbot") for v in pipeline["volumes"])
    port = pipeline["command"][pipeline["command"].index("--http-port") + 1]
    assert port == _env(_final_stage())["HTTP_PORT"]
    # Every secret of the env file reaches the quantbot services, and each store gets its own.
    for service in (migrate, pipeline):
        assert {k: service["environment"][k] for k in markers} == markers
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == markers["QUANTBOT_POSTGRES_PASSWORD"]
    assert services["mongo"]["environment"]["MONGO_INITDB_ROOT_PASSWORD"] == markers["QUANTBOT_MONGO_PASSWORD"]
    assert services["influxdb"]["environment"]["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == markers["QUANTBOT_INFLUX_TOKEN"]
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == markers["QUANTBOT_REDIS_PASSWORD"]
    assert not any(markers["QUANTBOT_REDIS_PASSWORD"] in word for word in services["redis"]["command"])


@pytest.mark.slow
def test_compose_file_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    """An env file lacking a secret stops `docker-compose config` with a message naming the variable."""
    markers = _secret_markers()
    del markers["QUANTBOT_POSTGRES_PASSWORD"]

    result = _compose_config(tmp_path, markers)

    assert result.returncode != 0
    assert "QUANTBOT_POSTGRES_PASSWORD" in result.stderr


def test_compose_file_writes_no_secret_value() -> None:
    """Every password, token or auth value in docker-compose.yml is a ${...} reference to the env file."""
    compose: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    secret_names = re.compile(r"PASSWORD|TOKEN|AUTH|SECRET", re.IGNORECASE)
    checked = 0
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if secret_names.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:\?[^}]*)?\}", str(value)), f"{name}.{key} is written in the file"
                checked += 1
        if name in ("migrate", "pipeline"):
            assert service["env_file"] == [".env"], name
    assert checked >= len(STORES)
    example = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and line[0] != "#")
    assert set(example.values()) == {"change-me"}, "deploy/env.example holds placeholders only"
