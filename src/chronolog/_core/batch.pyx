"""What an append is made of: its arguments checked (stream names, payloads, ids, expected
versions), its columns seen as raw pointers, and the passes that size and encode the body of
a batch frame (format: format.pxd). The append path (log.pyx) drives them.
"""
from cpython.bytes cimport PyBytes_AS_STRING
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memchr

from chronolog._core.format cimport (
    FRAME_HEADER_BYTES, MAX_STREAM_NAME_BYTES, MAX_TYPE_NAME_BYTES, RECORD_HEADER_BYTES,
    EVENT_ID_BYTES, st32, chl_crc32c_extend, chl_crc32c_extend_record)
from chronolog._core.fileio cimport chl_wpipe, chl_wpipe_submit
from chronolog._core.narrow cimport NarrowPlan, narrow_encode
from chronolog._core.record cimport record_bytes, put_record_raw, seal_records
from chronolog._core.utf8 cimport chl_all_ascii, chl_utf8_valid

import uuid as _uuid

from chronolog.errors import InvalidArgumentError, InvalidEventError, InvalidStreamNameError


cdef bytes stream_utf8(object stream):
    """Validate a stream name; return its UTF-8 bytes."""
    if not isinstance(stream, str):
        raise InvalidStreamNameError(stream, f"a stream name must be a str, got {type(stream).__name__}")
    if not stream:
        raise InvalidStreamNameError(stream, "a stream name must not be empty")
    cdef bytes b
    try:
        b = (<str>stream).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidStreamNameError(stream, "a stream name must be valid Unicode (no lone surrogates)") from None
    if len(b) > MAX_STREAM_NAME_BYTES:
        raise InvalidStreamNameError(
            stream[:40] + "...", f"a stream name is at most {MAX_STREAM_NAME_BYTES} bytes of UTF-8, this one is {len(b)}")
    if memchr(PyBytes_AS_STRING(b), 0, len(b)) != NULL:
        raise InvalidStreamNameError(stream, "a stream name must not contain NUL characters")
    return b


cdef bytes payload_bytes(object value, str what, Py_ssize_t i):
    if type(value) is bytes:
        return <bytes>value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidEventError(f"event {i}: {what} must be bytes, got {type(value).__name__}")


def check_kinds(object values, str what):
    """Refuse a Python list or tuple column holding a value of the wrong kind, with the error
    short lists get (append_batch's two paths must accept the same input): `what` is
    "streams" or "types" (str), "datas" or "metadatas" (bytes, bytearray or memoryview).
    Arrow conversion would take bytes for str and str for bytes silently. ~2.5 ns per value."""
    cdef Py_ssize_t i, n = len(values)
    cdef bint text = what in ("streams", "types")
    cdef object v
    for i in range(n):
        v = values[i]
        if text:
            if isinstance(v, str):
                continue
            if what == "streams":
                stream_utf8(v)  # raises its error
            raise InvalidEventError(f"event {i}: the event type must be a str, got {type(v).__name__}")
        if type(v) is bytes or isinstance(v, (bytes, bytearray, memoryview)):
            continue
        payload_bytes(v, "data" if what == "datas" else "metadata", i)  # raises its error


cdef bytes event_id16(object value, Py_ssize_t i):
    """An id of append_batch's ids column as its 16 bytes: what NewEvent takes (a
    uuid.UUID, 16 bytes, or a UUID string)."""
    if isinstance(value, (bytes, bytearray)) and len(value) == 16:
        return bytes(value)
    if isinstance(value, _uuid.UUID):
        return value.bytes
    if isinstance(value, str):
        try:
            return _uuid.UUID(value).bytes
        except ValueError:
            pass
    raise InvalidEventError(f"event {i}: an id must be a uuid.UUID, 16 bytes, a UUID string or "
                            f"None, got {value!r}")


cdef tuple packed_column(list values):
    """(keep-alive, joined bytes, address of int64 offsets) for a list of bytes."""
    import array
    cdef bytes joined = b"".join(values)
    offs = array.array("q", [0])
    cdef long long at = 0
    for v in values:
        at += len(<bytes>v)
        offs.append(at)
    cdef size_t addr = offs.buffer_info()[0]
    return (offs, joined, addr)


def expected_code(object expected):
    """Map an expected_version argument to the core's integer code, refusing bad values."""
    if isinstance(expected, bool) or not isinstance(expected, int):
        raise InvalidArgumentError(
            f"expected_version must be ANY, NO_STREAM, STREAM_EXISTS or a version >= 0, got {expected!r}")
    if expected >= 0 or expected in (ANY, NO_STREAM, STREAM_EXISTS):
        if expected >= (1 << 62):
            raise InvalidArgumentError(f"expected_version {expected} is out of range")
        return int(expected)
    raise InvalidArgumentError(
        f"expected_version must be ANY, NO_STREAM, STREAM_EXISTS or a version >= 0, got {expected!r}")


cdef class ArrowColumn:
    """A binary/string Arrow array (64-bit offsets, no nulls) seen as raw pointers."""

    def __cinit__(self, arr, str what):
        if arr.null_count:
            raise InvalidEventError(f"{what} must not contain nulls")
        bufs = arr.buffers()
        self.keep = arr
        self.offsets = (<const int64_t *><size_t>bufs[1].address) + <Py_ssize_t>arr.offset
        self.data = <const char *><size_t>bufs[2].address if bufs[2] is not None else NULL


cdef int size_batch(const ColView *cols, const unsigned char *idp, const unsigned char *idvalid,
                    int64_t id_offset, Py_ssize_t n, size_t max_event, size_t *body,
                    Py_ssize_t *bad) noexcept nogil:
    """Pass 1 of append_columns: check each event's sizes and names; sum the body. cols:
    streams, types, metadatas, datas. Returns 0, or the problem (1 stream name, 2 type, 3 too
    large, 4 stream name not UTF-8, 5 type not UTF-8) with its event in bad."""
    cdef Py_ssize_t i
    cdef uint64_t slen, tlen
    cdef size_t rec
    # The names lie back to back (offsets ascend): one search for a NUL byte over all of them
    # (a search per name cost a call per event); the name that holds it is the first whose
    # end lies past it. Likewise one ASCII test over all stream names and one over all types:
    # only when one fails is each name of that column checked as UTF-8 (csrc/chl_utf8.h).
    cdef const char *nul = NULL
    cdef bint names_ascii = _span_ascii(&cols[0], n), types_ascii = _span_ascii(&cols[1], n)
    if n > 0 and cols[0].offsets != NULL and cols[0].data != NULL:
        nul = <const char *>memchr(cols[0].data + cols[0].offsets[0], 0,
                                   <size_t>(cols[0].offsets[n] - cols[0].offsets[0]))
    if nul == NULL and names_ascii and types_ascii and idvalid == NULL \
            and _sizes_fit(cols, n, idp != NULL, max_event, body):
        return 0
    for i in range(n):
        slen = col_len(&cols[0], i)
        tlen = col_len(&cols[1], i)
        if slen == 0 or slen > MAX_STREAM_NAME_BYTES or (
                nul != NULL and nul < col_ptr(&cols[0], i) + slen):
            bad[0] = i
            return 1
        if not names_ascii and not chl_utf8_valid(col_ptr(&cols[0], i), slen):
            bad[0] = i
            return 4
        if tlen == 0 or tlen > MAX_TYPE_NAME_BYTES:
            bad[0] = i
            return 2
        if not types_ascii and not chl_utf8_valid(col_ptr(&cols[1], i), tlen):
            bad[0] = i
            return 5
        rec = record_bytes(slen, tlen, col_len(&cols[2], i), col_len(&cols[3], i),
                           id_present(idp, idvalid, id_offset, i))
        if rec > max_event:
            bad[0] = i
            return 3
        body[0] += rec + 4
    return 0


cdef inline bint _span_ascii(const ColView *c, Py_ssize_t n) noexcept nogil:
    """Whether the n names of column c (back to back) are all ASCII."""
    if n == 0 or c.offsets == NULL or c.data == NULL:
        return True
    return chl_all_ascii(c.data + c.offsets[0], <size_t>(c.offsets[n] - c.offsets[0]))


cdef bint _sizes_fit(const ColView *cols, Py_ssize_t n, bint has_ids, size_t max_event,
                     size_t *body) noexcept nogil:
    """size_batch's fast path, for batches whose events all carry an id or all none: whether
    every event passes the checks (then its body size is added to body), else False (the
    exact loop finds the first that does not). Branch-free range checks over the offsets, and
    the body's size from the columns' spans: ~30 instructions per event instead of ~50."""
    cdef const int64_t *so = cols[0].offsets
    cdef const int64_t *to = cols[1].offsets
    cdef const int64_t *mo = cols[2].offsets
    cdef const int64_t *do = cols[3].offsets
    cdef size_t fixed = RECORD_HEADER_BYTES + (EVENT_ID_BYTES if has_ids else 0)
    if so == NULL or to == NULL or do == NULL or max_event < fixed:
        return False
    cdef uint64_t room = max_event - fixed, bad = 0, s, t, r, m  # (max_event <= 1 GiB: no sum wraps)
    cdef Py_ssize_t i
    # A length below 1 wraps to a huge value: each check is one unsigned comparison (the
    # compiler makes a loop of each case of `mo`).
    for i in range(n):
        s = <uint64_t>(so[i + 1] - so[i])
        t = <uint64_t>(to[i + 1] - to[i])
        r = <uint64_t>(do[i + 1] - do[i])
        m = <uint64_t>(mo[i + 1] - mo[i]) if mo != NULL else 0
        bad |= (s - 1 >= MAX_STREAM_NAME_BYTES) | (t - 1 >= MAX_TYPE_NAME_BYTES) \
            | (r > room) | (m > room) | (s + t + r + m > room)
    if bad:
        return False
    # Every length is in range (none negative): the sum of each column's lengths is its span.
    body[0] += <size_t>n * (fixed + 4) + <size_t>(so[n] - so[0]) + <size_t>(to[n] - to[0])
    body[0] += <size_t>(do[n] - do[0]) + (<size_t>(mo[n] - mo[0]) if mo != NULL else 0)
    return True


cdef uint32_t encode_batch(unsigned char *bp, size_t body, const ColView *cols,
                           const unsigned char *idp, const unsigned char *idvalid, int64_t id_offset,
                           Py_ssize_t n, uint64_t first, const uint64_t *vers,
                           int64_t timestamp, const NarrowPlan *plan, size_t narrow,
                           const int64_t *sids, chl_wpipe *w) noexcept nogil:
    """Pass 5 of append_columns: the narrow region (`narrow` bytes planned in `plan`, when not
    0), every record after it, and the offset table, into the raw body. With a write pipeline
    `w`, each WPIPE_CHUNK_BYTES of finished records is submitted to it as soon as encoded, and
    the body's CRC32C is returned, built record by record from each record's own CRC
    (chl_crc32c_extend_record: no second pass over the bytes where the CPU can combine CRCs);
    the rest of the body is left for the caller to submit. Without one, returns 0."""
    cdef Py_ssize_t i
    cdef size_t at = narrow, sent = 0
    cdef size_t ro[3]
    cdef size_t rl[3]
    cdef int k = 0, j
    cdef uint32_t crc = 0
    cdef unsigned char *b = bp + FRAME_HEADER_BYTES
    if narrow:
        narrow_encode(plan, b, narrow, cols[0].offsets, cols[0].data, cols[1].offsets,
                      cols[1].data, sids, n)
    if w != NULL:
        crc = chl_crc32c_extend(0, b, narrow)
    for i in range(n):
        st32(b + body - 4 * (n - i), <uint32_t>at)
        ro[k] = at
        rl[k] = put_record_raw(b + at, col_ptr(&cols[0], i), col_len(&cols[0], i),
                               col_ptr(&cols[1], i), col_len(&cols[1], i),
                               idp + 16 * (id_offset + i) if id_present(idp, idvalid, id_offset, i) else NULL,
                               col_ptr(&cols[2], i), col_len(&cols[2], i),
                               col_ptr(&cols[3], i), col_len(&cols[3], i), first + i, vers[i],
                               timestamp)
        at += rl[k]
        k += 1
        if k < 3 and i + 1 < n:
            continue
        # Records in threes: their CRCs side by side, then (pipelined) into the body CRC.
        seal_records(b, ro, rl, k)
        if w != NULL:
            for j in range(k):
                crc = chl_crc32c_extend_record(crc, b + ro[j], rl[j])
            # Whole chunks, and the last chunk's worth in quarters: what is left for the
            # helper after the last record (the appender waits for it) stays short.
            if at - sent >= WPIPE_CHUNK_BYTES or (
                    body - at < WPIPE_CHUNK_BYTES and at - sent >= WPIPE_CHUNK_BYTES // 4):
                chl_wpipe_submit(w, at)
                sent = at
        k = 0
    if w != NULL:
        crc = chl_crc32c_extend(crc, b + at, body - at)  # the offset table
    return crc
