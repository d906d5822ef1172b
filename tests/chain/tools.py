"""Fetch the test chain's tools into a cache outside the repository, once.

Three things come from package registries, each pinned to an exact version that was checked to work:

- anvil (Foundry's local Ethereum node) from npm as ``@foundry-rs/anvil``; the binary ships inside
  the per-platform package ``@foundry-rs/anvil-<os>-<arch>``, so ``--ignore-scripts`` loses nothing.
- Aave V3.2 foundry artifacts (ABI, bytecode, link references) from the ``web3-ethereum-defi``
  wheel on PyPI. The package itself pins web3 < 8 and drags in ~70 dependencies, so the wheel is
  only downloaded (``--no-deps``) and the ``eth_defi/abi/aave_v3/*.json`` files are unpacked.
- solc-js (the Solidity compiler built to JavaScript) from npm as ``solc``: it compiles our own test
  contracts in ``contracts/`` (``scripts/build_contracts.mjs``); its compiler is inside the package.

The cache lives in ``$BASIS_LIVE_TEST_CACHE`` or ``~/.cache/basis-live-tests``, never in the work
tree: the Aave core contracts are BUSL-1.1 and their bytecode must not be committed. Each install
goes to a temporary directory renamed into place when complete, under a file lock, so an
interrupted or concurrent run never sees half an install; a warm cache costs a few ``stat`` calls.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

ANVIL_NPM_PACKAGE = "@foundry-rs/anvil"
ANVIL_VERSION = "1.7.1"
ETH_DEFI_DIST = "web3-ethereum-defi"
ETH_DEFI_VERSION = "1.2"  # the only 1.2.x release on PyPI; its artifacts are Aave v3.2
AAVE_ARTIFACT_PREFIX = "eth_defi/abi/aave_v3/"
SOLC_NPM_PACKAGE = "solc"
SOLC_VERSION = "0.8.28"  # also pinned in scripts/build_contracts.mjs, which refuses any other

#: (platform.system(), platform.machine()) -> suffix of the npm package carrying the anvil binary.
_ANVIL_PLATFORMS = {
    ("Linux", "x86_64"): "linux-amd64",
    ("Linux", "aarch64"): "linux-arm64",
    ("Darwin", "x86_64"): "darwin-amd64",
    ("Darwin", "arm64"): "darwin-arm64",
}

_INSTALL_TIMEOUT_S = 300


class ToolUnavailable(RuntimeError):
    """A tool the chain tests need cannot be installed here; the message says what to do."""


def cache_dir() -> Path:
    """The directory holding every downloaded tool, created on first use."""
    root = os.environ.get("BASIS_LIVE_TEST_CACHE") or Path.home() / ".cache" / "basis-live-tests"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _install_lock(name: str) -> Iterator[None]:
    """Serialise installs of one tool across processes (parallel pytest runs share the cache)."""
    with open(cache_dir() / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolUnavailable(f"{what} timed out after {_INSTALL_TIMEOUT_S}s: {' '.join(cmd)}") from exc
    if result.returncode != 0:
        raise ToolUnavailable(
            f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n{result.stderr[-2000:]}"
        )
    return result


def _npm_install(what: str, spec: str, install_dir: Path, target: Path, verify: Callable[[Path], None]) -> None:
    """Install the npm package ``spec`` into ``install_dir`` unless ``target`` (what a complete
    install holds) is there: under a lock, into a staging directory that ``verify`` checks before it
    is renamed into place, so an interrupted or concurrent run never sees half an install."""
    if target.exists():
        return
    with _install_lock(what):
        if target.exists():  # another process installed it while this one waited
            return
        npm = shutil.which("npm")
        if npm is None:
            raise ToolUnavailable(
                f"npm is not on PATH: the chain tests install {what} from the npm registry ({spec}); "
                "install Node.js and npm (e.g. `apt-get install nodejs npm`) and run the tests again"
            )
        staging = Path(tempfile.mkdtemp(prefix=f".{what}-", dir=cache_dir()))
        try:
            # --ignore-scripts: no package needs its install hook (anvil's only checks that npm
            # picked the platform package from optionalDependencies, which it did).
            _run(
                [npm, "install", "--prefix", str(staging), "--ignore-scripts", "--no-audit",
                 "--no-fund", "--no-package-lock", spec],
                f"npm install of {what}",
            )
            verify(staging)
            staging.rename(install_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def ensure_anvil() -> Path:
    """Return the path of the pinned anvil binary, installing it from npm on first use."""
    key = (platform.system(), platform.machine())
    if key not in _ANVIL_PLATFORMS:
        raise ToolUnavailable(f"anvil has no npm build for {key[0]} {key[1]}")
    install_dir = cache_dir() / f"anvil-{ANVIL_VERSION}"
    binary = (
        install_dir / "node_modules" / f"{ANVIL_NPM_PACKAGE}-{_ANVIL_PLATFORMS[key]}" / "bin" / "anvil"
    )

    def verify(staging: Path) -> None:
        version = _run([str(staging / binary.relative_to(install_dir)), "--version"], "anvil --version").stdout
        if f"Version: {ANVIL_VERSION}" not in version:
            raise ToolUnavailable(f"npm installed an unexpected anvil: {version.strip()!r}")

    _npm_install("anvil", f"{ANVIL_NPM_PACKAGE}@{ANVIL_VERSION}", install_dir, binary, verify)
    return binary


def ensure_aave_artifacts() -> Path:
    """Return the directory of Aave V3 foundry artifacts (``<Contract>.json``), fetching on first use."""
    artifacts = cache_dir() / f"aave_v3-{ETH_DEFI_DIST}-{ETH_DEFI_VERSION}"
    if artifacts.is_dir():
        return artifacts
    with _install_lock("aave-artifacts"):
        if artifacts.is_dir():
            return artifacts
        staging = Path(tempfile.mkdtemp(prefix=".aave-", dir=cache_dir()))
        try:
            _run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "--disable-pip-version-check", "--dest", str(staging / "wheel"),
                 f"{ETH_DEFI_DIST}=={ETH_DEFI_VERSION}"],
                f"pip download of {ETH_DEFI_DIST}",
            )
            (wheel,) = (staging / "wheel").glob("*.whl")
            out = staging / "aave_v3"
            out.mkdir()
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    name = member[len(AAVE_ARTIFACT_PREFIX):]
                    if member.startswith(AAVE_ARTIFACT_PREFIX) and name.endswith(".json") and "/" not in name:
                        (out / name).write_bytes(archive.read(member))
            if not (out / "PoolInstance.json").is_file():
                raise ToolUnavailable(f"{wheel.name} has no Aave V3 artifacts under {AAVE_ARTIFACT_PREFIX}")
            out.rename(artifacts)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return artifacts


def ensure_solc() -> Path:
    """Return the directory of the pinned solc-js package (``.../node_modules/solc``), installing
    it from npm on first use. ``scripts/build_contracts.mjs --solc <this directory>`` compiles with it."""
    install_dir = cache_dir() / f"solc-{SOLC_VERSION}"
    package = install_dir / "node_modules" / SOLC_NPM_PACKAGE

    def verify(staging: Path) -> None:
        manifest = json.loads((staging / package.relative_to(install_dir) / "package.json").read_text())
        if manifest.get("version") != SOLC_VERSION:
            raise ToolUnavailable(f"npm installed an unexpected solc: {manifest.get('version')!r}")

    _npm_install("solc", f"{SOLC_NPM_PACKAGE}@{SOLC_VERSION}", install_dir, package / "package.json", verify)
    return package


if __name__ == "__main__":  # `python tests/chain/tools.py solc`: install and print where
    tools = {"anvil": ensure_anvil, "aave": ensure_aave_artifacts, "solc": ensure_solc}
    if len(sys.argv) != 2 or sys.argv[1] not in tools:
        sys.exit(f"usage: python {sys.argv[0]} {{{'|'.join(tools)}}}")
    print(tools[sys.argv[1]]())
