"""deploy/scripts/*.sh and deploy/docker/: dry-run defaults, missing tools, the image recipe.

The scripts run under bash with a PATH that holds only basic tools and, where a test wants
them, fake kubectl / gcloud / nox programs that record their arguments. The fake nox runs
scripts/deployment/render_manifests.py itself, so no real nox, cluster or cloud is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiprod_core.config import load_config

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "deploy" / "scripts"
COMMITTED = REPO / "deploy" / "kubernetes"
BASH = shutil.which("bash") or "/bin/bash"
BASIC_TOOLS = ("dirname", "mktemp", "rm", "awk", "sha256sum", "cat")

FAKE_TOOL = """#!{python}
import json, os, pathlib, sys
args = sys.argv[1:]
files = {{}}
for flag, value in zip(args, args[1:]):
    if flag == "-f" and os.path.isfile(value):
        files[value] = pathlib.Path(value).read_text()
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"tool": {name!r}, "argv": args, "files": files}}) + "\\n")
print({name!r} + " called")
sys.exit(int(os.environ.get("FAKE_{upper}_EXIT", "0")))
"""

FAKE_NOX = """#!{python}
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"tool": "nox", "argv": args}}) + "\\n")
if os.environ.get("FAKE_NOX_EXIT"):
    sys.exit(int(os.environ["FAKE_NOX_EXIT"]))
assert args[:3] == ["-s", "deployment", "--"], args
script = os.path.join("scripts", "deployment", args[3] + ".py")
sys.exit(subprocess.call([sys.executable, script, *args[4:]]))
"""


@dataclass
class Result:
    code: int
    out: str
    err: str
    calls: list[dict[str, Any]]

    def argv(self, tool: str) -> list[list[str]]:
        return [call["argv"] for call in self.calls if call["tool"] == tool]


class Sandbox:
    """A PATH with basic tools only, plus whichever fakes a test installs."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.log = tmp_path / "calls.jsonl"
        self.env = {
            "PATH": str(self.bin),
            "HOME": str(tmp_path),
            "TMPDIR": str(tmp_path),
            "FAKE_LOG": str(self.log),
            "NOX_COMMAND": "nox",
        }
        for tool in BASIC_TOOLS:
            found = shutil.which(tool)
            assert found, f"{tool} is needed by the scripts under test"
            (self.bin / tool).symlink_to(found)

    def fake(self, *names: str) -> None:
        for name in names:
            template = FAKE_NOX if name == "nox" else FAKE_TOOL
            path = self.bin / name
            path.write_text(template.format(python=sys.executable, name=name, upper=name.upper()))
            path.chmod(0o755)

    def run(self, script: str, *args: str, **env: str) -> Result:
        proc = subprocess.run(
            [BASH, str(SCRIPTS / script), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            cwd=self.tmp,
            check=False,
            timeout=120,
        )
        calls = (
            [json.loads(line) for line in self.log.read_text().splitlines()]
            if self.log.exists()
            else []
        )
        self.log.unlink(missing_ok=True)
        return Result(proc.returncode, proc.stdout, proc.stderr, calls)


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


def committed(name: str) -> str:
    return str(COMMITTED / name)


# ---------------------------------------------------------------------------- deploy.sh
def test_deploy_without_kubectl_fails_clearly(sandbox: Sandbox) -> None:
    sandbox.fake("nox")
    result = sandbox.run("deploy.sh")
    assert result.code == 127
    assert result.err == (
        "error: kubectl not found; install it or run deploy/scripts/validate.sh for an offline check\n"
    )
    assert result.calls == [], "nothing may run before the tool check"


def test_deploy_to_cloud_run_without_gcloud_fails_clearly(sandbox: Sandbox) -> None:
    sandbox.fake("nox", "kubectl")
    result = sandbox.run("deploy.sh", "--target", "cloud-run")
    assert result.code == 127
    assert "error: gcloud not found; install it or run" in result.err


def test_deploy_without_nox_fails_clearly(sandbox: Sandbox) -> None:
    sandbox.fake("kubectl")
    result = sandbox.run("deploy.sh", NOX_COMMAND="no-such-nox --flag")
    assert result.code == 127
    assert "error: no-such-nox not found; install it or set NOX_COMMAND" in result.err


def test_deploy_defaults_to_a_server_side_dry_run(sandbox: Sandbox) -> None:
    sandbox.fake("nox", "kubectl")
    result = sandbox.run("deploy.sh")
    assert result.code == 0, result.err
    assert result.argv("nox") == [["-s", "deployment", "--", "render_manifests", "--check"]]
    assert result.argv("kubectl") == [
        [
            "apply",
            "--dry-run=server",
            "-f",
            committed("deployment.yaml"),
            "-f",
            committed("service.yaml"),
            "-f",
            committed("ingress.yaml"),
        ]
    ]
    assert "dry run: nothing was changed; add --apply to deploy production" in result.out


def test_deploy_apply_applies_and_waits_for_the_rollout(sandbox: Sandbox) -> None:
    sandbox.fake("nox", "kubectl")
    result = sandbox.run("deploy.sh", "--apply", "--with-alerts")
    assert result.code == 0, result.err
    apply, status = result.argv("kubectl")
    assert apply[0] == "apply"
    assert "--dry-run=server" not in apply
    assert apply[-2:] == ["-f", committed("alerts.yaml")]
    assert status == ["rollout", "status", "-f", committed("deployment.yaml"), "--timeout=15m"]


def test_deploy_refuses_stale_committed_manifests(sandbox: Sandbox) -> None:
    sandbox.fake("nox", "kubectl")
    result = sandbox.run("deploy.sh", FAKE_NOX_EXIT="1")
    assert result.code == 1
    assert "the committed manifests are not a fresh render of config/" in result.err
    assert result.argv("kubectl") == []


def test_deploy_staging_renders_into_a_temporary_folder(sandbox: Sandbox) -> None:
    sandbox.fake("nox", "kubectl")
    result = sandbox.run("deploy.sh", "--env", "staging", "--no-gpu")
    assert result.code == 0, result.err
    (nox_argv,) = result.argv("nox")
    assert nox_argv[:6] == ["-s", "deployment", "--", "render_manifests", "--env", "staging"]
    assert nox_argv[-1] == "--no-gpu"
    output = Path(nox_argv[nox_argv.index("--output") + 1])
    assert output.parent == sandbox.tmp
    assert not output.exists(), "the temporary folder is removed on exit"
    (call,) = [c for c in result.calls if c["tool"] == "kubectl"]
    assert call["argv"][:2] == ["apply", "--dry-run=server"]
    deployment = yaml.safe_load(call["files"][str(output / "deployment.yaml")])
    assert deployment["metadata"]["namespace"] == "aiprod-staging"
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in limits


def test_deploy_of_one_replica_applies_its_volume_claim_first(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    train_config = tmp_path / "packages" / "aiprod-trainer" / "configs" / "dit-19b-fsdp.yaml"
    train_config.parent.mkdir(parents=True)  # named by config/cloud/training.yaml
    shutil.copyfile(REPO / train_config.relative_to(tmp_path), train_config)
    cloud_run = yaml.safe_load((config / "cloud" / "cloud-run.yaml").read_text())
    del cloud_run["secrets"]["database_url"]  # the embedded SQLite job store: one replica
    for site in cloud_run["environments"].values():
        site.update(replicas=1, min_instances=0, max_instances=1)
    (config / "cloud" / "cloud-run.yaml").write_text(yaml.safe_dump(cloud_run))
    sandbox.fake("nox", "kubectl")
    result = sandbox.run("deploy.sh", "--env", "staging", AIPROD_CONFIG_DIR=str(config))
    assert result.code == 0, result.err
    (nox_argv,) = result.argv("nox")
    output = Path(nox_argv[nox_argv.index("--output") + 1])
    (call,) = [c for c in result.calls if c["tool"] == "kubectl"]
    assert call["argv"][2:] == [
        "-f",
        str(output / "server-volume.yaml"),
        "-f",
        str(output / "deployment.yaml"),
        "-f",
        str(output / "service.yaml"),
        "-f",
        str(output / "ingress.yaml"),
    ]
    claim = yaml.safe_load(call["files"][str(output / "server-volume.yaml")])
    assert claim["metadata"] == {
        "labels": claim["metadata"]["labels"],
        "name": "aiprod-server-outputs",
        "namespace": "aiprod-staging",
    }


def test_deploy_to_cloud_run_dry_run_and_apply(sandbox: Sandbox) -> None:
    sandbox.fake("nox", "gcloud")
    service = committed("cloud-run-service.yaml")
    dry = sandbox.run("deploy.sh", "--target", "cloud-run")
    assert dry.code == 0, dry.err
    assert dry.argv("gcloud") == [
        ["run", "services", "replace", service, "--region", "europe-west4", "--dry-run"]
    ]
    applied = sandbox.run("deploy.sh", "--target", "cloud-run", "--apply")
    assert applied.code == 0, applied.err
    assert applied.argv("gcloud") == [
        ["run", "services", "replace", service, "--region", "europe-west4"]
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "error: unknown option: --bogus"),
        (["--target", "heroku"], "error: --target must be kubernetes or cloud-run, not 'heroku'"),
        (["--env"], "error: --env needs a value"),
    ],
)
def test_deploy_rejects_bad_arguments(sandbox: Sandbox, args: list[str], message: str) -> None:
    sandbox.fake("nox", "kubectl")
    result = sandbox.run("deploy.sh", *args)
    assert result.code == 2
    assert message in result.err
    assert result.argv("kubectl") == []


@pytest.mark.parametrize(
    "script", ["deploy.sh", "validate.sh", "rollback.sh", "migrate.sh", "train.sh"]
)
def test_help(sandbox: Sandbox, script: str) -> None:
    result = sandbox.run(script, "--help")
    assert result.code == 0
    assert result.out.startswith(f"usage: deploy/scripts/{script}")
    assert result.calls == []


# -------------------------------------------------------------------------- validate.sh
def test_validate_runs_the_render_check(sandbox: Sandbox) -> None:
    sandbox.fake("nox")
    result = sandbox.run("validate.sh", "--env", "production")
    assert result.code == 0, result.err
    assert result.argv("nox") == [
        ["-s", "deployment", "--", "render_manifests", "--check", "--env", "production"]
    ]
    assert "9 manifests in deploy/kubernetes are up to date (production)" in result.out


def test_validate_reports_drift_with_exit_1(sandbox: Sandbox) -> None:
    sandbox.fake("nox")
    result = sandbox.run("validate.sh", "--env", "staging")
    assert result.code == 1
    assert "deploy/kubernetes/deployment.yaml: differs from a fresh render" in result.err


def test_validate_without_nox(sandbox: Sandbox) -> None:
    result = sandbox.run("validate.sh")
    assert result.code == 127
    assert "error: nox not found; install it or set NOX_COMMAND" in result.err


# -------------------------------------------------------------------------- rollback.sh
def test_rollback_without_kubectl_fails_clearly(sandbox: Sandbox) -> None:
    result = sandbox.run("rollback.sh")
    assert result.code == 127
    assert "error: kubectl not found; install it or roll back from a machine" in result.err


def test_rollback_defaults_to_a_dry_run(sandbox: Sandbox) -> None:
    sandbox.fake("kubectl")
    result = sandbox.run("rollback.sh", "--to-revision", "3")
    assert result.code == 0, result.err
    deployment = committed("deployment.yaml")
    assert result.argv("kubectl") == [
        ["rollout", "history", "-f", deployment],
        ["rollout", "undo", "-f", deployment, "--to-revision=3", "--dry-run=server"],
    ]
    assert result.argv("nox") == [], "production rolls back from the committed files"
    assert "dry run: nothing was changed" in result.out


def test_rollback_apply(sandbox: Sandbox) -> None:
    sandbox.fake("kubectl")
    result = sandbox.run("rollback.sh", "--apply")
    assert result.code == 0, result.err
    deployment = committed("deployment.yaml")
    assert result.argv("kubectl") == [
        ["rollout", "undo", "-f", deployment],
        ["rollout", "status", "-f", deployment, "--timeout=15m"],
    ]


def test_rollback_staging_uses_its_own_manifests(sandbox: Sandbox) -> None:
    sandbox.fake("kubectl", "nox")
    result = sandbox.run("rollback.sh", "--env", "staging")
    assert result.code == 0, result.err
    (nox_argv,) = result.argv("nox")
    assert "--check" not in nox_argv
    history = next(c for c in result.calls if c["tool"] == "kubectl")
    (text,) = history["files"].values()
    assert "namespace: aiprod-staging" in text


def test_rollback_revision_checks(sandbox: Sandbox) -> None:
    sandbox.fake("kubectl", "gcloud")
    bad = sandbox.run("rollback.sh", "--to-revision", "previous")
    assert bad.code == 2
    assert "--to-revision for kubernetes is a revision number" in bad.err
    missing = sandbox.run("rollback.sh", "--target", "cloud-run")
    assert missing.code == 2
    assert "a cloud-run rollback needs --to-revision REVISION" in missing.err
    assert bad.calls == missing.calls == []


def test_rollback_cloud_run(sandbox: Sandbox) -> None:
    sandbox.fake("gcloud")
    dry = sandbox.run(
        "rollback.sh", "--target", "cloud-run", "--to-revision", "aiprod-server-00042"
    )
    assert dry.code == 0, dry.err
    assert dry.argv("gcloud") == [
        ["run", "revisions", "describe", "aiprod-server-00042", "--region", "europe-west4"]
    ]
    assert (
        "would run: gcloud run services update-traffic aiprod-server --region europe-west4 "
        "--to-revisions aiprod-server-00042=100"
    ) in dry.out
    applied = sandbox.run(
        "rollback.sh", "--target", "cloud-run", "--to-revision", "aiprod-server-00042", "--apply"
    )
    assert applied.argv("gcloud") == [
        [
            "run",
            "services",
            "update-traffic",
            "aiprod-server",
            "--region",
            "europe-west4",
            "--to-revisions",
            "aiprod-server-00042=100",
        ]
    ]


# --------------------------------------------------------------------------- migrate.sh
@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    (folder / "pretrained").mkdir(parents=True)
    (folder / "pretrained" / "aiprod-19b.safetensors").write_bytes(b"weights")
    return folder


def test_migrate_reports_missing_weights(sandbox: Sandbox, tmp_path: Path) -> None:
    result = sandbox.run("migrate.sh", "--models-dir", str(tmp_path / "empty"))
    assert result.code == 1
    assert result.err == (
        f"error: {tmp_path}/empty/pretrained/aiprod-19b.safetensors not found: production "
        "serves aiprod-19b; obtain it as the registry entry in config/AIPROD.json says, or "
        "pass --models-dir\n"
    )


def test_migrate_dry_run_needs_no_gcloud(sandbox: Sandbox, models_dir: Path) -> None:
    result = sandbox.run("migrate.sh", "--models-dir", str(models_dir))
    assert result.code == 0, result.err
    local = models_dir / "pretrained" / "aiprod-19b.safetensors"
    assert (
        f"would run: gcloud storage cp {local} "
        "gs://aiprod-prod-models/pretrained/aiprod-19b.safetensors"
    ) in result.out
    assert "the registry has no sha256 for aiprod-19b" in result.out
    assert result.calls == []


def test_migrate_apply_uploads_with_gcloud(sandbox: Sandbox, models_dir: Path) -> None:
    missing = sandbox.run("migrate.sh", "--models-dir", str(models_dir), "--apply")
    assert missing.code == 127
    assert "error: gcloud not found; install it or run without --apply" in missing.err
    sandbox.fake("gcloud")
    result = sandbox.run("migrate.sh", "--models-dir", str(models_dir), "--apply")
    assert result.code == 0, result.err
    assert result.argv("gcloud") == [
        [
            "storage",
            "cp",
            str(models_dir / "pretrained" / "aiprod-19b.safetensors"),
            "gs://aiprod-prod-models/pretrained/aiprod-19b.safetensors",
        ]
    ]


@pytest.mark.parametrize(("content", "ok"), [(b"small weights", True), (b"tampered", False)])
def test_migrate_verifies_the_registry_sha256(
    sandbox: Sandbox, tmp_path: Path, content: bytes, ok: bool
) -> None:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    train_config = tmp_path / "packages" / "aiprod-trainer" / "configs" / "dit-19b-fsdp.yaml"
    train_config.parent.mkdir(parents=True)  # named by config/cloud/training.yaml
    shutil.copyfile(REPO / train_config.relative_to(tmp_path), train_config)
    base = json.loads((config / "AIPROD.json").read_text())
    digest = hashlib.sha256(b"small weights").hexdigest()
    base["models"]["aiprod-small"]["sha256"] = digest
    (config / "AIPROD.json").write_text(json.dumps(base))
    weights = tmp_path / "models" / "checkpoints" / "aiprod-small.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(content)
    sandbox.fake("nox")
    result = sandbox.run(
        "migrate.sh",
        "--env",
        "staging",
        "--models-dir",
        str(tmp_path / "models"),
        AIPROD_CONFIG_DIR=str(config),
    )
    if ok:
        assert result.code == 0, result.err
        assert f"verified {weights} (sha256 {digest})" in result.out
        assert "gs://aiprod-staging-models/checkpoints/aiprod-small.safetensors" in result.out
    else:
        assert result.code == 1
        assert f"but the registry expects {digest} for aiprod-small" in result.err


DATABASE_URL = "postgresql://aiprod:s3cret@db.internal:5432/aiprod"
MIGRATE_MODULE = ["-m", "aiprod_pipelines.server.store.migrate"]


@pytest.mark.parametrize(("flags", "extra"), [([], ["--check"]), (["--apply"], [])])
def test_migrate_database_lists_or_applies_the_migrations(
    sandbox: Sandbox, flags: list[str], extra: list[str]
) -> None:
    sandbox.fake("python")
    result = sandbox.run(
        "migrate.sh",
        "--no-weights",
        "--database",
        *flags,
        PYTHON="python",
        AIPROD_DATABASE_URL=DATABASE_URL,
    )
    assert result.code == 0, result.err
    assert result.argv("python") == [[*MIGRATE_MODULE, *extra]]
    assert result.argv("gcloud") == []
    assert "s3cret" not in result.out + result.err


def test_migrate_database_after_the_weights(sandbox: Sandbox, models_dir: Path) -> None:
    sandbox.fake("python")
    result = sandbox.run(
        "migrate.sh",
        "--models-dir",
        str(models_dir),
        "--database",
        PYTHON="python",
        AIPROD_DATABASE_URL=DATABASE_URL,
    )
    assert result.code == 0, result.err
    assert "would run: gcloud storage cp" in result.out
    assert result.argv("python") == [[*MIGRATE_MODULE, "--check"]]


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["--database"], {}, 2, "error: --database needs AIPROD_DATABASE_URL"),
        (["--no-weights"], {}, 2, "error: --no-weights without --database leaves nothing to do"),
        (
            ["--no-weights", "--database"],
            {"AIPROD_DATABASE_URL": DATABASE_URL, "PYTHON": "no-such-python"},
            127,
            (
                "error: no-such-python not found; install it or set PYTHON to a Python with "
                "aiprod-pipelines[server] installed"
            ),
        ),
    ],
)
def test_migrate_database_refuses_what_cannot_work(
    sandbox: Sandbox, args: list[str], env: dict[str, str], code: int, message: str
) -> None:
    sandbox.fake("python", "gcloud")
    result = sandbox.run("migrate.sh", *args, **env)
    assert result.code == code
    assert message in result.err
    assert result.calls == []


def test_migrate_database_runs_the_real_migrations(sandbox: Sandbox, tmp_path: Path) -> None:
    database = tmp_path / "jobs.sqlite3"
    env = {
        "PYTHON": sys.executable,
        "AIPROD_DATABASE_URL": f"sqlite:///{database}",
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    pending = sandbox.run("migrate.sh", "--no-weights", "--database", **env)
    assert pending.code == 1, pending.err
    assert f"job store sqlite:///{database}: schema version 0; pending: 0001_jobs" in pending.out
    applied = sandbox.run("migrate.sh", "--no-weights", "--database", "--apply", **env)
    assert applied.code == 0, applied.err
    assert "applied 0001_jobs; schema version 1" in applied.out
    again = sandbox.run("migrate.sh", "--no-weights", "--database", **env)
    assert again.code == 0, again.err
    assert "up to date (schema version 1)" in again.out


# ----------------------------------------------------------------------------- train.sh
TRAINING = [
    committed("training-volume.yaml"),
    committed("training-config.yaml"),
    committed("training-service.yaml"),
    committed("training-job.yaml"),
]
APPLY_TRAINING = ["apply", *(arg for path in TRAINING for arg in ("-f", path))]
WAIT = [
    "wait",
    "job/aiprod-train",
    "--namespace",
    "aiprod",
    "--for=jsonpath={.status.ready}=2",
    "--timeout=60m",
]
FOLLOW = [
    "logs",
    "--namespace",
    "aiprod",
    "--selector",
    "batch.kubernetes.io/job-name=aiprod-train",
    "--follow",
    "--prefix",
    "--tail=-1",
    "--max-log-requests",
    "2",
]
JOB_STATUS = ["get", "job", "aiprod-train", "--namespace", "aiprod"]


def test_train_defaults_to_a_server_side_dry_run(sandbox: Sandbox) -> None:
    sandbox.fake("nox", "kubectl")
    result = sandbox.run("train.sh")
    assert result.code == 0, result.err
    assert result.argv("nox") == [["-s", "deployment", "--", "render_manifests", "--check"]]
    assert result.argv("kubectl") == [[*APPLY_TRAINING, "--dry-run=server"]]
    lines = result.out.splitlines()
    assert f"would run: kubectl {' '.join(WAIT)}" in lines
    assert f"would run: kubectl {' '.join(FOLLOW)}" in lines
    assert lines[-1] == "dry run: nothing was changed; add --apply to launch training in production"


def test_train_apply_launches_then_follows_every_pod(sandbox: Sandbox) -> None:
    sandbox.fake("nox", "kubectl")
    result = sandbox.run("train.sh", "--apply")
    assert result.code == 0, result.err
    assert result.argv("kubectl") == [APPLY_TRAINING, WAIT, FOLLOW, JOB_STATUS]
    assert "launched training job aiprod-train in aiprod (2 nodes)" in result.out
    (apply_call,) = [c for c in result.calls if c["argv"] == APPLY_TRAINING]
    job = yaml.safe_load(apply_call["files"][committed("training-job.yaml")])
    assert job["kind"] == "Job"
    assert job["spec"]["completionMode"] == "Indexed"


def test_train_restart_replaces_the_job_and_keeps_the_volume(sandbox: Sandbox) -> None:
    sandbox.fake("nox", "kubectl")
    delete = ["delete", "job", "aiprod-train", "--namespace", "aiprod", "--ignore-not-found"]
    applied = sandbox.run("train.sh", "--apply", "--restart", "--no-follow")
    assert applied.code == 0, applied.err
    assert applied.argv("kubectl") == [[*delete, "--wait=true"], APPLY_TRAINING]
    dry = sandbox.run("train.sh", "--restart")
    assert dry.code == 0, dry.err
    assert dry.argv("kubectl") == [
        [*delete, "--dry-run=server"],
        [*APPLY_TRAINING, "--dry-run=server"],
    ]


def test_train_logs_reads_the_committed_files_without_nox(sandbox: Sandbox) -> None:
    sandbox.fake("kubectl")
    result = sandbox.run("train.sh", "--logs")
    assert result.code == 0, result.err
    assert result.argv("kubectl") == [WAIT, FOLLOW, JOB_STATUS]
    assert result.argv("nox") == []


def test_train_logs_when_the_pods_do_not_start(sandbox: Sandbox) -> None:
    sandbox.fake("kubectl")
    result = sandbox.run("train.sh", "--logs", FAKE_KUBECTL_EXIT="1")
    assert result.code == 1
    assert result.err == (
        "error: the 2 pods of job aiprod-train did not all start within an hour; see: "
        "kubectl describe job aiprod-train --namespace aiprod\n"
    )
    assert result.argv("kubectl") == [WAIT]


def test_train_delete_keeps_the_volume(sandbox: Sandbox) -> None:
    sandbox.fake("kubectl")
    remove = [
        "delete",
        "--ignore-not-found",
        "-f",
        committed("training-job.yaml"),
        "-f",
        committed("training-service.yaml"),
        "-f",
        committed("training-config.yaml"),
    ]
    dry = sandbox.run("train.sh", "--delete")
    assert dry.code == 0, dry.err
    assert dry.argv("kubectl") == [[*remove, "--dry-run=server"]]
    assert (
        "dry run: nothing was deleted; add --apply to delete training job aiprod-train" in dry.out
    )
    applied = sandbox.run("train.sh", "--delete", "--apply")
    assert applied.argv("kubectl") == [remove]
    assert "the volume claim aiprod-train-workspace is kept" in applied.out


def test_train_staging_renders_into_a_temporary_folder(sandbox: Sandbox) -> None:
    sandbox.fake("nox", "kubectl")
    result = sandbox.run("train.sh", "--env", "staging", "--apply", "--no-follow")
    assert result.code == 0, result.err
    (nox_argv,) = result.argv("nox")
    assert nox_argv[:6] == ["-s", "deployment", "--", "render_manifests", "--env", "staging"]
    output = Path(nox_argv[nox_argv.index("--output") + 1])
    assert not output.exists(), "the temporary folder is removed on exit"
    (call,) = [c for c in result.calls if c["tool"] == "kubectl"]
    assert call["argv"][0] == "apply"
    assert call["argv"][2] == str(output / "training-volume.yaml")
    job = yaml.safe_load(call["files"][str(output / "training-job.yaml")])
    assert job["metadata"]["namespace"] == "aiprod-staging"
    assert "launched training job aiprod-train in aiprod-staging (2 nodes)" in result.out


def test_train_refuses_stale_committed_manifests(sandbox: Sandbox) -> None:
    sandbox.fake("nox", "kubectl")
    result = sandbox.run("train.sh", "--apply", FAKE_NOX_EXIT="1")
    assert result.code == 1
    assert "the committed manifests are not a fresh render of config/" in result.err
    assert result.argv("kubectl") == []


def test_train_without_kubectl_fails_clearly(sandbox: Sandbox) -> None:
    sandbox.fake("nox")
    result = sandbox.run("train.sh")
    assert result.code == 127
    assert result.err == (
        "error: kubectl not found; install it or run deploy/scripts/validate.sh for an offline check\n"
    )
    assert result.calls == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "error: unknown option: --bogus"),
        (["--env"], "error: --env needs a value"),
        (["--logs", "--restart"], "error: --restart and --no-follow go with a launch, not with --logs"),
        (["--delete", "--no-follow"], "error: --restart and --no-follow go with a launch, not with --delete"),
    ],
)  # fmt: skip
def test_train_rejects_bad_arguments(sandbox: Sandbox, args: list[str], message: str) -> None:
    sandbox.fake("nox", "kubectl")
    result = sandbox.run("train.sh", *args)
    assert result.code == 2
    assert message in result.err
    assert result.calls == []


# ------------------------------------------------------------------------------ image
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def final_stage(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (keyword, _) in enumerate(pairs) if keyword == "FROM"]
    return pairs[starts[-1] :]


def arg_default(pairs: list[tuple[str, str]], name: str) -> str:
    for keyword, rest in pairs:
        if keyword == "ARG" and rest.startswith(f"{name}="):
            return rest.split("=", 1)[1]
    raise AssertionError(f"no ARG {name}=... in the Dockerfile")


def test_image_builds_on_python_slim_with_cpu_torch_by_default() -> None:
    pairs = instructions(DOCKERFILE)
    assert arg_default(pairs, "PYTHON_IMAGE") == "python:3.11-slim"
    assert all(rest.startswith("${PYTHON_IMAGE}") for keyword, rest in pairs if keyword == "FROM")
    assert arg_default(pairs, "TORCH_INDEX_URL") == "https://download.pytorch.org/whl/cpu"
    runs = " ".join(rest for keyword, rest in pairs if keyword == "RUN")
    assert 'pip install "uv==${UV_VERSION}"' in runs
    for package in ("aiprod-core", "aiprod-pipelines", "aiprod-trainer"):
        assert f"./packages/{package}" in runs


def test_image_runs_as_non_root_with_a_healthcheck() -> None:
    stage = final_stage(instructions(DOCKERFILE))
    keywords = [keyword for keyword, _ in stage]
    users = [rest for keyword, rest in stage if keyword == "USER"]
    assert users, "the runtime stage must set USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("CMD")
    (healthcheck,) = [rest for keyword, rest in stage if keyword == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    assert "urllib.request" in healthcheck
    assert "curl" not in healthcheck
    (cmd,) = [rest for keyword, rest in stage if keyword == "CMD"]
    assert json.loads(cmd) == ["aiprod-serve"]


def test_image_exposes_the_configured_port() -> None:
    pairs = instructions(DOCKERFILE)
    assert ("EXPOSE", "${SERVING_PORT}") in final_stage(pairs)
    port = load_config(REPO / "config", env="production", environ={}).serving.port
    assert arg_default(pairs, "SERVING_PORT") == str(port)


def test_image_copies_no_secrets() -> None:
    pairs = instructions(DOCKERFILE)
    copied = [rest for keyword, rest in pairs if keyword in ("COPY", "ADD")]
    assert copied, "the Dockerfile copies the workspace"
    for rest in copied:
        assert not re.search(r"\.env|secret|token|\.pem|\.key\b|credentials", rest, re.I), rest
    for keyword, rest in pairs:
        if keyword in ("ARG", "ENV"):
            assert not re.search(r"TOKEN|SECRET|PASSWORD|API_KEY", rest), f"{keyword} {rest}"


def ignored(patterns: list[str], path: str) -> bool:
    """Whether a build-context path is excluded (dockerignore semantics, enough for these)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        forms = [pattern, pattern.removeprefix("**/")] if pattern.startswith("**/") else [pattern]
        if any(fnmatchcase(c, f) for c in candidates for f in forms):
            result = not negate
    return result


def test_build_context_excludes_secrets_weights_and_tool_folders() -> None:
    ignore_file = DOCKERFILE.with_name(DOCKERFILE.name + ".dockerignore")
    lines = ignore_file.read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for path in (
        ".env",
        "packages/aiprod-core/.env",
        ".env.production",
        ".git/HEAD",
        ".nox/tests/bin/python",
        ".venv/bin/python",
        "models/pretrained/aiprod-19b.safetensors",
        "outputs/video.mp4",
        "packages/aiprod-core/src/aiprod_core/__pycache__/x.cpython-311.pyc",
    ):
        assert ignored(patterns, path), f"{path} would be sent to the build"
    for path in (
        "pyproject.toml",
        "config/AIPROD.json",
        "config/env/production.yaml",
        "packages/aiprod-core/pyproject.toml",
        "packages/aiprod-core/README.md",
        "packages/aiprod-pipelines/src/aiprod_pipelines/__init__.py",
    ):
        assert not ignored(patterns, path), f"{path} is needed by the build"
