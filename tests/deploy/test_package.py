"""What `pip install .` installs: the package and the contract's schemas, found without I2ES_SCHEMA_DIR."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from gateway.settings import PROJECT_ROOT


def test_the_wheel_carries_the_schemas_where_the_settings_look_for_them(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
         str(PROJECT_ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("i2es_gateway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = "i2es_gateway-0.1.0.data/data/share/i2es/schemas"
    assert {f"{data}/envelope.xsd", f"{data}/authorization.xsd"} <= names
    assert {"gateway/py.typed", "gateway/rules/data/substances.csv", "adapters/py.typed", "certs/py.typed"} <= names
