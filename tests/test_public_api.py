"""The public names are a promise: adding or removing one is a decision, made here."""

from __future__ import annotations

import scanner
import scanner.cli
import scanner.pipeline

PUBLIC = {
    "Assessment",
    "EvidenceConfig",
    "OutputError",
    "Pipeline",
    "Port",
    "PortSpecError",
    "PortState",
    "PortprobeError",
    "Proto",
    "Reason",
    "Result",
    "Scan",
    "ScanConfig",
    "ScanError",
    "ScanStats",
    "TargetError",
    "TargetFileError",
    "Timing",
    "UsageError",
    "__version__",
    "scan",
}


def test_the_package_exports_exactly_its_public_names() -> None:
    assert set(scanner.__all__) == PUBLIC
    for name in scanner.__all__:
        assert hasattr(scanner, name), name


def test_every_module_all_names_exist() -> None:
    for module in (scanner.cli, scanner.pipeline):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)


def test_exit_statuses_are_unique_and_diff_has_its_own() -> None:
    from scanner.cli import DiffStatus, ExitStatus

    assert len({int(s) for s in ExitStatus}) == len(ExitStatus)
    assert int(DiffStatus.CHANGED) == 1
    assert "CHANGED" not in ExitStatus.__members__
