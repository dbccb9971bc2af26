#!/usr/bin/env python3
"""png_check.py - decodes a PNG with the standard library only (zlib) and checks it is a real
figure: `png_check.py FILE WIDTH HEIGHT [MIN_COLOURS]` exits 0 when FILE is a PNG of exactly
WIDTH x HEIGHT whose pixels decode (all five row filters), with at least MIN_COLOURS (default 16)
distinct colours and between 1% and 90% non-white pixels; prints one line saying what it saw."""
import struct
import sys
import zlib


def decode(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG signature")
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if zlib.crc32(kind + body) & 0xffffffff != struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]:
            raise ValueError("bad CRC in chunk %r" % kind)
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise ValueError("unsupported PNG (depth %d, colour type %d, interlace %d)" % (depth, ctype, interlace))
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    if len(raw) != h * (stride + 1):
        raise ValueError("pixel data has %d bytes, expected %d" % (len(raw), h * (stride + 1)))
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            elif f != 0:
                raise ValueError("bad filter %d in row %d" % (f, y))
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def main():
    path, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    min_colours = int(sys.argv[4]) if len(sys.argv) > 4 else 16
    try:
        W, H, bpp, rows = decode(path)
    except (OSError, ValueError, zlib.error, TypeError, struct.error) as e:
        print("%s: does not decode: %s" % (path, e))
        return 1
    colours, ink = set(), 0
    for r in rows:
        for x in range(0, len(r), bpp):
            px = r[x:x + 3]
            colours.add(px)
            ink += px != b"\xff\xff\xff"
    frac = ink / float(W * H)
    ok = (W, H) == (w, h) and len(colours) >= min_colours and 0.01 < frac < 0.9
    print("%s: %dx%d, %d distinct colours, %.1f%% ink%s" % (path, W, H, len(colours), 100 * frac, "" if ok else " - NOT as expected (%dx%d, >= %d colours)" % (w, h, min_colours)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
