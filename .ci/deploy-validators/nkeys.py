"""Prints throwaway NATS user public keys, valid in form (prefix, CRC), for
checking configurations that expect them. No seed exists for them.

    python nkeys.py env   ->  ROUTING_ENGINE_NKEY=U... OPERATOR_MANAGEMENT_NKEY=U... ...
"""

import base64
import os
import sys

NAMES = ["ROUTING_ENGINE_NKEY", "OPERATOR_MANAGEMENT_NKEY", "JETSTREAM_ADMIN_NKEY"]
USER_PREFIX = 20 << 3


def crc16(data):
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def public_key():
    raw = bytes([USER_PREFIX]) + os.urandom(32)
    crc = crc16(raw)
    return base64.b32encode(raw + crc.to_bytes(2, "little")).decode().rstrip("=")


if __name__ == "__main__":
    if sys.argv[1:] != ["env"]:
        sys.exit(__doc__)
    print(" ".join(f"{name}={public_key()}" for name in NAMES))
