"""Multi-device tests: 8 simulated CPU devices, so they run in a process of their own.

``tests/run.sh`` runs them as ``LADAM_MULTIDEVICE=1 python -m pytest tests/multidevice``;
a plain ``pytest tests`` leaves them out (they need the device count set before JAX starts).
"""

import os

import jax

MULTIDEVICE = os.environ.get("LADAM_MULTIDEVICE") == "1"
collect_ignore_glob = [] if MULTIDEVICE else ["test_*.py"]

if MULTIDEVICE:
    jax.config.update("jax_num_cpu_devices", 8)


def pytest_report_header(config):
    if not MULTIDEVICE:
        return (
            "tests/multidevice left out: `LADAM_MULTIDEVICE=1 python -m pytest tests/multidevice`"
        )
    return f"multi-device tests on {jax.device_count()} simulated CPU devices"
