"""Find the CALVIN scene assets (URDFs, meshes, textures, scene/camera/task YAML).

The assets are data, never copied into this repository. They are looked up, in order, at:
1. the `path` argument;
2. `$CALVIN_ENV_DATA` (or `$CALVIN_ENV_ROOT`);
3. an installed `calvin_env` package (its checkout holds `data/` and `conf/`);
4. `shared/calvin_env_data` next to (or above) the repository or the working directory.

Each location may be a calvin_env checkout or a folder laid out like one (`data/…`, `conf/…`), or the
`data` folder itself.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_parl.errors import ConfigError

__all__ = ["CalvinAssets", "find_calvin_assets"]

_MARKER = Path("calvin_table_D") / "urdf" / "calvin_table_D.urdf"


@dataclass(frozen=True)
class CalvinAssets:
    """Resolved asset folders: `data` holds the URDFs; `conf` the Hydra YAML (None when absent)."""

    data: Path
    conf: Path | None

    def yaml(self, *parts: str) -> dict[str, Any] | None:
        """Load `conf/<parts>` if the conf folder and the file exist."""
        if self.conf is None or not (self.conf.joinpath(*parts)).is_file():
            return None
        import yaml

        with open(self.conf.joinpath(*parts)) as f:
            return yaml.safe_load(f)


def _from_root(root: Path) -> CalvinAssets | None:
    root = root.expanduser()
    for data in (root / "data", root):
        if (data / _MARKER).is_file():
            conf = next((c for c in (data.parent / "conf", root / "conf") if c.is_dir()), None)
            return CalvinAssets(data=data.resolve(), conf=conf.resolve() if conf else None)
    return None


def _candidates() -> list[Path]:
    out: list[Path] = []
    for var in ("CALVIN_ENV_DATA", "CALVIN_ENV_ROOT"):
        if os.environ.get(var):
            out.append(Path(os.environ[var]))
    try:
        spec = importlib.util.find_spec("calvin_env")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        out.append(Path(spec.origin).resolve().parent.parent)  # <checkout>/calvin_env/__init__.py
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for parent in (start, *start.parents):
            out += [parent / "shared" / "calvin_env_data", parent.parent / "shared" / "calvin_env_data"]
    return out


def find_calvin_assets(path: str | os.PathLike | None = None) -> CalvinAssets:
    """Locate the CALVIN assets (see the module docstring for the search order)."""
    if path is not None:
        found = _from_root(Path(path))
        if found is None:
            raise ConfigError(f"no CALVIN assets under {path!s}: expected {_MARKER} in it or in its data/ folder")
        return found
    tried = []
    for cand in _candidates():
        found = _from_root(cand)
        if found is not None:
            return found
        tried.append(str(cand))
    raise ConfigError("could not find the CALVIN scene assets. Point $CALVIN_ENV_DATA at a calvin_env checkout "
                      "(git clone https://github.com/mees/calvin_env) or at a folder with its data/ and conf/; "
                      f"tried: {', '.join(dict.fromkeys(tried[:6]))} …")
