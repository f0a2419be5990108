"""signing.verify re-encodes the PKCS#1 v1.5 DigestInfo instead of calling cryptography's verify: it must
reach the same verdict on valid, bit-flipped and wrong-hash signatures."""

from __future__ import annotations

import base64
import random

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from lifelink.alipay.signing import sign, verify


def test_verify_agrees_with_cryptography_on_valid_tampered_and_wrong_hash_signatures():
    rng = random.Random(20261124)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key()
    verdicts = {True: 0, False: 0}
    for i in range(200):
        data = rng.randbytes(rng.randint(0, 300))
        raw = bytearray(base64.b64decode(sign(data, key)))
        if i % 2:
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        if i % 7 == 0:
            raw = bytearray(key.sign(data, padding.PKCS1v15(), hashes.SHA1()))  # noqa: S303 - must be refused
        try:
            public.verify(bytes(raw), data, padding.PKCS1v15(), hashes.SHA256())
            expected = True
        except InvalidSignature:
            expected = False
        assert verify(data, base64.b64encode(bytes(raw)).decode(), public) is expected
        verdicts[expected] += 1
    assert verdicts[True] > 50 and verdicts[False] > 50
