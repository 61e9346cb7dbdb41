"""GPT-2's byte-level alphabet, shared by the trainer and the random-model tools."""


def bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable unicode characters, in its id order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))
