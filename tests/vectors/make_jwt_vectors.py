#!/usr/bin/env python3
"""Generate independent JWT test vectors for src/auth/jwt.rs.

Everything here is minted with PyJWT and `cryptography`, never with Tidings'
own code, so the Rust verifier is checked against a second implementation.

Usage (from the repository root):

    python3 -m venv target/pyjwt-venv
    target/pyjwt-venv/bin/pip install pyjwt cryptography
    target/pyjwt-venv/bin/python tests/vectors/make_jwt_vectors.py > tests/vectors/jwt.json

Keys are generated afresh on every run (only public keys and the HS256
secret are written out), so the output differs between runs; the committed
jwt.json is one run's output.

Output layout:

    keys:     name -> {kid, algorithm, material}   (a VerificationKey)
    policies: name -> {keys: [key names], audience, issuer, leeway_secs}
    tokens:   [{name, policy, token, expect: "ok" | "error",
                error (when refused), claims (expected, when accepted)}]
    bad_keys: [{name, key}]   keys a realm must refuse to load

Error names: Malformed, UnknownKey, AlgorithmNotAllowed, BadSignature,
Expired, NotYetValid, WrongAudience, WrongIssuer, MissingClaim:<claim>.
"""

import base64
import hashlib
import hmac
import json
import secrets
import sys

import datetime

import cryptography
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

# 2100-01-01T00:00:00Z and 2101-01-01T00:00:00Z: valid tokens expire then.
YEAR_2100 = 4102444800
YEAR_2101 = 4133980800
# 2020-09-13: long past.
PAST = 1600000000

ISSUER = "https://idp.example.test"
AUDIENCE = ["tidings-test", "tidings-other"]


def public_pem(private_key, fmt=serialization.PublicFormat.SubjectPublicKeyInfo):
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, fmt)
        .decode("ascii")
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def json_part(value) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def hs256_by_hand(header: dict, claims: dict, secret: bytes) -> str:
    """HS256 without PyJWT's guard, which (rightly) refuses a PEM as an HMAC
    secret: needed to build the key-confusion attack token."""
    signing_input = json_part(header) + "." + json_part(claims)
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)


def flip_char(token: str, index: int) -> str:
    """Replace one base64url character of the token with another one that
    keeps the segment decodable (index must not be a segment's last char)."""
    old = token[index]
    new = "A" if old != "A" else "B"
    return token[:index] + new + token[index + 1 :]


def self_signed_cert_pem(private_key) -> str:
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "tidings-test")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(private_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def bad_keys(rsa_key, rsa_pem, rsa_pkcs1_pem, ec_pem, ed_pem) -> list:
    """Key material that Verifier::new must refuse, each with a reason."""
    rsa_1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    p384 = ec.generate_private_key(ec.SECP384R1())
    rsa_private_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    cases = [
        ("rsa_1024_bits", "RS256", public_pem(rsa_1024)),
        ("rsa_private_key_pem", "RS256", rsa_private_pem),
        ("rsa_certificate_pem", "RS256", self_signed_cert_pem(rsa_key)),
        ("ec_key_as_rs256", "RS256", ec_pem),
        ("ed_key_as_rs256", "RS256", ed_pem),
        ("rsa_key_as_es256", "ES256", rsa_pem),
        ("rsa_pkcs1_as_es256", "ES256", rsa_pkcs1_pem),
        ("p384_key_as_es256", "ES256", public_pem(p384)),
        ("ed_key_as_es256", "ES256", ed_pem),
        ("ec_key_as_eddsa", "EdDSA", ec_pem),
        ("rsa_key_as_eddsa", "EdDSA", rsa_pem),
        ("garbage_pem", "EdDSA", "-----BEGIN PUBLIC KEY-----\nnot base64 at all!\n-----END PUBLIC KEY-----\n"),
        ("not_pem", "RS256", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ tidings@test"),
        ("rsa_pem_as_hs256_secret", "HS256", rsa_pem),
        ("short_hs256_secret", "HS256", "too-short"),
        ("empty_hs256_secret", "HS256", ""),
    ]
    return [
        {"name": name, "key": {"kid": name, "algorithm": alg, "material": material}}
        for name, alg, material in cases
    ]


def valid_claims(sub: str, **extra) -> dict:
    claims = {"sub": sub, "exp": YEAR_2100, "iat": PAST}
    claims.update(extra)
    return claims


def main() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    hs_secret = "hs_" + secrets.token_urlsafe(64)

    rsa_pem = public_pem(rsa_key)
    rsa_pkcs1_pem = public_pem(rsa_key, serialization.PublicFormat.PKCS1)
    ec_pem = public_pem(ec_key)
    ed_pem = public_pem(ed_key)

    keys = {
        "hs": {"kid": "hs-1", "algorithm": "HS256", "material": hs_secret},
        "rsa": {"kid": "rsa-1", "algorithm": "RS256", "material": rsa_pem},
        "rsa_pkcs1": {"kid": "rsa-pkcs1", "algorithm": "RS256", "material": rsa_pkcs1_pem},
        "ec": {"kid": "ec-1", "algorithm": "ES256", "material": ec_pem},
        "ed": {"kid": "ed-1", "algorithm": "EdDSA", "material": ed_pem},
        # The EC key registered under the kid the RSA tokens carry: only ES256
        # is allowed for that kid.
        "ec_as_rsa_kid": {"kid": "rsa-1", "algorithm": "ES256", "material": ec_pem},
        "ec_no_kid": {"kid": None, "algorithm": "ES256", "material": ec_pem},
    }
    all_keys = ["hs", "rsa", "rsa_pkcs1", "ec", "ed"]
    policies = {
        "all": {"keys": all_keys, "audience": None, "issuer": None, "leeway_secs": 0},
        "aud_iss": {"keys": all_keys, "audience": AUDIENCE, "issuer": ISSUER, "leeway_secs": 0},
        "rsa_only": {"keys": ["rsa"], "audience": None, "issuer": None, "leeway_secs": 0},
        "es256_for_rsa_kid": {"keys": ["ec_as_rsa_kid"], "audience": None, "issuer": None, "leeway_secs": 0},
        "es256_only_no_kid": {"keys": ["ec_no_kid"], "audience": None, "issuer": None, "leeway_secs": 0},
    }

    hs = hs_secret.encode("utf-8")
    tokens = []

    def ok(name, policy, token, claims):
        self_check(token, policy, claims)
        tokens.append({"name": name, "policy": policy, "token": token, "expect": "ok", "claims": claims})

    # The accepted vectors must also verify with PyJWT itself.
    verify_keys = {"HS256": hs, "RS256": rsa_key.public_key(), "ES256": ec_key.public_key(),
                   "EdDSA": ed_key.public_key()}

    def self_check(token, policy, claims):
        alg = jwt.get_unverified_header(token)["alg"]
        p = policies[policy]
        decoded = jwt.decode(token, verify_keys[alg], algorithms=[alg], audience=p["audience"],
                             issuer=p["issuer"], options={"verify_aud": p["audience"] is not None})
        assert decoded == claims, (decoded, claims)

    def err(name, policy, token, error):
        tokens.append({"name": name, "policy": policy, "token": token, "expect": "error", "error": error})

    def enc(claims, key, alg, kid=None, headers=None):
        h = dict(headers or {})
        if kid is not None:
            h["kid"] = kid
        return jwt.encode(claims, key, algorithm=alg, headers=h or None)

    # --- accepted -----------------------------------------------------------
    rich = valid_claims(
        "user-hs",
        roles=["admin", "editor"],
        topics=["news/*", "chat/room-1"],
        entitlements=["premium"],
        features=["beta"],
        tenant="acme",
        custom={"plan": "gold"},
    )
    ok("hs256_kid_roles_topics", "all", enc(rich, hs, "HS256", kid="hs-1"), rich)
    plain = valid_claims("user-hs-nokid")
    ok("hs256_no_kid", "all", enc(plain, hs, "HS256"), plain)

    c = valid_claims("user-rsa", roles=["viewer"], topics=["*"])
    ok("rs256_kid", "all", enc(c, rsa_key, "RS256", kid="rsa-1"), c)
    c = valid_claims("user-rsa-nokid")
    ok("rs256_no_kid", "all", enc(c, rsa_key, "RS256"), c)
    c = valid_claims("user-rsa-pkcs1")
    ok("rs256_kid_pkcs1_pem", "all", enc(c, rsa_key, "RS256", kid="rsa-pkcs1"), c)

    c = valid_claims("user-ec", topics=["orders/42"])
    ok("es256_kid", "all", enc(c, ec_key, "ES256", kid="ec-1"), c)
    c = valid_claims("user-ec-nokid")
    ok("es256_no_kid", "all", enc(c, ec_key, "ES256"), c)

    c = valid_claims("user-ed", roles=["moderator"])
    ok("eddsa_kid", "all", enc(c, ed_key, "EdDSA", kid="ed-1"), c)
    c = valid_claims("user-ed-nokid")
    ok("eddsa_no_kid", "all", enc(c, ed_key, "EdDSA"), c)

    c = valid_claims("user-aud", aud="tidings-test", iss=ISSUER)
    ok("aud_string_and_iss", "aud_iss", enc(c, rsa_key, "RS256", kid="rsa-1"), c)
    c = valid_claims("user-aud-list", aud=["someone-else", "tidings-other"], iss=ISSUER)
    ok("aud_array_one_match", "aud_iss", enc(c, hs, "HS256"), c)
    c = valid_claims("user-nbf-past", nbf=PAST)
    ok("nbf_in_past", "all", enc(c, ed_key, "EdDSA"), c)
    c = valid_claims("user-aud-unchecked", aud="whoever", iss="https://anyone.example")
    ok("aud_iss_unchecked_without_policy", "all", enc(c, hs, "HS256"), c)

    # --- refused -------------------------------------------------------------
    c = valid_claims("attacker")
    err("alg_none", "all", jwt.encode(c, None, algorithm="none"), "AlgorithmNotAllowed")
    err("alg_none_with_kid", "all", jwt.encode(c, None, algorithm="none", headers={"kid": "hs-1"}), "AlgorithmNotAllowed")

    # Key confusion: HS256 "signed" with the RSA public key's PEM text as the
    # HMAC secret. Named after the RSA key, refused for its algorithm; without
    # a kid it can only be tried against HS256 keys, whose secret differs;
    # against a realm with only the RSA key no key allows HS256 at all.
    c = valid_claims("attacker")
    rsa_pem_bytes = rsa_pem.encode("ascii")
    err("key_confusion_hs256_with_rsa_pem_kid", "all",
        hs256_by_hand({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, c, rsa_pem_bytes), "AlgorithmNotAllowed")
    err("key_confusion_hs256_with_rsa_pem_no_kid", "all",
        hs256_by_hand({"alg": "HS256", "typ": "JWT"}, c, rsa_pem_bytes), "BadSignature")
    err("key_confusion_hs256_with_rsa_pem_rsa_realm", "rsa_only",
        hs256_by_hand({"alg": "HS256", "typ": "JWT"}, c, rsa_pem_bytes), "AlgorithmNotAllowed")
    err("key_confusion_hs256_with_pkcs1_pem", "all",
        hs256_by_hand({"alg": "HS256", "typ": "JWT", "kid": "rsa-pkcs1"}, c, rsa_pkcs1_pem.encode("ascii")),
        "AlgorithmNotAllowed")

    good = enc(valid_claims("user-tamper"), rsa_key, "RS256", kid="rsa-1")
    sig_start = good.rindex(".") + 1
    err("rs256_signature_char_changed", "all", flip_char(good, sig_start + 20), "BadSignature")
    good = enc(valid_claims("user-tamper"), ec_key, "ES256", kid="ec-1")
    sig_start = good.rindex(".") + 1
    err("es256_signature_char_changed", "all", flip_char(good, sig_start + 20), "BadSignature")
    good = enc(valid_claims("user-tamper"), hs, "HS256", kid="hs-1")
    head, _payload, sig = good.split(".")
    forged_payload = json_part(valid_claims("admin"))
    err("hs256_payload_swapped", "all", head + "." + forged_payload + "." + sig, "BadSignature")
    err("rs256_signed_by_other_key", "all",
        enc(valid_claims("user-other"), rsa_other, "RS256", kid="rsa-1"), "BadSignature")
    err("rs256_signed_by_other_key_no_kid", "all",
        enc(valid_claims("user-other"), rsa_other, "RS256"), "BadSignature")
    err("hs256_wrong_secret", "all",
        enc(valid_claims("user-other"), secrets.token_bytes(64), "HS256", kid="hs-1"),
        "BadSignature")
    err("eddsa_signed_by_other_key", "all",
        enc(valid_claims("user-other"), ed25519.Ed25519PrivateKey.generate(), "EdDSA", kid="ed-1"),
        "BadSignature")

    c = valid_claims("user-expired", exp=PAST)
    err("hs256_expired", "all", enc(c, hs, "HS256", kid="hs-1"), "Expired")
    err("es256_expired", "all", enc(c, ec_key, "ES256", kid="ec-1"), "Expired")
    c = valid_claims("user-early", nbf=YEAR_2100, exp=YEAR_2101)
    err("nbf_in_future", "all", enc(c, rsa_key, "RS256", kid="rsa-1"), "NotYetValid")

    c = valid_claims("user-aud", aud="somebody-else", iss=ISSUER)
    err("wrong_aud", "aud_iss", enc(c, hs, "HS256"), "WrongAudience")
    c = valid_claims("user-aud", aud=["a", "b"], iss=ISSUER)
    err("wrong_aud_array", "aud_iss", enc(c, hs, "HS256"), "WrongAudience")
    c = valid_claims("user-aud", iss=ISSUER)
    err("missing_aud_when_required", "aud_iss", enc(c, hs, "HS256"), "MissingClaim:aud")
    c = valid_claims("user-iss", aud="tidings-test", iss="https://evil.example")
    err("wrong_iss", "aud_iss", enc(c, rsa_key, "RS256", kid="rsa-1"), "WrongIssuer")
    c = valid_claims("user-iss", aud="tidings-test")
    err("missing_iss_when_required", "aud_iss", enc(c, rsa_key, "RS256", kid="rsa-1"), "MissingClaim:iss")

    err("unknown_kid", "all", enc(valid_claims("user-kid"), hs, "HS256", kid="no-such-key"), "UnknownKey")
    c = {"sub": "user-noexp", "iat": PAST}
    err("missing_exp", "all", enc(c, hs, "HS256", kid="hs-1"), "MissingClaim:exp")
    c = {"exp": YEAR_2100}
    err("missing_sub", "all", enc(c, ed_key, "EdDSA", kid="ed-1"), "MissingClaim:sub")
    c = {"sub": "", "exp": YEAR_2100}
    err("empty_sub", "all", enc(c, hs, "HS256"), "MissingClaim:sub")
    c = {"sub": 42, "exp": YEAR_2100}
    err("sub_not_a_string", "all", enc(c, hs, "HS256"), "Malformed")
    c = {"sub": "user", "exp": "tomorrow"}
    err("exp_not_a_number", "all", enc(c, hs, "HS256"), "Malformed")
    c = valid_claims("user-roles", roles="admin")
    err("roles_not_an_array", "all", enc(c, hs, "HS256"), "Malformed")
    c = valid_claims("user-topics", topics=["ok", 7])
    err("topics_not_strings", "all", enc(c, hs, "HS256"), "Malformed")
    c = valid_claims("user-tenant", tenant=["acme"])
    err("tenant_not_a_string", "all", enc(c, hs, "HS256"), "Malformed")

    c = valid_claims("user-rsa")
    err("rs256_token_for_es256_kid", "es256_for_rsa_kid", enc(c, rsa_key, "RS256", kid="rsa-1"),
        "AlgorithmNotAllowed")
    err("rs256_token_es256_only_realm", "es256_only_no_kid", enc(c, rsa_key, "RS256"), "AlgorithmNotAllowed")
    err("hs512_not_allowed", "all", enc(valid_claims("user-hs512"), hs, "HS512", kid="hs-1"),
        "AlgorithmNotAllowed")
    err("ps256_not_allowed", "all", enc(valid_claims("user-ps256"), rsa_key, "PS256", kid="rsa-1"),
        "AlgorithmNotAllowed")
    err("es256_token_claiming_rsa_kid", "all", enc(valid_claims("user-ec"), ec_key, "ES256", kid="rsa-1"),
        "AlgorithmNotAllowed")

    out = {
        "generator": "tests/vectors/make_jwt_vectors.py",
        "pyjwt": jwt.__version__,
        "cryptography": cryptography.__version__,
        "keys": keys,
        "policies": policies,
        "tokens": tokens,
        "bad_keys": bad_keys(rsa_key, rsa_pem, rsa_pkcs1_pem, ec_pem, ed_pem),
    }
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
