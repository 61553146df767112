"""A signed C2PA manifest in every mp4 vasa writes: what made the video and how, bound to its bytes.

The manifest (c2pa-python, the Content Authenticity Initiative's library) says:
- `c2pa.actions.v2`: one `c2pa.created` action with the IPTC digital source type
  "trainedAlgorithmicMedia" (made by a trained model) and vasa as the software agent;
- `org.vasa.generation`: vasa's version, the motion model's sha256, where the motion came from
  ("speech" or "video"), and the frame watermark's id (or that the frames carry none).

Signing identity: the user's own key and certificate chain (`--sign-key/--sign-cert`, or the
VASA_SIGN_KEY / VASA_SIGN_CERT environment variables), else a local identity that vasa makes once per
user in its config folder (VASA_CONFIG_DIR, default ~/.config/vasa): an EC P-256 key and a certificate
from a CA made on the same machine. A local identity proves only that the file is unchanged since this
machine's vasa signed it; nobody else can tell who that was. A certificate from a CA that others trust
also says who signed. docs/provenance.md has the details.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from vasa.errors import VasaError

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
ASSERTION = "org.vasa.generation"
LOCAL_ORGANISATION = "vasa local identity (self-made, not verified by anyone)"
MIME = "video/mp4"
MIME_BY_SUFFIX = {".mp4": "video/mp4", ".m4v": "video/x-m4v", ".mov": "video/quicktime"}


def mime_of(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in MIME_BY_SUFFIX:
        raise VasaError(f"a signed C2PA manifest fits in .mp4 or .mov files, not {suffix or 'this file'} "
                        f"({Path(path).name})")
    return MIME_BY_SUFFIX[suffix]


def config_dir() -> Path:
    return Path(os.environ.get("VASA_CONFIG_DIR") or Path.home() / ".config" / "vasa")


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Identity:
    key_pem: bytes
    chain_pem: bytes  # the signing certificate first, then its issuers
    local: bool  # True for the local identity vasa made


def _c2pa():
    try:
        import c2pa
    except ImportError as error:  # a broken install: c2pa-python is a dependency
        raise VasaError(f"the C2PA library is missing ({error}); reinstall vasa") from error
    return c2pa


def load_identity(key_path: str | os.PathLike | None = None,
                  cert_path: str | os.PathLike | None = None) -> Identity:
    """The signing identity: the paths given, else VASA_SIGN_KEY/VASA_SIGN_CERT, else the local one."""
    key_path = key_path or os.environ.get("VASA_SIGN_KEY") or None
    cert_path = cert_path or os.environ.get("VASA_SIGN_CERT") or None
    if (key_path is None) != (cert_path is None):
        raise VasaError("signing needs both a key and a certificate chain (--sign-key and --sign-cert)")
    if key_path is None:
        return local_identity()
    pems = []
    for what, path in (("signing key", key_path), ("certificate chain", cert_path)):
        try:
            pems.append(Path(path).read_bytes())
        except OSError as error:
            raise VasaError(f"cannot read the {what} {path}: {error.strerror}") from error
        if b"-----BEGIN" not in pems[-1]:
            raise VasaError(f"the {what} {path} is not PEM")
    signing_algorithm(pems[0])  # a key C2PA cannot use fails here, before any work
    return Identity(pems[0], pems[1], local=False)


def local_identity() -> Identity:
    """This user's local identity, made on first use (key readable by the user alone)."""
    folder = config_dir() / "identity"
    key_file, chain_file = folder / "signing_key.pem", folder / "certificate_chain.pem"
    if not (key_file.exists() and chain_file.exists()):
        _make_local_identity(folder, key_file, chain_file)
    return Identity(key_file.read_bytes(), chain_file.read_bytes(), local=True)


def _make_local_identity(folder: Path, key_file: Path, chain_file: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=folder)
        probe.close()
    except OSError as error:
        raise VasaError(f"cannot write the local signing identity to {folder} ({error.strerror}): set "
                        "VASA_CONFIG_DIR to a writable folder, or sign with --sign-key/--sign-cert") from error
    now = datetime.datetime.now(datetime.timezone.utc)
    user = os.environ.get("USER") or "user"

    def name(common: str):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, LOCAL_ORGANISATION)])

    def certificate(subject, issuer, public_key, signing_key, ca: bool):
        usage = dict(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                     data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                     encipher_only=False, decipher_only=False)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
                   .add_extension(x509.KeyUsage(**usage), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
        if not ca:  # C2PA wants an end-entity certificate with a signing purpose
            builder = (builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                                             critical=False)
                       .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                           signing_key.public_key()), critical=False))
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate(name(f"vasa local CA of {user}"), name(f"vasa local CA of {user}"), ca_key.public_key(),
                     ca_key, ca=True)
    leaf = certificate(name(f"vasa on {user}'s machine"), ca.subject, key.public_key(), ca_key, ca=False)
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + ca.public_bytes(pem)
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    for path, data, mode in ((key_file, key_pem, 0o600), (chain_file, chain, 0o644)):
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)


def vasa_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vasa")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@dataclass(frozen=True)
class Claims:
    """What the manifest says about one video."""

    motion_source: str  # "speech" (generated from audio) or "video" (taken from a driving video)
    motion_model_sha256: str | None
    watermark_id: int | None  # None: the frames carry no watermark (--no-watermark)
    title: str = "vasa video"

    def manifest(self) -> dict:
        generation = {
            "vasa_version": vasa_version(),
            "motion_source": self.motion_source,
            "motion_model_sha256": self.motion_model_sha256,
            "watermark": "none" if self.watermark_id is None else f"vasa frame watermark, id {self.watermark_id:08x}",
        }
        agent = {"name": "vasa", "version": vasa_version()}
        action = {"action": "c2pa.created", "digitalSourceType": DIGITAL_SOURCE_TYPE, "softwareAgent": agent,
                  "description": "a talking face made from one portrait by vasa "
                                 + ("from speech" if self.motion_source == "speech" else "from a driving video")}
        return {"claim_generator_info": [agent], "title": self.title,
                "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [action]}},
                               {"label": ASSERTION, "data": generation}]}


def signing_algorithm(key_pem: bytes) -> bytes:
    """The C2PA signing algorithm for a PEM private key: ES256/384/512 for EC P-256/384/521, Ed25519,
    PS256 for RSA (C2PA signs RSA with PSS)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as error:
        raise VasaError(f"cannot read the signing key ({error}); it must be an unencrypted PEM private key") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": b"es256", "secp384r1": b"es384", "secp521r1": b"es512"}
        if key.curve.name in by_curve:
            return by_curve[key.curve.name]
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        return b"ed25519"
    elif isinstance(key, rsa.RSAPrivateKey):
        return b"ps256"
    raise VasaError(f"C2PA cannot sign with a {type(key).__name__.lstrip('_')} key: use EC P-256/384/521, "
                    "Ed25519 or RSA")


def sign(source: str | os.PathLike, destination: str | os.PathLike, claims: Claims, identity: Identity,
         mime: str = MIME) -> None:
    """Write `source` (an mp4 or mov) to `destination` with a signed manifest of `claims`."""
    c2pa = _c2pa()
    try:
        info = c2pa.C2paSignerInfo(signing_algorithm(identity.key_pem), identity.chain_pem, identity.key_pem, None)
        with c2pa.Signer.from_info(info) as signer, c2pa.Builder(claims.manifest()) as builder:
            with open(source, "rb") as src, open(destination, "w+b") as dst:
                builder.sign(signer, mime, src, dst)
    except c2pa.C2paError as error:
        raise VasaError(f"cannot sign the video's manifest: {error} (is the key the certificate's, "
                        "EC P-256 or another algorithm C2PA accepts?)") from error


# ---------------------------------------------------------------------------------------------------
# reading

# validation codes that say the file changed after signing (the others, such as an untrusted
# certificate or a skipped revocation check, say nothing about the bytes)
UNTRUSTED = "signingCredential.untrusted"


@dataclass
class ManifestReport:
    present: bool
    state: str  # "absent", "valid" (the bytes are as signed), "tampered", or "unreadable"
    failures: list[str] = field(default_factory=list)  # C2PA validation codes that failed
    signer: str | None = None  # the certificate's common name and organisation
    trust: str | None = None  # who vouches for the signer (see docs/provenance.md)
    claims: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"present": self.present, "state": self.state, "failures": self.failures, "signer": self.signer,
                "trust": self.trust, "claims": self.claims}


def read(path: str | os.PathLike) -> ManifestReport:
    """The manifest of the file at `path`, validated against its bytes."""
    c2pa = _c2pa()
    mime = MIME_BY_SUFFIX.get(Path(path).suffix.lower())
    if mime is None:  # vasa writes its manifests into .mp4 and .mov files only
        return ManifestReport(False, "absent")
    # nothing from the network: no remote manifests, no certificate revocation (OCSP) look-ups
    offline = c2pa.Context(c2pa.Settings.from_dict({"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}))
    try:
        with open(path, "rb") as f, c2pa.Reader(mime, f, context=offline) as reader:
            state = reader.get_validation_state() or ""
            results = reader.get_validation_results() or {}
            active = reader.get_active_manifest() or {}
    except c2pa.C2paError as error:
        if "ManifestNotFound" in type(error).__name__ or "no JUMBF" in str(error):
            return ManifestReport(False, "absent")
        return ManifestReport(True, "unreadable", [str(error)])
    failures = [item.get("code", "") for item in results.get("activeManifest", {}).get("failure", [])]
    changed = [code for code in failures if code != UNTRUSTED]
    report = ManifestReport(True, "tampered" if changed else "valid", failures)
    info = active.get("signature_info", {})
    report.signer = ", ".join(x for x in (info.get("common_name"), info.get("issuer")) if x) or None
    if state.lower() == "trusted":
        report.trust = "trusted: the certificate chains to a trust list"
    elif info.get("issuer") == LOCAL_ORGANISATION:
        report.trust = "local identity: proves the bytes are unchanged, not who signed"
    else:
        report.trust = "signer not on a trust list here"
    report.claims = _claims_of(active)
    return report


def _claims_of(active: dict) -> dict:
    claims: dict = {}
    for assertion in active.get("assertions", []):
        data = assertion.get("data", {})
        if assertion.get("label", "").startswith("c2pa.actions"):
            for action in data.get("actions", []):
                if action.get("digitalSourceType"):
                    claims["digital_source_type"] = action["digitalSourceType"].rsplit("/", 1)[-1]
                agent = action.get("softwareAgent")
                if isinstance(agent, dict):
                    claims["software"] = f"{agent.get('name', '?')} {agent.get('version', '')}".strip()
        elif assertion.get("label") == ASSERTION:
            claims.update(data)
    return claims
