"""Stand-ins for the external base images the Dockerfile names, made from Debian packages.

No registry is reachable from CI, so every ``FROM`` that is not a stage of the Dockerfile itself
gets a stand-in of the same name: a Debian bookworm root filesystem made by ``mmdebstrap`` with
what those bases provide to the build (Python 3 with pip and venv, a JRE 17, CA certificates).
Each holds what its stage takes from the real base, nothing more, so the Dockerfile's own
steps (its ``apt-get install``) run as they would on the real one.

The one non-obvious decision: outbound TLS on the CI machines is re-signed by the certificates
in ``/usr/local/share/ca-certificates``, so pip in the build can reach PyPI only if the base
trusts them. They are copied into the stand-in when it is made, never into the Dockerfile: the
shipped image trusts exactly what its real base trusts. The stand-in's tarball is cached, keyed
by a hash of its recipe and of those certificates, so a second run on the same machine skips
``mmdebstrap`` (about 40 s and 450 MB of packages).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from h2o_k8s_discovery.jvm.jar import default_cache_dir
from tests.image.engines import Docker, run

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
#: What each real base gives the stages built on it, by the image's name. ``python:*`` holds
#: python3 with pip and venv, and installs into its interpreter; ``eclipse-temurin:*`` a JRE 17
#: (the final stage installs python3 itself, so this stand-in leaves it out and the Dockerfile's
#: apt-get step really runs). An unknown base gets both.
RECIPES = {
    "python": ("ca-certificates", "python3", "python3-pip", "python3-venv", "python-is-python3"),
    "eclipse-temurin": ("ca-certificates", "openjdk-17-jre-headless"),
}
HOST_CAS = Path("/usr/local/share/ca-certificates")
#: The image config the real bases set and the Dockerfile relies on (``ENV PATH=...:$PATH``).
CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
)


def external_bases(dockerfile: Path) -> list[str]:
    """The images named by ``FROM`` that are neither a stage of the file nor ``scratch``."""
    stages: set[str] = set()
    bases: list[str] = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if len(words) < 2 or words[0].upper() != "FROM":
            continue
        image = next(word for word in words[1:] if not word.startswith("--"))
        lowered = [word.lower() for word in words]
        if "as" in lowered:
            stages.add(words[lowered.index("as") + 1])
        # ``FROM jar-${ARG}`` names a stage through a build argument.
        if image in stages or image == "scratch" or "$" in image or image in bases:
            continue
        bases.append(image)
    return bases


def _certificates() -> list[Path]:
    return sorted(HOST_CAS.glob("*.crt")) if HOST_CAS.is_dir() else []


def _hooks(certificates: list[Path]) -> list[str]:
    hooks = []
    if certificates:
        copied = " ".join(str(cert) for cert in certificates)
        hooks += [
            f"copy-in {copied} {HOST_CAS}/",
            'chroot "$1" update-ca-certificates',
        ]
    # The official python images install into the system interpreter; Debian forbids that
    # (PEP 668) unless the marker goes.
    hooks.append('rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED')
    return hooks


@dataclass(frozen=True)
class StandIn:
    """One stand-in root filesystem, as a tarball in the cache."""

    tarball: Path
    recipe: tuple[str, ...]

    @classmethod
    def for_base(cls, name: str, cache_dir: Path | None = None) -> StandIn:
        """The stand-in for the base image ``name`` (``repository:tag``)."""
        repository = name.rpartition(":")[0] or name
        packages = RECIPES.get(repository) or tuple(
            sorted({p for r in RECIPES.values() for p in r})
        )
        certificates = _certificates()
        recipe = (
            "mmdebstrap",
            "--variant=apt",
            f"--include={','.join(packages)}",
            *(f"--customize-hook={hook}" for hook in _hooks(certificates)),
            SUITE,
        )
        digest = hashlib.sha256(json.dumps([recipe, CHANGES]).encode())
        for cert in certificates:
            digest.update(cert.read_bytes())
        directory = (cache_dir or default_cache_dir()) / "image-stand-ins"
        return cls(directory / f"{SUITE}-{repository}-{digest.hexdigest()[:16]}.tar", recipe)

    def ensure(self) -> bool:
        """Make the tarball unless cached; ``True`` when it was made now."""
        if self.tarball.is_file():
            return False
        self.tarball.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.tarball.parent) as tmp:
            partial = Path(tmp) / self.tarball.name
            run([*self.recipe, str(partial), MIRROR], timeout=900)
            partial.rename(self.tarball)
        return True

    def load_into(self, docker: Docker, name: str) -> None:
        """Import the tarball as the image ``name``."""
        changes = [arg for change in CHANGES for arg in ("--change", change)]
        docker("import", *changes, str(self.tarball), name, timeout=600)


def stand_ins(dockerfile: Path, cache_dir: Path | None = None) -> dict[str, StandIn]:
    """A stand-in for every external base of ``dockerfile``, by the name it replaces."""
    return {name: StandIn.for_base(name, cache_dir) for name in external_bases(dockerfile)}


def prune(keep: list[StandIn]) -> None:
    """Remove cached tarballs of recipes no longer used (a changed recipe or certificate)."""
    for directory in {stand_in.tarball.parent for stand_in in keep}:
        for tarball in directory.glob(f"{SUITE}-*.tar"):
            if tarball not in {stand_in.tarball for stand_in in keep}:
                tarball.unlink()
