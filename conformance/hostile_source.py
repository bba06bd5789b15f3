#!/usr/bin/env python3
"""pagewire hostile source: replays mutated valid migrations at a real `pagewire receive` and checks
how it takes them (issue 13, "Fuzzing"). Standard library only; the frames, the CRC32C and the receiver
process come from the conformance suite (pagewire_conformance.py, imported, not copied).

    python3 conformance/hostile_source.py [--cases N] [--seed S] [--case K] [--jobs J] -- ./pagewire receive --ram 64M

Each case builds a valid migration (PREAMBLE, HELLO with data digests, two JOINs; two rounds of PAGES,
a PAGE_LIST, ZERO_RUNs and ROUND_ENDs on two background connections; COMPLETE; after the
acknowledgement the agent's verification, `verify-begin` and `verify CRC`), applies 1 to 3 mutations
drawn from the case's own RNG (seeded from S and the case number, so `--seed S --case K` replays case K
alone), and plays the result at the receiver as a source would: handshake, then every connection's
frames at once, then, once COMPLETE is acknowledged, the verification. Mutations: bit flips, byte
inserts and deletes, truncation, frames duplicated, swapped, dropped or moved to another connection,
header fields set to extremes, HELLO and JOIN fields and CONTROL text changed; most recompute the
header CRC (and sometimes the data digest) afterwards, so that the validator, not the CRC, is what
refuses them. With `--auth mixed` (the default) the odd cases go to a receiver with `psk-file=`: the
source then authenticates (X25519 and HMAC-SHA256, as the document says) and what it computes during
the handshake (AUTH 3's proof, the JOINs' MACs) is mutated too.

Oracles, per case:
  - never a crash: the receiver stays up, prints no Java stack trace, no JVM fatal error;
  - never a hang: the handshake is answered (HELLO_ACK, AUTH or ERROR) within the handshake timeout, and once
    the source is gone every accepted migration ends (an outcome line) within seconds;
  - never success for a stream that is not a valid migration: a model of docs/wire-protocol.md decides
    from the bytes actually sent whether they make a valid migration (and with which RAM); `RECEIVED` for
    a stream it calls invalid, and `FAILED` for one it calls valid, are both failures (a stream whose
    fate depends on timing, e.g. a frame after COMPLETE, is left undecided);
  - clear refusals: an ERROR or FAILED text that is non-empty, escaped (no control characters) and not a
    bare Java exception name;
  - no RAM written outside the pages legitimately sent: the receiver (`--debug-ram-report`) lists every
    page that is not zero after the migration with its CRC32C; each must be a page that a frame with a
    valid header named, holding data that some frame sent for that very page (or, in a failed migration,
    such data up to some byte and zero after it: the page being written when it failed).

Before the cases, each receiver takes the unmutated stream (the control: RECEIVED verified, its RAM
exactly as sent). The receiver runs with `--debug-repeat` (one JVM takes migration after migration,
each by a new DestinationMigration into zeroed RAM: a JVM start per case would be the whole budget;
`--fresh` starts one per accepted migration and checks its exit status), `--quiet`, and
`handshake-timeout` on its listen URI. Exit status 0 when every case passed. docs/testing.md, "The
hostile source", says more.
"""

import argparse
import hashlib
import hmac
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ left in the work tree
import pagewire_conformance as pc  # noqa: E402  (the frames, CRC32C and Receiver: one implementation of the document)

from pagewire_conformance import (HELLO, HELLO_ACK, JOIN, PAGES, ZERO_RUN, SKIP_RUN, ROUND_END,  # noqa: E402
                                  COMPLETE, ERROR, CONTROL, HEARTBEAT, PAGE_LIST, PAGE, PAGES_IN_RAM, MAX_PAYLOAD,
                                  DATA_DIGEST, crc32c, frame, preamble, hello_payload, page_bytes)

HANDSHAKE_TIMEOUT_MS = 1000  # the receivers' handshake-timeout; twice that with psk-file= (the JVM's first X25519 is slow)
CHANNELS = 2
U64 = (1 << 64) - 1

# ---------------------------------------------------------------- page CRCs (cached: the base stream repeats)

_crc_cache = {}


def page_crc(data):
    c = _crc_cache.get(data)
    if c is None:
        c = crc32c(data)
        if len(_crc_cache) < 4096:
            _crc_cache[data] = c
    return c


def ram_crc(ram):
    """CRC32C of the whole region, given {page: bytes} for the pages that are not zero."""
    crc = 0
    at = 0
    for p in sorted(ram):
        crc = pc.crc32c_zeros(crc, (p - at) * PAGE)
        crc = crc32c(ram[p], crc)
        at = p + 1
    return pc.crc32c_zeros(crc, (PAGES_IN_RAM - at) * PAGE)


# ---------------------------------------------------------------- authentication (psk-file=): docs/wire-protocol.md

AUTH = 15
AUTH_LABEL = b"pagewire-auth-1"
HELLO_FLAG_AUTH = 8
X25519_SPKI = bytes.fromhex("302a300506032b656e032100")  # X.509 SubjectPublicKeyInfo of an X25519 key, before its 32 bytes
_P = 2 ** 255 - 19


def x25519(scalar, u):
    """RFC 7748's X25519 (the standard library has none): scalar and u-coordinate as 32 little-endian bytes."""
    k = bytearray(scalar)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    k = int.from_bytes(k, "little")
    x1 = int.from_bytes(u, "little") & ((1 << 255) - 1)
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in reversed(range(255)):
        bit = (k >> t) & 1
        if swap ^ bit:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = x2 + z2, x2 - z2
        aa, bb = a * a % _P, b * b % _P
        e = aa - bb
        c, d = x3 + z3, x3 - z3
        da, cb = d * a % _P, c * b % _P
        x3, z3 = (da + cb) ** 2 % _P, x1 * (da - cb) ** 2 % _P
        x2, z2 = aa * bb % _P, e * (aa + 121665 * e) % _P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, _P - 2, _P) % _P).to_bytes(32, "little")


assert x25519(bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
              bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")) \
    == bytes.fromhex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"), "RFC 7748 test vector"


def hmac256(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def auth_bytes(v):
    return struct.pack(">H", len(v)) + v


def auth1(nonce, private):
    """AUTH 1 with a pre-shared key: step 1, mode 1, reserved 0, nonce, X25519 key (SPKI), no chain."""
    return bytes([1, 1, 0, 0]) + auth_bytes(nonce) + auth_bytes(X25519_SPKI + x25519(private, (9).to_bytes(32, "little"))) \
        + struct.pack(">H", 0)


def parse_auth2(m):
    """@return (body without the proof, the destination's X25519 key, its proof); raises Hostile on a malformed one"""
    try:
        if m[:4] != bytes([2, 1, 0, 0]):
            raise Hostile("the destination's AUTH 2 starts %r, not step 2, mode 1 (pre-shared key)" % m[:4])
        at = 4
        n = struct.unpack_from(">H", m, at)[0]
        at += 2 + n
        n = struct.unpack_from(">H", m, at)[0]
        key = m[at + 2:at + 2 + n]
        at += 2 + n
        if struct.unpack_from(">H", m, at)[0] != 0:
            raise Hostile("the destination's AUTH 2 carries certificates with a pre-shared key")
        at += 2
        n = struct.unpack_from(">H", m, at)[0]
        proof = m[at + 2:at + 2 + n]
        if len(key) != 44 or key[:12] != X25519_SPKI or at + 2 + n != len(m):
            raise Hostile("the destination's AUTH 2 is malformed: %r" % m[:100])
        return m[:at], key[12:], proof
    except struct.error:
        raise Hostile("the destination's AUTH 2 is truncated: %r" % m[:100])


# ---------------------------------------------------------------- the valid stream

PHASES = ("handshake", "auth", "body", "verify")  # "auth": AUTH 3, sent once the destination's AUTH 2 came


class Chunk:
    """One unit a source writes at once: a preamble or a frame (perhaps mutated beyond recognition)."""

    def __init__(self, kind, data, live=False):
        self.kind = kind  # "preamble" or "frame"
        self.data = bytearray(data)
        # Live: its MAC or proof is computed during the handshake (authentication), so mutations of it are recorded
        # here, as functions of the chunk, and applied once it is complete.
        self.live = live
        self.later = []


class Stream:
    """A migration as bytes: for each phase, for each connection ("u", "b0", "b1"), the chunks in order."""

    def __init__(self):
        self.phases = {ph: {c: [] for c in self.conns()} for ph in PHASES}
        self.cut = {c: False for c in self.conns()}  # truncated: the connection is half-closed after its bytes
        self.mutations = []
        self.psk = None  # the pre-shared key, when the receiver authenticates
        self.session = 0
        self.hello = b""  # the HELLO payload as sent (after mutations): the transcript covers it
        self.nonce = b""
        self.private = b""  # this source's X25519 private key

    def live_mutated(self):
        return any(ch.later for ph in PHASES for c in self.conns() for ch in self.phases[ph][c])

    @staticmethod
    def conns():
        return ["u"] + ["b%d" % i for i in range(CHANNELS)]

    def add(self, phase, conn, kind, data, live=False):
        self.phases[phase][conn].append(Chunk(kind, data, live))

    def bytes_of(self, phase, conn):
        return b"".join(bytes(c.data) for c in self.phases[phase][conn])

    def signature(self):
        return {ph: {c: self.bytes_of(ph, c) for c in self.conns()} for ph in PHASES}


_base_cache = {}


def base_content():
    """The RAM the valid stream moves and the frames that move it (session-independent), computed once."""
    if "content" in _base_cache:
        return _base_cache["content"]
    body = {"b0": [], "b1": []}
    ram = {}
    # Round 0: pages 0..15 as two PAGES frames on b0, eight scattered pages as a PAGE_LIST on b1, zero runs elsewhere.
    r0 = {p: page_bytes(p, 0) for p in range(16)}
    body["b0"].append(frame(PAGES, 0, 0, 8, b"".join(r0[p] for p in range(8)), digest=True))
    body["b0"].append(frame(PAGES, 0, 8, 8, b"".join(r0[p] for p in range(8, 16)), digest=True))
    scattered = [40 + 3 * i for i in range(8)]
    for p in scattered:
        r0[p] = page_bytes(p, 0)
    body["b1"].append(frame(PAGE_LIST, 0, 0, len(scattered), b"".join(struct.pack(">Q", p) for p in scattered)
                            + b"".join(r0[p] for p in scattered), digest=True))
    ram.update(r0)
    runs = []
    start = None
    for p in range(PAGES_IN_RAM + 1):
        if p < PAGES_IN_RAM and p not in ram:
            if start is None:
                start = p
        elif start is not None:
            runs.append((start, p - start))
            start = None
    for i, (first, count) in enumerate(runs):
        body["b%d" % (i % 2)].append(frame(ZERO_RUN, 0, first, count))
    for c in body:
        body[c].append(frame(ROUND_END, first=0))
    # Round 1: three pages changed (sent on the other channel), one became zero.
    r1 = {p: page_bytes(p, 1) for p in (0, 1, 2, 43)}
    body["b1"].append(frame(PAGES, 0, 0, 3, r1[0] + r1[1] + r1[2], digest=True))
    body["b0"].append(frame(PAGE_LIST, 0, 0, 1, struct.pack(">Q", 43) + r1[43], digest=True))
    body["b1"].append(frame(ZERO_RUN, 0, 15, 1))
    ram.update(r1)
    del ram[15]
    for c in body:
        body[c].append(frame(ROUND_END, first=1))
    sent = {"b0": 17, "b1": 11}
    for c in body:
        body[c].append(frame(COMPLETE, count=sent[c]))
    _base_cache["content"] = (body, ram, ram_crc(ram))
    return _base_cache["content"]


def valid_stream(session, psk=None, rng=None):
    """The valid migration of session `session`; with `psk`, authenticated (its nonce and X25519 key from `rng`)."""
    body, ram, crc = base_content()
    s = Stream()
    s.session = session
    s.psk = psk
    s.add("handshake", "u", "preamble", preamble())
    flags = 1 | (HELLO_FLAG_AUTH if psk else 0)
    s.add("handshake", "u", "frame", frame(HELLO, payload=hello_payload(session, CHANNELS, flags=flags)))
    if psk:
        s.nonce = bytes(rng.getrandbits(8) for _ in range(32))
        s.private = bytes(rng.getrandbits(8) for _ in range(32))
        s.add("handshake", "u", "frame", frame(AUTH, payload=auth1(s.nonce, s.private)))
        s.add("auth", "u", "frame", frame(AUTH, payload=bytes([3, 1, 0, 0]) + auth_bytes(bytes(32))), live=True)
        s.phases["auth"]["u"][-1].channel = None
    for i in range(CHANNELS):
        s.add("handshake", "b%d" % i, "preamble", preamble())
        s.add("handshake", "b%d" % i, "frame", frame(JOIN, region=CHANNELS, first=session, count=i, payload=bytes(32) if psk else b""),
              live=bool(psk))
        s.phases["handshake"]["b%d" % i][-1].channel = i
    s.add("body", "u", "frame", frame(HEARTBEAT, first=12345))
    for c, frames in body.items():
        for f in frames:
            s.add("body", c, "frame", f)
    s.add("verify", "u", "frame", frame(CONTROL, payload=b"verify-begin"))
    s.add("verify", "u", "frame", frame(CONTROL, payload=("verify %x" % crc).encode()))
    return s


# ---------------------------------------------------------------- mutations

EXTREME_U64 = [0, 1, 2, PAGES_IN_RAM - 1, PAGES_IN_RAM, PAGES_IN_RAM + 1, 64, 65, 1 << 32, (1 << 63) - 1, 1 << 63, U64, U64 - 1]
EXTREME_U32 = [0, 1, 2, 7, 8, 4095, 4096, 4097, 65536, 65537, 1 << 20, (1 << 24) + 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
EXTREME_U16 = [0, 1, 2, 3, 4, 9, 13, 14, 15, 16, 0x100, 0x7FFF, 0xFFFF]


def fix_crc(ch, digest_too):
    d = ch.data
    if ch.kind != "frame" or len(d) < 32:
        return
    d[28:32] = struct.pack(">I", crc32c(bytes(d[:28])))
    if digest_too:
        flags = struct.unpack_from(">H", d, 2)[0]
        length = struct.unpack_from(">I", d, 24)[0]
        if flags & DATA_DIGEST and len(d) >= 32 + length + 4:
            d[32 + length:36 + length] = struct.pack(">I", crc32c(bytes(d[32:32 + length])))


def set_field(ch, offset, fmt, value):
    if len(ch.data) >= offset + struct.calcsize(fmt):
        struct.pack_into(fmt, ch.data, offset, value)


def pick_chunk(rng, s, phases, kind=None):
    """@return (phase, connection, index, chunk) of a random chunk of those phases (of that kind), or None"""
    options = [(ph, c, i, ch) for ph in phases for c in s.conns() for i, ch in enumerate(s.phases[ph][c])
               if (kind is None or ch.kind == kind) and not ch.live]  # live chunks: m_live
    return rng.choice(options) if options else None


def m_bitflip(rng, s, phases):
    where = pick_chunk(rng, s, phases)
    if not where:
        return None
    ph, c, i, ch = where
    fix = rng.random() < 0.6 and ch.kind == "frame"
    # Mostly the header (where the validator looks), sometimes anywhere.
    span = min(len(ch.data), 32) if rng.random() < 0.7 else len(ch.data)
    bits = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        bit = rng.randrange(span * 8)
        ch.data[bit // 8] ^= 1 << (bit % 8)
        bits.append(bit)
    if fix:
        fix_crc(ch, rng.random() < 0.5)
    return "bit flip %s at bits %s of %s %s[%d]%s" % (ph, bits, ch.kind, c, i, ", CRC recomputed" if fix else "")


def m_insert_delete(rng, s, phases):
    where = pick_chunk(rng, s, phases)
    if not where:
        return None
    ph, c, i, ch = where
    at = rng.randrange(len(ch.data) + 1)
    n = rng.choice([1, 1, 2, 4, 8, 32])
    if rng.random() < 0.5:
        ch.data[at:at] = bytes(rng.randrange(256) for _ in range(n))
        return "inserted %d bytes at %d of %s %s[%d]" % (n, at, ph, c, i)
    del ch.data[at:at + n]
    return "deleted %d bytes at %d of %s %s[%d]" % (n, at, ph, c, i)


def m_truncate(rng, s, phases):
    where = pick_chunk(rng, s, phases)
    if not where:
        return None
    ph, c, i, ch = where
    at = rng.randrange(len(ch.data))
    del ch.data[at:]
    del s.phases[ph][c][i + 1:]
    for later in PHASES[PHASES.index(ph) + 1:]:
        s.phases[later][c] = []
    s.cut[c] = True
    return "truncated %s at byte %d of %s[%d] (then end of stream)" % (c, at, ph, i)


def m_frames(rng, s, phases):
    """Duplicate, drop, swap or move whole frames."""
    where = pick_chunk(rng, s, phases, kind="frame")
    if not where:
        return None
    ph, c, i, _ = where
    lst = s.phases[ph][c]
    op = rng.choice(["dup", "drop", "swap", "move"] if ph == "body" else ["dup", "drop", "swap"])
    if op == "dup":
        j = rng.randrange(i, len(lst) + 1)
        lst.insert(j, Chunk("frame", lst[i].data))
        return "frame %s %s[%d] duplicated at %d" % (ph, c, i, j)
    if op == "drop":
        del lst[i]
        return "frame %s %s[%d] dropped" % (ph, c, i)
    if op == "swap":
        frames = [k for k, ch in enumerate(lst) if ch.kind == "frame"]
        j = rng.choice(frames)
        lst[i], lst[j] = lst[j], lst[i]
        return "frames %s %s[%d] and [%d] swapped" % (ph, c, i, j)
    other = rng.choice([x for x in s.conns() if x != c])
    dst = s.phases[ph][other]
    j = rng.randrange(len(dst) + 1)
    dst.insert(j, lst.pop(i))
    return "frame %s %s[%d] moved to %s[%d]" % (ph, c, i, other, j)


HEADER_FIELDS = [("type", 0, ">H", EXTREME_U16), ("flags", 2, ">H", [0, 1, 2, 3, 4, 0x80, 0x8000, 0xFFFF]),
                 ("region", 4, ">I", EXTREME_U32), ("first", 8, ">Q", EXTREME_U64), ("count", 16, ">Q", EXTREME_U64),
                 ("payload length", 24, ">I", EXTREME_U32)]


def m_header_field(rng, s, phases):
    where = pick_chunk(rng, s, phases, kind="frame")
    if not where:
        return None
    ph, c, i, ch = where
    name, off, fmt, values = rng.choice(HEADER_FIELDS)
    old = struct.unpack_from(fmt, ch.data, off)[0] if len(ch.data) >= off + struct.calcsize(fmt) else None
    if old is not None and rng.random() < 0.3:
        v = (old + rng.choice([-1, 1])) % (1 << (8 * struct.calcsize(fmt)))  # an off-by-one
    else:
        v = rng.choice(values)
    set_field(ch, off, fmt, v)
    fix_crc(ch, True)
    return "%s %s[%d]: %s %s -> %d, CRC recomputed" % (ph, c, i, name, old, v)


HELLO_FIELDS = [("session", 0, ">Q", EXTREME_U64), ("flags", 8, ">I", [0, 2, 3, 4, 8, 9, 16, 0x100, 0xFFFFFFFF]),
                ("chans", 12, ">H", [0, 1, 3, 64, 65, 0xFFFF]), ("regs", 14, ">H", [0, 2, 4096, 4097, 0xFFFF]),
                ("max payload", 16, ">I", [0, 511, 512, 4096, 12288, 1 << 24, (1 << 24) + 1, 0xFFFFFFFF]),
                ("heartbeat ms", 20, ">I", [0, 1, 2500, 2501, 4000, 0xFFFFFFFF]),
                ("peer timeout ms", 24, ">I", [0, 1, 2, 3600000, 3600001, 0xFFFFFFFF]),
                ("name len", 28, ">H", [0, 1, 5, 7, 255, 256, 0xFFFF]), ("name byte", 30, ">B", [0, 0x2E, 0x80, 0xC3, 0xFF]),
                ("region size", 36, ">Q", EXTREME_U64 + [64 << 20, (64 << 20) - 4096, (64 << 20) + 1]),
                ("page size", 44, ">I", [0, 1, 511, 512, 2048, 3000, 8192, 1 << 30, 0x80000000])]


def m_hello_join(rng, s, phases):
    if rng.random() < 0.6:
        chunks = [ch for ch in s.phases["handshake"]["u"] if ch.kind == "frame"]
        if not chunks:
            return None
        ch = chunks[0]
        name, off, fmt, values = rng.choice(HELLO_FIELDS)
        set_field(ch, 32 + off, fmt, rng.choice(values))
        fix_crc(ch, False)
        return "HELLO %s -> %d, CRC recomputed" % (name, struct.unpack_from(fmt, ch.data, 32 + off)[0]
                                                   if len(ch.data) >= 32 + off + struct.calcsize(fmt) else -1)
    c = rng.choice(s.conns()[1:])
    chunks = [ch for ch in s.phases["handshake"][c] if ch.kind == "frame" and not ch.live]
    if not chunks:
        return None
    ch = chunks[0]
    name, off, fmt, values = rng.choice([("channel count", 4, ">I", [0, 1, 3, 64, 65, 0xFFFFFFFF]),
                                         ("session", 8, ">Q", EXTREME_U64), ("channel index", 16, ">Q", [1, 2, 63, 64, U64])])
    v = rng.choice(values)
    set_field(ch, off, fmt, v)
    fix_crc(ch, False)
    return "JOIN on %s: %s -> %d, CRC recomputed" % (c, name, v)


def m_control(rng, s, phases):
    chunks = [(c, i) for c in s.conns() for i, ch in enumerate(s.phases["verify"][c]) if ch.kind == "frame"]
    if not chunks:
        return None
    c, i = rng.choice(chunks)
    ch = s.phases["verify"][c][i]
    text = bytes(ch.data[32:])
    choice = rng.choice(["digit", "append", "garbage", "empty", "unicode"])
    if choice == "digit" and len(text) > 8:
        k = rng.randrange(len(text))
        text = text[:k] + bytes([rng.choice(b"0123456789abcdefxyz -\n")]) + text[k + 1:]
    elif choice == "append":
        text += rng.choice([b" ", b"\n", b" 0", b"\x00", b" verify-begin", b"\x1b[2J"])
    elif choice == "garbage":
        text = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
    elif choice == "empty":
        text = b""
    else:
        text = "verify \u202e\u0000".encode()
    ch.data = bytearray(frame(CONTROL, payload=text))
    return "CONTROL %s[%d] -> %r" % (c, i, text[:60])


def m_page_list(rng, s, phases):
    """A PAGE_LIST index set to an extreme, a neighbour's value or out of order; digest (and CRC) recomputed."""
    lists = [(ph, c, i, ch) for ph in PHASES for c in s.conns() for i, ch in enumerate(s.phases[ph][c])
             if not ch.live and len(ch.data) >= 40 and struct.unpack_from(">H", ch.data, 0)[0] == PAGE_LIST]
    if not lists:
        return None
    ph, c, i, ch = rng.choice(lists)
    n = struct.unpack_from(">Q", ch.data, 16)[0]
    k = rng.randrange(max(1, min(n, (len(ch.data) - 32) // 8)))
    old = struct.unpack_from(">Q", ch.data, 32 + 8 * k)[0]
    neighbours = [struct.unpack_from(">Q", ch.data, 32 + 8 * j)[0] for j in (k - 1, k + 1) if 0 <= j < n]
    v = rng.choice(EXTREME_U64 + neighbours + [old - 1, old + 1])
    set_field(ch, 32 + 8 * k, ">Q", v & U64)
    fix_crc(ch, True)
    return "%s %s[%d]: PAGE_LIST index %d: %d -> %d, digest recomputed" % (ph, c, i, k, old, v & U64)


def m_live(rng, s, phases):
    """Mutations of what authentication computes during the handshake (AUTH 3's proof, a JOIN's MAC), applied then."""
    lives = [(ph, c, i, ch) for ph in PHASES for c in s.conns() for i, ch in enumerate(s.phases[ph][c]) if ch.live]
    if not lives:
        return None
    ph, c, i, ch = rng.choice(lives)
    op = rng.choice(["flip-mac", "flip-header", "field", "zero-mac", "reflect", "drop"])
    sub = random.Random(rng.getrandbits(64))  # drawn now, used then: the case stays replayable
    what = {"flip-mac": "a bit of its MAC/proof flipped", "flip-header": "a header bit flipped, CRC recomputed",
            "field": "a header field set to an extreme, CRC recomputed", "zero-mac": "its MAC/proof zeroed",
            "reflect": "the MAC/proof of another role (the destination's proof, another channel's JOIN MAC)", "drop": "not sent"}[op]

    def later(chunk, ctx):
        d = chunk.data
        if op == "flip-mac":
            bit = sub.randrange(32 * 8)
            d[len(d) - 32 + bit // 8] ^= 1 << (bit % 8)
        elif op == "flip-header":
            bit = sub.randrange(28 * 8)
            d[bit // 8] ^= 1 << (bit % 8)
            fix_crc(chunk, False)
        elif op == "field":
            name, off, fmt, values = sub.choice(HEADER_FIELDS)
            set_field(chunk, off, fmt, sub.choice(values))
            fix_crc(chunk, False)
        elif op == "zero-mac":
            d[len(d) - 32:] = bytes(32)
        elif op == "reflect":
            d[len(d) - 32:] = ctx["reflect"](chunk)
        else:
            return False
        return True

    ch.later.append(later)
    return "%s %s[%d] (computed in the handshake): %s" % (ph, c, i, what)


MUTATORS = [(m_bitflip, 25), (m_insert_delete, 8), (m_truncate, 8), (m_frames, 20), (m_header_field, 25),
            (m_hello_join, 9), (m_control, 5), (m_live, 6), (m_page_list, 4)]


def mutate(rng, s):
    n = rng.choice([1, 1, 1, 2, 2, 3])
    for _ in range(n):
        for _attempt in range(10):
            r = rng.randrange(sum(w for _, w in MUTATORS))
            for m, w in MUTATORS:
                if r < w:
                    break
                r -= w
            phases = rng.choices(PHASES, weights=[2, 1, 7, 1])
            what = m(rng, s, phases)
            if what:
                s.mutations.append(what)
                break
    return s


# ---------------------------------------------------------------- the model: what the bytes sent make, per the document

VALID, INVALID, UNKNOWN = "valid", "invalid", "undecided"


class Parsed:
    """A connection's bytes as frames: (type, flags, region, first, count, length, payload, digest_ok, whole, crc_ok)."""

    def __init__(self, data):
        self.frames = []
        self.trailing = False
        at = 0
        while at < len(data):
            if len(data) - at < 32:
                self.trailing = True
                return
            h = data[at:at + 32]
            t, fl, reg, first, count, length, crc = pc.HEADER.unpack(h)
            crc_ok = crc32c(h[:28]) == crc
            if not crc_ok:
                self.frames.append((t, fl, reg, first, count, length, b"", False, False, False))
                return
            end = at + 32 + length + (4 if fl & DATA_DIGEST else 0)
            payload = data[at + 32:at + 32 + length]
            whole = end <= len(data)
            dig_ok = whole and (not fl & DATA_DIGEST or crc32c(payload) == struct.unpack(">I", data[end - 4:end])[0])
            self.frames.append((t, fl, reg, first, count, length, payload, dig_ok, whole, True))
            if not whole:
                return
            at = end


def in_range(first, count):
    return count >= 1 and first < PAGES_IN_RAM and count <= PAGES_IN_RAM - first


def page_list_indices(payload, n):
    return [struct.unpack_from(">Q", payload, 8 * k)[0] for k in range(n) if 8 * k + 8 <= len(payload)]


def writable_pages(f):
    """Pages a frame with this header may write (a lenient reading: what no validator could blame on the receiver),
    as [(page, data or None when the frame was cut in its data)]."""
    t, fl, reg, first, count, length, payload, dig_ok, whole, crc_ok = f
    out = []
    if not crc_ok or reg != 0:
        return out
    if t == PAGES and in_range(first, count) and length == count * PAGE:
        for k in range(count):
            d = payload[k * PAGE:(k + 1) * PAGE]
            out.append((first + k, d if len(d) == PAGE else None))
    elif t == PAGE_LIST and 1 <= count <= 1024 and length == count * (PAGE + 8):
        idx = page_list_indices(payload, count)
        base = 8 * count
        for k, p in enumerate(idx):
            if p < PAGES_IN_RAM:
                d = payload[base + k * PAGE:base + (k + 1) * PAGE]
                out.append((p, d if len(d) == PAGE else None))
    return out


def allowed_writes(s):
    """{page: {CRC32C: data} of the pages sent for it, or None for 'any content' (a frame cut in its data)} from every
    frame of the body and verify phases whose header a receiver could have accepted; per connection up to its first
    broken header."""
    allowed = {}
    for c in s.conns():
        parsed = Parsed(s.bytes_of("body", c) + s.bytes_of("verify", c))
        for f in parsed.frames:
            for p, d in writable_pages(f):
                if d is None or not f[8]:
                    allowed[p] = None
                elif allowed.get(p, {}) is not None:
                    allowed.setdefault(p, {})[page_crc(bytes(d))] = bytes(d)
    return allowed


def expected_outcome(s, original):
    """What the document says the receiver must make of the bytes `s` sends: (VALID|INVALID|UNKNOWN, why, ram)."""
    sent = s.signature()
    if sent["handshake"] != original["handshake"] or sent["auth"] != original["auth"] or s.live_mutated():
        return UNKNOWN, "handshake mutated", None
    if s.cut["u"]:
        pass  # the urgent connection ends early: judged below by what it still carries
    rounds = {}  # connection -> list of round numbers
    per_round = []  # round index -> bytearray: 1 where a background frame of that round named the page
    ram_ops = []  # (round index, connection order, op)
    undecided = None
    for c in s.conns()[1:]:
        data = sent["body"][c] + sent["verify"][c]
        parsed = Parsed(data)
        r = 0
        rounds[c] = []
        pages_sent = 0
        completed = False
        for f in parsed.frames:
            t, fl, reg, first, count, length, payload, dig_ok, whole, crc_ok = f
            name = pc.NAMES.get(t, str(t))
            if completed:  # whatever it is, even bytes that are no frame
                undecided = "%s: a frame after COMPLETE (ignored or refused, by timing)" % c
                break
            if not crc_ok:
                return INVALID, "%s: header CRC" % c, None
            if not whole:
                return INVALID, "%s: stream ends inside a frame" % c, None
            if t not in (PAGES, ZERO_RUN, SKIP_RUN, ROUND_END, COMPLETE, ERROR, CONTROL, PAGE_LIST):
                return INVALID, "%s: %s frame on a background connection" % (c, name), None
            if fl != (DATA_DIGEST if t in (PAGES, PAGE_LIST) else 0):
                return INVALID, "%s: %s flags %#x" % (c, name, fl), None
            if t in (ZERO_RUN, SKIP_RUN, ROUND_END, COMPLETE) and length != 0:
                return INVALID, "%s: %s with a payload" % (c, name), None
            if t == ERROR:
                return INVALID, "%s: ERROR from the source" % c, None
            if t == CONTROL:
                if length > 65536:
                    return INVALID, "%s: CONTROL over 64 KiB" % c, None
                undecided = "%s: CONTROL on a background connection" % c
                continue
            if t in (PAGES, PAGE_LIST, ZERO_RUN, SKIP_RUN):
                if reg != 0:
                    return INVALID, "%s: region %d" % (c, reg), None
                if t == PAGES:
                    if not (in_range(first, count) and count <= MAX_PAYLOAD // PAGE and length == count * PAGE and dig_ok):
                        return INVALID, "%s: PAGES first %d count %d length %d digest %s" % (c, first, count, length, dig_ok), None
                    pages = list(range(first, first + count))
                    data_pages = [(p, payload[k * PAGE:(k + 1) * PAGE]) for k, p in enumerate(pages)]
                    pages_sent += count
                elif t == PAGE_LIST:
                    if not (1 <= count <= min(1024, MAX_PAYLOAD // (PAGE + 8)) and first == 0 and length == count * (PAGE + 8) and dig_ok):
                        return INVALID, "%s: PAGE_LIST first %d n %d length %d digest %s" % (c, first, count, length, dig_ok), None
                    pages = page_list_indices(payload, count)
                    if any(p >= PAGES_IN_RAM for p in pages) or any(b <= a for a, b in zip(pages, pages[1:])):
                        return INVALID, "%s: PAGE_LIST indices" % c, None
                    data_pages = [(p, payload[8 * count + k * PAGE:8 * count + (k + 1) * PAGE]) for k, p in enumerate(pages)]
                    pages_sent += count
                else:
                    if not in_range(first, count):
                        return INVALID, "%s: %s first %d count %d" % (c, name, first, count), None
                    pages = range(first, first + count)
                    data_pages = None
                while len(per_round) <= r:
                    per_round.append(bytearray(PAGES_IN_RAM))
                seen = per_round[r]
                if t in (ZERO_RUN, SKIP_RUN):
                    if 1 in seen[first:first + count]:
                        return INVALID, "%s: a page of %s [%d, +%d) twice in round %d" % (c, name, first, count, r), None
                    seen[first:first + count] = b"\x01" * count
                else:
                    for p in pages:
                        if seen[p]:
                            return INVALID, "%s: page %d twice in round %d" % (c, p, r), None
                        seen[p] = 1
                ram_ops.append((r, t, first, count, data_pages))
            elif t == ROUND_END:
                if first >= 1 << 63 or (rounds[c] and first <= rounds[c][-1]):
                    return INVALID, "%s: ROUND_END %d after %s" % (c, first, rounds[c][-1:]), None
                rounds[c].append(first)
                r += 1
            elif t == COMPLETE:
                if count != pages_sent:
                    return INVALID, "%s: COMPLETE count %d, %d pages sent" % (c, count, pages_sent), None
                completed = True
        if parsed.trailing:
            if completed:
                undecided = undecided or "%s: bytes after COMPLETE" % c
            else:
                return INVALID, "%s: stream ends inside a frame header" % c, None
        if not completed:
            return INVALID, "%s: no COMPLETE" % c, None
    if len(set(tuple(v) for v in rounds.values())) != 1:
        undecided = undecided or "the connections' round numbers differ (%s)" % rounds
    # The urgent connection: heartbeats in the body, the verification after the acknowledgement. It has no order against
    # the background connections: a violation there fails the migration only when the receiver reads it before it has
    # acknowledged COMPLETE (after that, the one verdict stands): undecided.
    body_u = Parsed(sent["body"]["u"])
    urgent_named = set()  # pages the urgent lane names (postcopy's lane: no round, no order with the background)
    for f in body_u.frames:
        t, fl, reg, first, count, length, payload, dig_ok, whole, crc_ok = f
        if not crc_ok or not whole:
            undecided = undecided or "u: a broken frame (read before or after the acknowledgement)"
            break
        if t == HEARTBEAT and fl == 0 and length == 0:
            continue
        undecided = undecided or "u: a %s frame on the urgent connection" % pc.NAMES.get(t, t)
        for p, _ in writable_pages(f):
            urgent_named.add(p)
        if t in (ZERO_RUN, SKIP_RUN) and reg == 0 and in_range(first, count):
            urgent_named.update(range(first, first + count))
    if body_u.trailing:
        undecided = undecided or "u: a partial header (completed by the next bytes: read before or after the acknowledgement)"
    # Every page named at least once.
    named = bytearray(PAGES_IN_RAM)
    for r, t, first, count, data_pages in ram_ops:
        if data_pages is not None:
            for p, _ in data_pages:
                named[p] = 1
        else:
            named[first:first + count] = b"\x01" * count
    for p in urgent_named:
        named[p] = 1
    if 0 in named:
        return INVALID, "page %d never sent" % named.index(0), None
    ram = {}
    for r, t, first, count, data_pages in sorted(ram_ops, key=lambda op: op[0]):
        if data_pages is not None:
            for p, d in data_pages:
                if d == bytes(PAGE):
                    ram.pop(p, None)
                else:
                    ram[p] = bytes(d)
        elif t == ZERO_RUN:
            for p in [p for p in ram if first <= p < first + count]:
                del ram[p]
    if urgent_named:
        return UNKNOWN, undecided, None  # urgent-lane pages have no order against the background's: the RAM is open
    if undecided:
        return UNKNOWN, undecided, ram
    if sent["verify"]["u"] != original["verify"]["u"]:
        return UNKNOWN, "verification messages mutated", ram
    body, base_ram, base_crc = base_content()
    if ram_crc(ram) != base_crc:
        return INVALID, "the RAM the stream makes differs from what the source's verify message claims", ram
    return VALID, "a valid migration", ram


# ---------------------------------------------------------------- playing a case


class Hostile(Exception):
    """A finding: the receiver did something the oracles forbid."""


BARE_EXCEPTION = re.compile(r"(NullPointer|IndexOutOfBounds|ClassCast|NegativeArraySize|Arithmetic|BufferUnderflow|BufferOverflow"
                            r"|IllegalMonitorState|ConcurrentModification|NumberFormat|UnsupportedOperation)Exception|^\s*null\s*$"
                            r"|^\s*$|java\.(lang|util|io|nio)\.[\w.]+(Exception|Error)")
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def check_text(what, text):
    if text is None:
        return
    if CONTROL_CHARS.search(text):
        raise Hostile("%s holds raw control characters: %r" % (what, text[:300]))
    if BARE_EXCEPTION.search(text):
        raise Hostile("%s is not a clear refusal: %r" % (what, text[:300]))


class Conn:
    def __init__(self, rx):
        self.s = rx.connect()
        self.lock = threading.Lock()

    def send(self, chunks):
        for ch in chunks:
            with self.lock:
                if not pc.send_quietly(self.s, bytes(ch.data)):
                    return False
        return True

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class Player:
    """One receiver (`--debug-repeat`), playing case after case; restarted when it dies. With `fresh`, a receiver takes
    one migration and exits (as `pagewire receive` does without the test hook), and its exit status is checked too."""

    def __init__(self, command, workdir, name, psk_file=None, fresh=False):
        self.command = command
        self.psk_file = psk_file
        self.fresh = fresh
        self.handshake_ms = HANDSHAKE_TIMEOUT_MS * (2 if psk_file else 1)
        self.late = False  # the last handshake's source side took more than half the handshake timeout
        self.report = os.path.join(workdir, "ram-report-%s.jsonl" % name)
        self.rx = None
        self.migrations = 0

    def receiver(self):
        if self.rx is None or self.rx.proc.poll() is not None:
            if os.path.exists(self.report):
                os.unlink(self.report)
            self.rx = pc.Receiver(self.command, ["--debug-repeat", "1" if self.fresh else "1000000000", "--debug-ram-report", self.report,
                                                 "--quiet"],
                                  listen="tcp://127.0.0.1:0?handshake-timeout=%d%s" % (
                                      self.handshake_ms, "&psk-file=" + self.psk_file if self.psk_file else ""))
            self.migrations = 0
        return self.rx

    def stop(self):
        if self.rx is not None:
            self.rx.kill()

    def handshake(self, s, conns, original):
        """Plays the handshake (with authentication when the stream has a key).

        @return the receiver's last handshake frame (HELLO_ACK or ERROR), or a sentence when the source itself hung up
        """
        wait = self.handshake_ms / 1000 + 8
        t0 = time.monotonic()
        self.late = False
        late = [c for c in s.conns()[1:]] if s.psk else []  # with a key, the JOINs' MACs need the session key first
        for c in s.conns():
            if c not in late:
                self.send_phase(s, conns, c, "handshake")
        answer = pc.read_exact(conns["u"].s, 16, wait)
        if answer is None:
            if s.cut["u"] and not s.phases["body"]["u"]:
                return "the source hung up inside its handshake; the receiver closed too"
            raise Hostile("the receiver closed the urgent connection without an answer (no ERROR naming why)")
        if answer[:8] != pc.MAGIC:
            raise Hostile("the receiver's answer does not start with the preamble: %r" % answer)
        f = self.read(conns["u"], wait)
        if s.psk and f[0] == HELLO_ACK:
            raise Hostile("a destination with psk-file= sent HELLO_ACK before any proof (no AUTH 2)")
        if s.psk and f[0] == ERROR and re.search(r"layout|at the destination|destination has", f[5].decode("utf-8", "replace")):
            # (the source's own values may be echoed: seed 707 case 4945 had its region size read as max payload)
            # docs/security.md: a stranger learns nothing of the layout; before AUTH 3 every source is a stranger
            raise Hostile("a refusal before any proof names the destination's layout: %r" % f[5][:300])
        if not s.psk or f[0] != AUTH:
            return f
        # AUTH 2: check the destination's proof, then AUTH 3 and the JOINs with their MACs (docs/wire-protocol.md).
        body, key, proof = parse_auth2(f[5])
        frames = [ch for ch in s.phases["handshake"]["u"] if ch.kind == "frame"]
        payload = [bytes(ch.data[32:32 + struct.unpack_from(">I", ch.data, 24)[0]]) if len(ch.data) >= 32 else b"" for ch in frames]
        hello, m1 = (payload + [b"", b""])[:2]
        t = hashlib.sha256(AUTH_LABEL + b"".join(struct.pack(">I", len(x)) + x for x in (hello, m1, body))).digest()
        base = hmac256(s.psk, x25519(s.private, key))
        if proof != hmac256(base, b"destination" + t) and s.signature()["handshake"] == original["handshake"]:
            raise Hostile("the destination's AUTH 2 proof does not verify: it did not prove it holds the key")
        session_key = hmac256(base, b"session" + t)

        def join_mac(channel):
            return hmac256(session_key, b"join" + struct.pack(">QQQ", s.session, channel, CHANNELS))

        ctx = {"reflect": lambda ch: join_mac((ch.channel + 1) % CHANNELS) if ch.channel is not None
               else hmac256(base, b"destination" + t)}
        for ph in PHASES:
            for c in s.conns():
                for ch in s.phases[ph][c]:
                    if not ch.live:
                        continue
                    if ch.channel is None:
                        ch.data = bytearray(frame(AUTH, payload=bytes([3, 1, 0, 0]) + auth_bytes(hmac256(base, b"source" + t))))
                    else:
                        ch.data = bytearray(frame(JOIN, region=CHANNELS, first=s.session, count=ch.channel, payload=join_mac(ch.channel)))
                    for later in ch.later:
                        if not later(ch, ctx):
                            ch.data = bytearray()
        self.send_phase(s, conns, "u", "auth")
        for c in late:
            self.send_phase(s, conns, c, "handshake")
        # On a loaded machine this side may be slow to answer AUTH 2: a deadline refusal then says nothing of the receiver.
        self.late = time.monotonic() - t0 > self.handshake_ms / 2000
        return self.read(conns["u"], wait)

    @staticmethod
    def send_phase(s, conns, c, phase):
        conns[c].send(s.phases[phase][c])
        if s.cut[c] and all(not s.phases[ph][c] for ph in PHASES[PHASES.index(phase) + 1:]):
            try:
                conns[c].s.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    @staticmethod
    def read(conn, wait):
        try:
            f = pc.read_frame(conn.s, wait)
        except socket.timeout:
            raise Hostile("no answer to the handshake within the handshake timeout + 8 s (hang)")
        except pc.Failure as e:
            raise Hostile(str(e))
        if f is None:
            raise Hostile("the receiver closed the urgent connection during the handshake without HELLO_ACK or ERROR")
        return f

    def play(self, s, original):
        rx = self.receiver()
        err_before = len(rx.err)
        verdict, why, model_ram = expected_outcome(s, original)
        allowed = allowed_writes(s)
        conns = {}
        stop = threading.Event()
        urgent_frames = queue.Queue()
        try:
            for c in s.conns():
                conns[c] = Conn(rx)
            f = self.handshake(s, conns, original)
            if isinstance(f, str):
                check_crash(rx, err_before)
                return f
            if f[0] == ERROR:
                text = f[5].decode("utf-8", "replace")
                check_text("the handshake refusal", text)
                if rx.proc.poll() is not None:
                    raise Hostile("the receiver exited after refusing a handshake")
                check_crash(rx, err_before)
                if verdict == VALID and self.late and ("handshake timeout" in text or "in time" in text):
                    return "refused at the handshake (this side was late with its AUTH 3 and JOINs): " + text
                if verdict == VALID:
                    raise Hostile("the handshake of a valid migration was refused: %s" % text)
                return "refused at the handshake: " + text
            if f[0] != HELLO_ACK:
                raise Hostile("the handshake's answer is %s" % pc.describe(f))
            self.migrations += 1
            # Accepted: every connection's frames at once, heartbeats on the urgent one, its answers read.

            def reader():
                while True:
                    try:
                        g = pc.read_frame(conns["u"].s, 60)
                    except (OSError, pc.Failure, socket.timeout) as e:
                        urgent_frames.put(("broken", str(e)))
                        return
                    if g is None:
                        urgent_frames.put(("closed", None))
                        return
                    if g[0] != HEARTBEAT:
                        urgent_frames.put(("frame", g))

            def beat():
                while not stop.wait(0.4):
                    with conns["u"].lock:
                        if not pc.send_quietly(conns["u"].s, frame(HEARTBEAT, first=time.monotonic_ns())):
                            return

            def writer(c, phase):
                self.send_phase(s, conns, c, phase)

            threading.Thread(target=reader, daemon=True).start()
            if not s.cut["u"]:
                threading.Thread(target=beat, daemon=True).start()
            writers = [threading.Thread(target=writer, args=(c, "body"), daemon=True) for c in s.conns()]
            for w in writers:
                w.start()
            for w in writers:
                w.join(30)
            # A valid stream is acknowledged however slow the machine; for the rest, a quiet second and a half is
            # enough: a receiver that waits for a silent source is within its rights, and ends once the source goes.
            patience = {VALID: 20, UNKNOWN: 3, INVALID: 1.5}[verdict]
            kind, answer = await_answer(urgent_frames, patience, lambda g: g[0] == COMPLETE)
            if kind == "wanted":  # acknowledged: the verification, and its verdict (a CONTROL)
                threading.Thread(target=writer, args=("u", "verify"), daemon=True).start()
                kind, answer = await_answer(urgent_frames, {VALID: 20, UNKNOWN: 5, INVALID: 3}[verdict], lambda g: g[0] == CONTROL)
            peer_error = answer if kind == "error" else None
            check_text("the ERROR to the source", peer_error)
        finally:
            stop.set()
            for c in conns.values():
                c.close()
        # The source is gone: the receiver must end this migration now, with one outcome line.
        try:
            line = rx.lines.get(timeout=20)
        except queue.Empty:
            raise Hostile("the receiver did not end the migration within 20 s of the source closing (hang); its threads: %s"
                          % thread_dump(rx))
        if line is None:
            raise Hostile("the receiver exited (crash?): %s" % rx.output()[-2000:])
        if self.fresh:
            # docs/migration.md#exit-codes: 0 only for success; 1 (failed), 3 (unverified or mismatch), 4 (transport)
            try:
                code = rx.wait(20)
            except pc.Failure as e:
                raise Hostile("after %r: %s" % (line, e))
            if (code == 0) != line.startswith("RECEIVED ") or code not in (0, 1, 3, 4):
                raise Hostile("exit status %d after %r" % (code, line))
            self.rx = None
        check_crash(rx, err_before)
        if not (line.startswith("RECEIVED ") or line.startswith("FAILED ")):
            raise Hostile("unexpected output line %r" % line)
        if line.startswith("FAILED "):
            check_text("the FAILED reason", line[len("FAILED "):])
        report = last_report(self.report, self.migrations)
        check_ram(report, allowed, line.startswith("FAILED "))
        success = line.startswith("RECEIVED ")
        if success and verdict == INVALID:
            raise Hostile("success (%s) for a stream that is not a valid migration: %s" % (line, why))
        if not success and verdict == VALID:
            raise Hostile("a valid migration refused: %s" % line)
        if success and model_ram is not None:
            got = {p: c for p, c, _ in report["nonZero"]}
            want = {p: page_crc(d) for p, d in model_ram.items()}
            if got != want:
                raise Hostile("success, but the RAM is not what the stream sent (%d pages differ)"
                              % len(set(got.items()) ^ set(want.items())))
        return line


def await_answer(frames, seconds, wanted):
    """Reads the receiver's frames on the urgent connection (heartbeats already dropped) for up to `seconds`.

    @return ("wanted", frame) for the first frame `wanted` accepts, ("error", text) for an ERROR, ("end", None) when the
            connection ended, ("quiet", None) when nothing came in time
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            kind, g = frames.get(timeout=max(0.05, deadline - time.monotonic()))
        except queue.Empty:
            return "quiet", None
        if kind != "frame":
            return "end", None
        if g[0] == ERROR:
            return "error", g[5].decode("utf-8", "replace")
        if g[0] == CONTROL and g[5].startswith(b"verify-progress "):
            continue
        if wanted(g):
            return "wanted", g
        raise Hostile("the receiver sent %s to the source" % pc.describe(g))


def thread_dump(rx):
    """Asks the receiver's JVM (the command's process group: a launcher's JVM too) for a thread dump (SIGQUIT: it prints
    one on its standard output and goes on). @return the file it was saved in"""
    seen = len(rx.out)
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open("/proc/%d/comm" % pid) as f:
                comm = f.read().strip()
        except OSError:
            continue
        if int(fields[2]) == rx.proc.pid and comm == "java":  # field 5 of stat: the process group
            os.kill(pid, signal.SIGQUIT)
    time.sleep(2)  # the dump is printed at once; give the pump a moment to read it
    fd, path = tempfile.mkstemp(prefix="pagewire-hostile-hang-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(rx.out[seen:]) + "\n---- standard error ----\n" + "".join(rx.err))
    return path


def check_crash(rx, err_before):
    err = "".join(rx.err[err_before:])
    for sign in ("Exception in thread", "\tat ", "hs_err", "A fatal error has been detected", "SIGSEGV", "OutOfMemoryError"):
        if sign in err:
            raise Hostile("the receiver's standard error shows a crash (%r): %s" % (sign, err[-3000:]))


def last_report(path, migration):
    deadline = time.monotonic() + 10
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            lines = []
        if lines:
            doc = json.loads(lines[-1])
            if doc["migration"] == migration:
                return doc
        if time.monotonic() > deadline:
            raise Hostile("no RAM report for migration %d (last: %s)" % (migration, lines[-1:] or "none"))
        time.sleep(0.05)


def torn(crc, end, datas):
    """Whether a page holding CRC32C `crc`, zero from byte `end` on, is one of `datas` written up to some byte and no further
    (into a page that was zero): a frame whose writing stopped when its migration failed. Its bytes from `end` up to the
    cut are zero in the data too, so one CRC per candidate tells: the data's first `end` bytes, then zeros."""
    return any(pc.crc32c_zeros(crc32c(d[:end]), PAGE - end) == crc for d in datas)


def check_ram(report, allowed, failed):
    """@param allowed page -> CRC32Cs of the data frames sent for it (None: any, a frame cut in its data)
    @param failed whether the migration failed (its last frames may have been cut while being written)"""
    bad = []
    for p, crc, end in report["nonZero"]:
        if p not in allowed:
            bad.append("page %d (never named by a frame with a valid header)" % p)
        elif allowed[p] is not None and crc not in allowed[p]:
            if failed and torn(crc, end, allowed[p].values()):
                continue
            if failed and len(allowed[p]) > 1:
                continue  # cut while overwriting an earlier round's data: not told apart by a CRC (documented)
            bad.append("page %d holds data (CRC32C %08x, zero from byte %d) that no frame sent for it" % (p, crc, end))
    if bad:
        raise Hostile("RAM written outside the pages legitimately sent: %s%s" % ("; ".join(bad[:5]), " ..." if len(bad) > 5 else ""))


# ---------------------------------------------------------------- main


def authenticated(k, auth):
    """Whether case k is played at the receiver that authenticates (`--auth mixed`: the odd cases)."""
    return auth == "psk" or (auth == "mixed" and k % 2 == 1)


def build(seed, k, psk):
    """Case k of the seed: the mutated stream and the original's bytes. @param psk the key, for an authenticated case"""
    rng = random.Random("%d/%d" % (seed, k))
    session = rng.getrandbits(63) | 1
    original = valid_stream(session, psk, random.Random("%d/%d/auth" % (seed, k))).signature()
    return mutate(rng, valid_stream(session, psk, random.Random("%d/%d/auth" % (seed, k)))), original


def self_check():
    """The oracles can fail: each is shown a violation it must catch (no receiver needed)."""

    def caught(f, *a):
        try:
            f(*a)
        except Hostile:
            return True
        return False

    data = page_bytes(3, 0)
    half = data[:1000] + bytes(PAGE - 1000)
    allowed = {0: {2: b""}, 1: None, 3: {page_crc(data): data}}
    assert caught(check_ram, {"nonZero": [[5000, 1, 8]]}, {}, True), "a page no frame named"
    assert caught(check_ram, {"nonZero": [[0, 1, 8]]}, allowed, False), "a page holding data no frame sent for it"
    assert not caught(check_ram, {"nonZero": [[0, 2, 8], [1, 7, 8], [3, page_crc(data), PAGE]]}, allowed, False), "legitimate"
    assert not caught(check_ram, {"nonZero": [[3, crc32c(half), 1000]]}, allowed, True), "a page cut while written"
    assert caught(check_ram, {"nonZero": [[3, crc32c(half), 1000]]}, allowed, False), "a cut page after success"
    assert caught(check_ram, {"nonZero": [[3, crc32c(data[8:] + bytes(8)), PAGE - 8]]}, allowed, True), "data 8 bytes off"
    assert caught(check_text, "t", "java.lang.NullPointerException: x") and caught(check_text, "t", "a\x1b[2Jb") \
        and caught(check_text, "t", "") and not caught(check_text, "t", "invalid PAGES frame: region id 7 outside 0..0")
    s = valid_stream(5)
    verdict, why, ram = expected_outcome(s, s.signature())
    assert verdict == VALID and len(ram) == 23, (verdict, why)
    t = valid_stream(5)
    t.phases["body"]["b0"][-1] = Chunk("frame", frame(COMPLETE, count=16))
    assert expected_outcome(t, s.signature())[0] == INVALID, "a wrong COMPLETE count"
    t = valid_stream(5)
    del t.phases["body"]["b1"][2]  # a ZERO_RUN: its pages are never sent
    assert expected_outcome(t, s.signature())[0] == INVALID, "pages never sent"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=200, help="mutated streams to play (default 200)")
    ap.add_argument("--seed", type=int, default=None, help="the run's seed (default: random, printed)")
    ap.add_argument("--case", type=int, default=None, help="play only this case of the seed (to replay a finding)")
    ap.add_argument("--jobs", type=int, default=2, help="receivers playing cases at once (default 2; at least one per --auth mode)")
    ap.add_argument("--auth", choices=["mixed", "none", "psk"], default="mixed",
                    help="receivers without authentication, with psk-file= (a key this run writes), or both: even cases at one,"
                         " odd cases at the other (default mixed)")
    ap.add_argument("--fresh", action="store_true",
                    help="a new receiver for every migration it accepts (slow: a JVM each), whose exit status is checked too")
    ap.add_argument("--max-seconds", type=float, default=0, help="stop starting cases after this long (0: no limit)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case, not only failures")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the receiver command, e.g. ./pagewire receive --ram 64M")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give the receiver command after --")
    self_check()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    cases = [args.case] if args.case is not None else list(range(args.cases))
    print("hostile source: seed %d, %d cases (replay one with --seed %d --case K)" % (seed, len(cases), seed), flush=True)
    t0 = time.monotonic()
    modes = {"mixed": [False, True], "none": [False], "psk": [True]}[args.auth]
    todo = {m: queue.Queue() for m in modes}
    for k in cases:
        todo[authenticated(k, args.auth)].put(k)
    results = []
    lock = threading.Lock()
    workdir = tempfile.mkdtemp(prefix="pagewire-hostile-")
    psk = random.Random("%d/psk" % seed).getrandbits(256).to_bytes(32, "big")
    psk_file = os.path.join(workdir, "psk")
    with open(os.open(psk_file, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
        f.write(psk)

    tally = {}

    def work(name, auth):
        player = Player(command, workdir, name, psk_file if auth else None, args.fresh)
        key = psk if auth else None
        try:
            # The control: the stream unmutated must be a valid migration to the model and to the receiver, with exactly
            # the RAM it sent (else the oracles below would judge against a harness that cannot tell).
            session = random.Random("%d/control/%s" % (seed, name)).getrandbits(63) | 1
            for attempt in range(3):  # again only when this side was too slow for the handshake timeout
                got = ""
                try:
                    got = player.play(valid_stream(session + attempt, key, random.Random(name)),
                                      valid_stream(session + attempt, key, random.Random(name)).signature())
                    problem = None if got == "RECEIVED verified" else "the unmutated stream ended %r" % got
                except Hostile as e:
                    problem = str(e)
                if not got.startswith("refused at the handshake (this side was late"):
                    break
            with lock:
                if problem or name in ("r0", "r1"):
                    print("control%s: %s" % (" (psk-file)" if auth else "", problem or got), flush=True)
                if problem:
                    results.append(("control", "control: " + problem))
                    return
            while True:
                if args.max_seconds and time.monotonic() - t0 > args.max_seconds:
                    return
                try:
                    k = todo[auth].get_nowait()
                except queue.Empty:
                    return
                s, original = build(seed, k, key)
                start = time.monotonic()
                try:
                    what = player.play(s, original)
                    problem = None
                except Hostile as e:
                    problem = str(e)
                    what = None
                    player.stop()  # a fresh receiver for the next case: this one's state is suspect
                except Exception as e:  # a fault in this harness or an answer it did not expect: reported, never hidden
                    problem = "%s: %s" % (type(e).__name__, e)
                    what = None
                    player.stop()
                secs = time.monotonic() - start
                with lock:
                    results.append((k, problem))
                    kind = "failed an oracle" if problem else re.sub(r"^(refused at the handshake|RECEIVED \w+|FAILED|the source hung up).*",
                                                                     r"\1", what)
                    tally[kind] = tally.get(kind, 0) + 1
                    if problem or args.verbose:
                        print("%s case %d (%.1f s) [%s]: %s" % ("FAIL" if problem else "ok", k, secs, "; ".join(s.mutations),
                                                              problem or what), flush=True)
        finally:
            player.stop()

    threads = [threading.Thread(target=work, args=("r%d" % j, modes[j % len(modes)])) for j in range(max(len(modes), args.jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shutil.rmtree(workdir, ignore_errors=True)  # the key and the RAM reports (every receiver is gone by now)
    failed = [k for k, p in results if p]
    print("outcomes: " + ", ".join("%s %d" % kv for kv in sorted(tally.items(), key=lambda kv: -kv[1])), flush=True)
    print("%s: %d of %d cases passed in %.1f s (seed %d%s)" % ("PASSED" if not failed and results else "FAILED", len(results) - len(failed),
                                                         len(results), time.monotonic() - t0, seed,
                                                         "; failing cases: " + " ".join(map(str, failed[:50])) if failed else ""),
          flush=True)
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
