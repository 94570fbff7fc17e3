"""Sites: where a template is deployed. One IM cloud credential plus the image, flavors and networks to use.

Sites come from the ``sites:`` mapping of the user's config file (``Settings.sites``)::

    sites:
      egi-cesnet:
        kind: egi                     # egi | openstack | opennebula | aws | dummy | other
        cloud_id: egi1                # the id of the cloud's line in the IM auth file
        image: "egi://cloud.cesnet.cz/ubuntu-22.04?vo.access.egi.eu"
        fe_instance_type: standard.large     # optional: flavor of the front-end
        wn_instance_type: standard.medium    # optional: flavor of the workers
        network:
          public: PUBLIC              # the front-end's public network: PUBLIC, <name>.PUBLIC or "<net>,<pool>";
                                      # null = no public IP
          private: my-private-net     # optional: the provider network of the workers
        availability_zone: nova       # optional
        description: CESNET via EGI   # optional

The built-in site ``local-sim`` targets the local IM's Dummy cloud (auth line ``id = sim; type = Dummy``); it
cannot be redefined. Sites of kind ``dummy`` get the project's stub types inlined (no remote import, no
interfaces) and no public network.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.errors import ConfigError, InputError
from provisioner.tosca.schema import brief, label_of

LOCAL_SIM = "local-sim"
KINDS: dict[str, tuple[str, ...]] = {
    # kind -> image URL schemes IM accepts for it
    "egi": ("egi://", "appdb://", "ost://"),
    "openstack": ("ost://",),
    "opennebula": ("one://",),
    "aws": ("aws://",),
    "dummy": (),
    "other": (),
}
_KEYS = {
    "kind", "cloud_id", "image", "fe_instance_type", "wn_instance_type", "network", "availability_zone",
    "description",
}  # fmt: skip
_NETWORK_KEYS = {"public", "private"}
_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9_-]{0,62})")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_IMAGE_RE = re.compile(r"[a-z][a-z0-9+.-]*://[^\s{}]+")
_FLAVOR_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
_NET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")
_PUBLIC_RE = re.compile(r"PUBLIC|[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}\.PUBLIC|[A-Za-z0-9_.:/-]+,[A-Za-z0-9_.:/-]+")


@dataclass(frozen=True)
class Site:
    """Where a cluster is deployed: the cloud (IM's id for it), the image and instance types, the networks."""

    name: str
    kind: str
    cloud_id: str
    image: str
    fe_instance_type: str | None = None
    wn_instance_type: str | None = None
    public_network: str | None = "PUBLIC"
    private_network: str | None = None
    availability_zone: str | None = None
    description: str = ""
    builtin: bool = False

    @property
    def inline_types(self) -> bool:
        """Whether the rendered document carries our stub types instead of importing GRyCAP's (Dummy clouds)."""
        return self.kind == "dummy"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "cloud_id": self.cloud_id,
            "image": self.image,
            "fe_instance_type": self.fe_instance_type,
            "wn_instance_type": self.wn_instance_type,
            "network": {"public": self.public_network, "private": self.private_network},
            "availability_zone": self.availability_zone,
            "description": self.description,
            "builtin": self.builtin,
        }


LOCAL_SIM_SITE = Site(
    name=LOCAL_SIM,
    kind="dummy",
    cloud_id="sim",
    image="dummy://local-sim/ubuntu-22.04",
    public_network=None,
    description="The local IM's simulated cloud (Dummy connector): no real VMs, no contextualization",
    builtin=True,
)
BUILTIN_SITES: dict[str, Site] = {LOCAL_SIM: LOCAL_SIM_SITE}


def known_sites(settings_sites: Mapping[str, Any] | None) -> list[str]:
    return sorted(set(BUILTIN_SITES) | {str(k) for k in (settings_sites or {})})


def resolve_site(name: str, settings_sites: Mapping[str, Any] | None) -> Site:
    """The site called ``name``: built in, or validated from the config file's ``sites:`` mapping."""
    sites = settings_sites or {}
    if not isinstance(sites, Mapping):
        raise ConfigError("must be a mapping of site name to site settings", field="sites")
    if name in BUILTIN_SITES:
        if name in sites:
            raise ConfigError(f"{name!r} is built in and cannot be redefined in the config file", field="sites")
        return BUILTIN_SITES[name]
    if name not in sites:
        known = known_sites(sites)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(
            f"unknown site {brief(name)}{hint}; known sites: {', '.join(known)}",
            field="--site",
            hint="define sites under `sites:` in the config file",
        )
    return site_from_config(name, sites[name])


def site_from_config(name: str, raw: Any) -> Site:
    """Validate one ``sites.<name>`` entry. Errors name the key: ``sites.egi-cesnet.image: ...``."""
    where = f"sites.{label_of(name)}"
    if not _NAME_RE.fullmatch(name):
        raise ConfigError("site names are lowercase letters, digits, '-' and '_' (at most 63)", field=where)
    if not isinstance(raw, Mapping):
        raise ConfigError("must be a mapping (kind, cloud_id, image, ...)", field=where)
    for key in raw:
        if key not in _KEYS:
            close = difflib.get_close_matches(str(key), sorted(_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown key{hint}; known keys: {', '.join(sorted(_KEYS))}", field=f"{where}.{key}")

    kind = raw.get("kind", "other")
    if kind not in KINDS:
        raise ConfigError(f"must be one of {', '.join(KINDS)}, got {brief(kind)}", field=f"{where}.kind")
    cloud_id = _text(raw, "cloud_id", where, _ID_RE, "an IM auth-file id (letters, digits, '_', '.', '-')")
    if cloud_id is None:
        raise ConfigError("is required: the id of the cloud's line in the IM auth file", field=f"{where}.cloud_id")
    image = _text(raw, "image", where, _IMAGE_RE, "an image URL such as ost://host/image-id")
    if image is None:
        raise ConfigError("is required: the VM image URL (e.g. ost://host/image-id)", field=f"{where}.image")
    schemes = KINDS[kind]
    if schemes and not image.startswith(schemes):
        raise ConfigError(
            f"must start with {' or '.join(schemes)} for a site of kind {kind}, got {brief(image)}",
            field=f"{where}.image",
        )
    fe_type = _text(raw, "fe_instance_type", where, _FLAVOR_RE, "a flavor name")
    wn_type = _text(raw, "wn_instance_type", where, _FLAVOR_RE, "a flavor name")
    zone = _text(raw, "availability_zone", where, _ID_RE, "an availability zone name")
    description = raw.get("description", "")
    if not isinstance(description, str) or "\n" in description:
        raise ConfigError("must be a one-line string", field=f"{where}.description")

    network = raw.get("network", {})
    if network is None:
        network = {}
    if not isinstance(network, Mapping):
        raise ConfigError("must be a mapping with public and/or private", field=f"{where}.network")
    for key in network:
        if key not in _NETWORK_KEYS:
            raise ConfigError("unknown key; known keys: public, private", field=f"{where}.network.{key}")
    default_public = None if kind == "dummy" else "PUBLIC"
    public = network.get("public", default_public)
    if public is not None and (not isinstance(public, str) or not _PUBLIC_RE.fullmatch(public)):
        raise ConfigError(
            f'must be PUBLIC, "<name>.PUBLIC", "<net>,<pool>" or null, got {brief(public)}',
            field=f"{where}.network.public",
        )
    if public is not None and kind == "dummy":
        raise ConfigError(
            "must be null for a dummy site (the Dummy cloud gives no public IPs)", field=f"{where}.network.public"
        )
    private = network.get("private")
    if private is not None and (
        not isinstance(private, str) or not _NET_RE.fullmatch(private) or private.endswith("PUBLIC")
    ):
        raise ConfigError(f"must be a private network name, got {brief(private)}", field=f"{where}.network.private")

    return Site(
        name=name,
        kind=kind,
        cloud_id=cloud_id,
        image=image,
        fe_instance_type=fe_type,
        wn_instance_type=wn_type,
        public_network=public,
        private_network=private,
        availability_zone=zone,
        description=description,
    )


def _text(raw: Mapping[str, Any], key: str, where: str, pattern: re.Pattern[str], what: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConfigError(f"must be {what}, got {brief(value)}", field=f"{where}.{key}")
    return value
