/* UTF-8 checks of the names an append writes (stream names and event types, which the format
 * stores as UTF-8 and every reader decodes strictly). Arrow string arrays are not validated by
 * their producers (an array viewed from binary holds any bytes), so the size pass checks them:
 * one ASCII test over all names back to back (the common case), and only when it fails a
 * strict check of each name (RFC 3629, as Python's "utf-8" codec: no overlong forms, no
 * surrogates, nothing past U+10FFFF). Header-only: inlined into the size pass. */
#ifndef CHL_UTF8_H
#define CHL_UTF8_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Whether the n bytes at p are all ASCII (below 0x80). */
static inline int chl_all_ascii(const char *p, size_t n) {
    uint64_t acc = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        acc |= w;
    }
    for (; i < n; i++) acc |= (unsigned char)p[i];
    return (acc & 0x8080808080808080ull) == 0;
}

/* Whether the n bytes at p are well-formed UTF-8. */
static inline int chl_utf8_valid(const char *p, size_t n) {
    const unsigned char *s = (const unsigned char *)p;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        if (c < 0xC2) return 0; /* a continuation byte, or an overlong 2-byte form */
        if (c < 0xE0) {
            if (n - i < 2 || (s[i + 1] & 0xC0) != 0x80) return 0;
            i += 2;
            continue;
        }
        if (c < 0xF0) {
            if (n - i < 3 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return 0;
            if (c == 0xE0 && s[i + 1] < 0xA0) return 0;  /* overlong */
            if (c == 0xED && s[i + 1] >= 0xA0) return 0; /* a surrogate, U+D800..U+DFFF */
            i += 3;
            continue;
        }
        if (c < 0xF5) {
            if (n - i < 4 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80
                    || (s[i + 3] & 0xC0) != 0x80) return 0;
            if (c == 0xF0 && s[i + 1] < 0x90) return 0;  /* overlong */
            if (c == 0xF4 && s[i + 1] >= 0x90) return 0; /* past U+10FFFF */
            i += 4;
            continue;
        }
        return 0;
    }
    return 1;
}

#endif
