"""Password hashing with scrypt (parameters raised in 2.2.0)."""

import hashlib
import os

N, R, P = 2**15, 8, 1


def hash_password(password):
    salt = os.urandom(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, maxmem=64 * 1024 * 1024)
    return f"scrypt${N}${R}${P}${salt.hex()}${key.hex()}"
