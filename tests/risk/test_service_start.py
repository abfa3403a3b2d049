"""What stops the risk service at start, with a message that says why: a malformed
thresholds policy (``python -m services.risk`` exits 2 naming line and field), a policy
whose content changed under a version already used, and a missing audit key."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.risk import keys
from services.risk.app import StartupError, build_service
from services.risk.policy import POLICY_DIR, SHIPPED_VERSION
from services.runtime import RuntimeSettings
from tests.kit import drop_schema
from tests.risk.rig import environment, risk_settings

SHIPPED = POLICY_DIR / f"{SHIPPED_VERSION}.yaml"


def bad_policy(directory: Path, version: str, old: str, new: str) -> int:
    """A copy of the shipped policy as ``version`` with ``old`` replaced by ``new`` in the
    chem domain's default bands; returns the line number of the change (1-based)."""
    text = SHIPPED.read_text().replace(f"version: {SHIPPED_VERSION}", f"version: {version}")
    lines = text.splitlines()
    chem = next(i for i, line in enumerate(lines) if line.strip() == "chem:")
    at = next(i for i in range(chem, len(lines)) if lines[i].strip() == old)
    lines[at] = lines[at].replace(old, new)
    (directory / f"{version}.yaml").write_text("\n".join(lines) + "\n")
    return at + 1


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("high: 0.5", "high: 0.2", "domains.chem.default.high: the high bound (0.2) must be above"),
        ("high: 0.5", "hihg: 0.5", "domains.chem.default.hihg: Extra inputs are not permitted"),
    ],
    ids=["bands do not rise", "a misspelt field"],
)
def test_a_malformed_policy_stops_the_service_naming_line_and_field(
    settings: RuntimeSettings, tmp_path: Path, old: str, new: str, says: str
) -> None:
    line = bad_policy(tmp_path, "thresholds-bad", old, new)
    config = risk_settings(
        settings, tmp_path, risk_policy_dir=tmp_path, risk_policy_version="thresholds-bad"
    )
    ran = subprocess.run(
        [sys.executable, "-m", "services.risk"],
        env=environment(config),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 2, ran.stderr
    assert "risk: not started: invalid thresholds policy" in ran.stderr
    assert f"thresholds-bad.yaml: line {line}, column" in ran.stderr
    assert says in ran.stderr


async def test_a_policy_changed_under_a_used_version_stops_the_service(
    settings: RuntimeSettings, kafka: str, database: str, tmp_path: Path
) -> None:
    shutil.copy(SHIPPED, tmp_path / SHIPPED.name)
    config = risk_settings(settings, tmp_path, risk_policy_dir=tmp_path)
    keys.generate(config.risk_service_key_file)
    try:
        first = build_service(config)
        await first.open_database()  # records the version and its content
        await first.close()
        changed = SHIPPED.read_text().replace("reviewers_required: 2", "reviewers_required: 1")
        (tmp_path / SHIPPED.name).write_text(changed)
        second = build_service(config)
        with pytest.raises(StartupError, match="changed since it was first used"):
            await second.open_database()
        await second.close()
    finally:
        await drop_schema(config)


async def test_without_an_audit_key_the_service_does_not_start(
    settings: RuntimeSettings, database: str, tmp_path: Path
) -> None:
    config = risk_settings(settings, tmp_path)
    service = build_service(config)
    with pytest.raises(StartupError, match="audit keygen"):
        await service.open_database()
    await service.close()
