"""Each VM's domain XML, saved per site in the state directory, so the other site can
define it when the site it runs at is gone.

    STATE_DIR/xml/CLUSTER/VM/SITE.xml    the definition for SITE (mapped for it)
    STATE_DIR/xml/CLUSTER/VM/SITE.json   when, from which site, digests, what was mapped

Saving takes the definition where the VM runs (after every successful migration, and on
`drorch vm sync-xml`) and writes it for every site: as-is for that site, and mapped
(`xmlmap.for_site`: disk sources, networks, libvirt/migration URIs) for the other. A saved
copy is stale when the definition at the site it was saved from no longer matches it.
"""

from __future__ import annotations

import hashlib
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

from drorch.model.types import VM, Cluster
from drorch.virt.base import HypervisorError
from drorch.virt.xmlmap import for_site


def digest(xml: str) -> str:
    """A digest of the XML's meaning (canonical form: attribute order, quoting and
    whitespace between elements do not count)."""
    try:
        canonical = ET.canonicalize(xml, strip_text=True)
    except ET.ParseError:
        canonical = xml
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class SavedXML:
    """One saved definition: for `site`, made from the definition at `from_site`."""

    vm: str
    site: str
    path: str
    saved_at: float
    from_site: str
    source_digest: str  # the definition at from_site when it was saved
    changes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "changes": list(self.changes)}


class XMLStore:
    def __init__(self, state_dir: Path, cluster: Cluster, base_dir: Path | None = None) -> None:
        self.root = Path(state_dir) / "xml" / cluster.name
        self.cluster = cluster
        self.base_dir = base_dir

    def path(self, vm: VM, site: str) -> Path:
        return self.root / vm.name / f"{site}.xml"

    def save(self, vm: VM, from_site: str, xml: str, now: float) -> list[SavedXML]:
        """Save the definition `xml` found at `from_site` for every site; returns what was
        written. Each file is replaced atomically."""
        source = digest(xml)
        saved: list[SavedXML] = []
        for site in self.cluster.sites:
            changes: list[str] = []
            if site.name == from_site:
                text = xml
            else:
                text, changes = for_site(xml, self.cluster, vm, from_site, site.name, self.base_dir)
            record = SavedXML(
                vm.name, site.name, str(self.path(vm, site.name)), now, from_site, source,
                tuple(changes),
            )  # fmt: skip
            self._write(self.path(vm, site.name), text)
            self._write(self.path(vm, site.name).with_suffix(".json"), json.dumps(record.as_dict()))
            saved.append(record)
        return saved

    def get(self, vm: VM, site: str) -> SavedXML | None:
        """The saved copy for `site`, or None. A torn or foreign record is an error."""
        meta = self.path(vm, site).with_suffix(".json")
        if not meta.is_file() or not self.path(vm, site).is_file():
            return None
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
            return SavedXML(
                vm=str(data["vm"]),
                site=str(data["site"]),
                path=str(self.path(vm, site)),
                saved_at=float(data["saved_at"]),
                from_site=str(data["from_site"]),
                source_digest=str(data["source_digest"]),
                changes=tuple(str(c) for c in data.get("changes", [])),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HypervisorError(f"saved XML record {meta} is unreadable: {exc}") from None

    def read(self, vm: VM, site: str) -> tuple[str, SavedXML] | None:
        record = self.get(vm, site)
        if record is None:
            return None
        try:
            return Path(record.path).read_text(encoding="utf-8"), record
        except OSError as exc:
            raise HypervisorError(f"saved XML {record.path}: {exc.strerror or exc}") from None

    @staticmethod
    def _write(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
