"""The Arrow columns of a scan: their names, types and schema, and pass 2 of a scan, which
allocates a batch's buffers once and fills them from the records pass 1 (scan.pyx) selected,
without the GIL and without a Python object per event.
"""
import pyarrow as pa

from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from chronolog._core.format cimport RECORD_HEADER_BYTES, EVENT_ID_BYTES, RECORD_HAS_ID, ld16, ld32, ld64
from chronolog._core.utf8 cimport chl_all_ascii, utf8_name

from chronolog.errors import CorruptionError, InvalidArgumentError

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define chl_prefetch(p) __builtin_prefetch((const void *)(p))
    #else
    #define chl_prefetch(p) ((void)0)
    #endif
    """
    void chl_prefetch(const void *p) noexcept nogil

cdef enum:
    PREFETCH_AHEAD = 32       # records: hides the miss on each record header in pass 2

COLUMNS = ("position", "stream", "version", "type", "timestamp", "data", "metadata", "id")
_COLUMN_BITS = {"position": COL_POSITION, "stream": COL_STREAM, "version": COL_VERSION,
                "type": COL_TYPE, "timestamp": COL_TIMESTAMP, "data": COL_DATA,
                "metadata": COL_METADATA, "id": COL_ID}
_TYPES = {
    "position": pa.uint64(), "stream": pa.string(), "version": pa.uint64(),
    "type": pa.dictionary(pa.int32(), pa.string()), "timestamp": pa.timestamp("ns", tz="UTC"),
    "data": pa.binary(), "metadata": pa.binary(), "id": pa.binary(16),
}
SCHEMA = pa.schema([pa.field(c, _TYPES[c], nullable=(c == "id")) for c in COLUMNS])


def schema_of(columns=None):
    """The Arrow schema of a scan with these columns (all, in the standard order, when None).

    Example:
        >>> schema_of(["position", "type"]).names
        ['position', 'type']
    """
    return pa.schema([SCHEMA.field(c) for c in column_names(columns)])


cdef list column_names(object columns):
    if columns is None:
        return list(COLUMNS)
    if isinstance(columns, (str, bytes)):
        raise InvalidArgumentError(f"columns must be a list of column names, not a single "
                                   f"{type(columns).__name__}; e.g. columns=[{columns!r}]")
    names = list(columns)
    for c in names:
        if c not in _COLUMN_BITS:
            raise InvalidArgumentError(f"unknown scan column {c!r}; the columns are {', '.join(COLUMNS)}")
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"columns names a column twice: {names!r}")
    if not names:
        raise InvalidArgumentError("columns must name at least one column")
    return names


cdef int column_bits(list names) except -1:
    """The COL_* bits of checked column names."""
    cdef int bits = 0
    for c in names:
        bits |= _COLUMN_BITS[c]
    return bits


def _allocate(uint64_t nbytes):
    return pa.allocate_buffer(nbytes if nbytes else 1)


cdef object build_batch(const SelectedRecords *sel, size_t n, const uint64_t *sizes, int cols,
                        list names, object type_dict, str path):
    """Pass 2 of a scan: allocate every buffer of the batch once, fill them from the `n`
    records pass 1 selected (without the GIL) and return the RecordBatch of `names`. A stream
    name that is not UTF-8 (`path`'s damage under valid CRCs, or a store written before
    append_batch checked Arrow names) raises CorruptionError: an Arrow string column is not
    validated by its consumers, so it must never hold one."""
    cdef object b_pos = None, b_ver = None, b_ts = None, b_type = None, b_sof = None
    cdef object b_sdat = None, b_dof = None, b_ddat = None, b_mof = None, b_mdat = None
    cdef object b_id = None, b_idv = None
    cdef uint64_t *p_pos = NULL
    cdef uint64_t *p_ver = NULL
    cdef int64_t *p_ts = NULL
    cdef int32_t *p_type = NULL
    cdef int32_t *p_sof = NULL
    cdef int32_t *p_dof = NULL
    cdef int32_t *p_mof = NULL
    cdef unsigned char *p_sdat = NULL
    cdef unsigned char *p_ddat = NULL
    cdef unsigned char *p_mdat = NULL
    cdef unsigned char *p_id = NULL
    cdef unsigned char *p_idv = NULL
    cdef bint id_nulls = sizes[3] != n
    alloc = _allocate

    if cols & COL_POSITION:
        b_pos = alloc(8 * n); p_pos = <uint64_t *><size_t>b_pos.address
    if cols & COL_VERSION:
        b_ver = alloc(8 * n); p_ver = <uint64_t *><size_t>b_ver.address
    if cols & COL_TIMESTAMP:
        b_ts = alloc(8 * n); p_ts = <int64_t *><size_t>b_ts.address
    if cols & COL_TYPE:
        b_type = alloc(4 * n); p_type = <int32_t *><size_t>b_type.address
    if cols & COL_STREAM:
        b_sof = alloc(4 * (n + 1)); p_sof = <int32_t *><size_t>b_sof.address
        b_sdat = alloc(sizes[0]); p_sdat = <unsigned char *><size_t>b_sdat.address
    if cols & COL_DATA:
        b_dof = alloc(4 * (n + 1)); p_dof = <int32_t *><size_t>b_dof.address
        b_ddat = alloc(sizes[1]); p_ddat = <unsigned char *><size_t>b_ddat.address
    if cols & COL_METADATA:
        b_mof = alloc(4 * (n + 1)); p_mof = <int32_t *><size_t>b_mof.address
        b_mdat = alloc(sizes[2]); p_mdat = <unsigned char *><size_t>b_mdat.address
    if cols & COL_ID:
        b_id = alloc(16 * n); p_id = <unsigned char *><size_t>b_id.address
        if id_nulls:
            b_idv = alloc((n + 7) // 8); p_idv = <unsigned char *><size_t>b_idv.address
            memset(p_idv, 0, (n + 7) // 8)

    # Pass 2: fill. The records were checked in pass 1; their mappings stay valid.
    cdef size_t j
    if sel.narrow:
        with nogil:
            _fill_narrow(sel, n, p_pos, p_type, p_sof, p_sdat)
        _check_streams(sel, n, p_sof, p_sdat, path)
        return _arrays(n, sizes, names, type_dict, b_pos, b_ver, b_ts, b_type, b_sof, b_sdat,
                       b_dof, b_ddat, b_mof, b_mdat, b_id, b_idv)
    cdef const unsigned char *r
    cdef const unsigned char *p
    cdef uint32_t slen, tlen, mlen, dlen
    cdef int32_t so = 0, do = 0, mo = 0
    with nogil:
        if p_sof != NULL: p_sof[0] = 0
        if p_dof != NULL: p_dof[0] = 0
        if p_mof != NULL: p_mof[0] = 0
        for j in range(n):
            r = sel.sel[j]
            if j + PREFETCH_AHEAD < n:
                chl_prefetch(sel.sel[j + PREFETCH_AHEAD])
                chl_prefetch(sel.sel[j + PREFETCH_AHEAD] + 64)  # the stream name's line
            if p_pos != NULL: p_pos[j] = ld64(r + 16)
            if p_ver != NULL: p_ver[j] = ld64(r + 24)
            if p_ts != NULL: p_ts[j] = <int64_t>ld64(r + 32)
            if p_type != NULL: p_type[j] = sel.sel_type[j]
            p = r + RECORD_HEADER_BYTES
            if r[11] & RECORD_HAS_ID:
                if p_id != NULL:
                    memcpy(p_id + 16 * j, p, EVENT_ID_BYTES)
                    if p_idv != NULL:
                        p_idv[j >> 3] |= <unsigned char>(1 << (j & 7))
                p += EVENT_ID_BYTES
            elif p_id != NULL:
                memset(p_id + 16 * j, 0, EVENT_ID_BYTES)
            slen = ld16(r + 8)
            tlen = r[10]
            mlen = ld32(r + 12)
            dlen = ld32(r + 40)
            if p_sof != NULL:
                memcpy(p_sdat + so, p, slen)
                so += <int32_t>slen
                p_sof[j + 1] = so
            p += slen + tlen
            if p_mof != NULL:
                memcpy(p_mdat + mo, p, mlen)
                mo += <int32_t>mlen
                p_mof[j + 1] = mo
            p += mlen
            if p_dof != NULL:
                memcpy(p_ddat + do, p, dlen)
                do += <int32_t>dlen
                p_dof[j + 1] = do
    _check_streams(sel, n, p_sof, p_sdat, path)
    return _arrays(n, sizes, names, type_dict, b_pos, b_ver, b_ts, b_type, b_sof, b_sdat,
                   b_dof, b_ddat, b_mof, b_mdat, b_id, b_idv)


cdef void _fill_narrow(const SelectedRecords *sel, size_t n, uint64_t *p_pos, int32_t *p_type,
                       int32_t *p_sof, unsigned char *p_sdat) noexcept nogil:
    """Pass 2 of a narrow scan: the columns from what pass 1 gathered, no record read."""
    cdef size_t j
    cdef int32_t so = 0
    if p_pos != NULL:
        memcpy(p_pos, sel.sel_pos, 8 * n)
    if p_type != NULL:
        memcpy(p_type, sel.sel_type, 4 * n)
    if p_sof != NULL:
        p_sof[0] = 0
        for j in range(n):
            memcpy(p_sdat + so, sel.sel[j], sel.sel_slen[j])
            so += <int32_t>sel.sel_slen[j]
            p_sof[j + 1] = so


cdef int _check_streams(const SelectedRecords *sel, size_t n, const int32_t *sof,
                        const unsigned char *sdat, str path) except -1:
    """Raise CorruptionError naming the first event whose filled stream name is not UTF-8:
    one ASCII test over the column's bytes (the common case), each name only when it fails."""
    cdef size_t j
    cdef Py_ssize_t bad = -1
    if sof == NULL:
        return 0
    with nogil:
        if not chl_all_ascii(<const char *>sdat, <size_t>sof[n]):
            for j in range(n):
                if not utf8_name(sdat + sof[j], <size_t>(sof[j + 1] - sof[j])):
                    bad = <Py_ssize_t>j
                    break
    if bad < 0:
        return 0
    position = sel.sel_pos[bad] if sel.narrow else ld64(sel.sel[bad] + 16)
    raise CorruptionError(path, None, f"the event at position {position} has a stream name that "
                          "is not valid UTF-8; `chronolog verify` names its segment and offset")


cdef object _arrays(size_t n, const uint64_t *sizes, list names, object type_dict, b_pos, b_ver,
                    b_ts, b_type, b_sof, b_sdat, b_dof, b_ddat, b_mof, b_mdat, b_id, b_idv):
    """The RecordBatch of filled buffers, columns in the scan's order."""
    cdef bint id_nulls = sizes[3] != n
    arrays = []
    for c in names:
        if c == "position":
            arrays.append(pa.Array.from_buffers(pa.uint64(), n, [None, b_pos]))
        elif c == "version":
            arrays.append(pa.Array.from_buffers(pa.uint64(), n, [None, b_ver]))
        elif c == "timestamp":
            arrays.append(pa.Array.from_buffers(_TYPES["timestamp"], n, [None, b_ts]))
        elif c == "type":
            idx = pa.Array.from_buffers(pa.int32(), n, [None, b_type])
            arrays.append(pa.DictionaryArray.from_arrays(idx, type_dict))
        elif c == "stream":
            arrays.append(pa.Array.from_buffers(pa.string(), n, [None, b_sof, b_sdat]))
        elif c == "data":
            arrays.append(pa.Array.from_buffers(pa.binary(), n, [None, b_dof, b_ddat]))
        elif c == "metadata":
            arrays.append(pa.Array.from_buffers(pa.binary(), n, [None, b_mof, b_mdat]))
        else:
            arrays.append(pa.Array.from_buffers(pa.binary(16), n, [b_idv, b_id],
                                                null_count=(n - sizes[3]) if id_nulls else 0))
    return pa.RecordBatch.from_arrays(arrays, schema=schema_of(names))
