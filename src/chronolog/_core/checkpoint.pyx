"""The checkpoint files of the derived indexes (DESIGN invariant 1): their format, how a
CheckpointJob writes them outside the writer's lock (docs/design.md, "Index checkpoints in the
background"), and how they are mapped back, checked. The indexes whose bases they are:
index.pyx.

index/positions.idx (checkpointed in place: entries first, then the header's count):
    0  b"CHLPIDX1"  8 B magic
    8  u32          format version
    12 u32          header bytes (64)
    16 16 B         store id
    32 u64          count of valid entries
    40 20 B         reserved, zero
    60 u32          CRC32C of bytes 0..60
    64 u64[count]   entry for each position: segment ordinal << 32 | frame offset

index/streams.idx (rewritten whole: temporary file, fdatasync, rename). It is the hash index
itself: a load maps it and checks it (CRCs, bounds), and lookups probe its slot table in
place; nothing is hashed or inserted per stream (chl_streams.h):
    0  b"CHLSIDX5"  8 B magic
    8  u32          format version
    12 u32          header bytes (64)
    16 16 B         store id
    32 u64          through: the number of positions covered (every position of [0, through))
    40 u64          streams (n)
    48 u32          names bytes
    52 u32          CRC32C of the slot CRC table and the chunk table (checked on load)
    56 u32          anchor: low 32 bits of the salt of the segment holding position through-1
    60 u32          CRC32C of bytes 0..60
    64 u32[S]       slots: S = the smallest power of two >= 2n, at least 8; each 0 (empty) or
                    1 + the directory index of a stream; the stream of name x is found by
                    linear probing from slot chl_hash_bytes(x) & (S - 1)
    ...             slot CRC table: u32 CRC32C of each block of 16384 slots (the last may be
                    shorter), zero-padded to a multiple of 8 bytes (a block is checked when a
                    probe first reads it)
    ...             chunk table, 16 B per chunk of 1024 directory records (the last may be
                    shorter): u64 first and u32 name offset of its first record, u32 CRC32C of
                    its records then its names (checked when a lookup first reads the chunk)
    ...             directory, 32 B per stream: u64 hash (chl_hash_bytes of the name),
                    u64 count (>= 1), u64 first (index in the positions of its version 0),
                    u32 name offset (from the start of the names), u32 name bytes (1..1024);
                    names and positions back to back in directory order
    ...             names, back to back; zero padding to a multiple of 8
    ...             u64 positions of each stream by version, streams in directory order
"""
import os

from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memcpy, memcmp, memset
from posix.mman cimport (mmap, munmap, madvise, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_PRIVATE,
                         MAP_ANONYMOUS, MAP_FAILED, MADV_DONTNEED)
from posix.fcntl cimport O_WRONLY, O_CLOEXEC
from posix.stat cimport struct_stat, fstat, S_ISREG
from posix.unistd cimport close as c_close

from chronolog._core.format cimport FORMAT_VERSION, ld32, st32, st64, chl_crc32c, chl_crc32c_extend
from chronolog._core.fileio cimport FileIO
from chronolog._core.streams cimport (
    CHL_OK, CHL_EBADFILE, CHL_DIR_CHUNK, CHL_CHUNK_RECORD_BYTES, CHL_SLOT_BLOCK, chl_snap_entry,
    chl_streams_file_slots, chl_snap_fill_file_slots, chl_snap_check_file)

cdef enum:
    DROP_EVERY_BYTES = 8 << 20
    POSITION_CHUNK_BYTES = 4 << 20     # the stream checkpoint's positions are written by this much

cdef bytes PIDX_MAGIC = b"CHLPIDX1"
cdef bytes SIDX_MAGIC = b"CHLSIDX5"


cdef bytes index_header(bytes magic, bytes store_id, uint64_t a, uint64_t b, uint64_t c,
                        uint32_t d):
    # c: the u64 at 48 (streams.idx: names bytes in the low half, directory CRC in the high)
    cdef bytearray h = bytearray(INDEX_HEADER_BYTES)
    cdef unsigned char *p = h
    h[0:8] = magic
    st32(p + 8, FORMAT_VERSION)
    st32(p + 12, INDEX_HEADER_BYTES)
    h[16:32] = store_id
    st64(p + 32, a)
    st64(p + 40, b)
    st64(p + 48, c)
    st32(p + 56, d)
    st32(p + 60, chl_crc32c(p, 60))
    return bytes(h)


cdef const unsigned char *map_checked(str path, bytes magic, bytes store_id, void **map_out,
                                      uint64_t *len_out) except? NULL:
    """Map an index file read-only when its header is sound; NULL when missing or unsound."""
    cdef int fd
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # (a FIFO must not hang it)
    except OSError:
        return NULL
    cdef struct_stat st
    cdef void *p = MAP_FAILED
    if fstat(fd, &st) == 0 and S_ISREG(st.st_mode) and st.st_size >= INDEX_HEADER_BYTES:
        p = mmap(NULL, <size_t>st.st_size, PROT_READ, MAP_SHARED, fd, 0)
    c_close(fd)
    if p == MAP_FAILED:
        return NULL
    cdef const unsigned char *h = <const unsigned char *>p
    if (memcmp(h, <const char *>magic, 8) != 0 or ld32(h + 8) != FORMAT_VERSION
            or chl_crc32c(h, 60) != ld32(h + 60)
            or memcmp(h + 16, <const char *>store_id, 16) != 0):
        munmap(p, <size_t>st.st_size)
        return NULL
    map_out[0] = p
    len_out[0] = <uint64_t>st.st_size
    return h


cdef bytes positions_header(bytes store_id, uint64_t count):
    """The header of index/positions.idx for `count` entries."""
    return index_header(PIDX_MAGIC, store_id, count, 0, 0, 0)


cdef const unsigned char *map_positions(str path, bytes store_id, void **map_out,
                                        uint64_t *len_out) except? NULL:
    """Map index/positions.idx read-only when its header is sound; NULL when missing or unsound."""
    return map_checked(path, PIDX_MAGIC, store_id, map_out, len_out)


cdef const unsigned char *map_streams(str path, bytes store_id, void **map_out,
                                      uint64_t *len_out) except? NULL:
    """Map index/streams.idx read-only when its header is sound; NULL when missing or unsound."""
    return map_checked(path, SIDX_MAGIC, store_id, map_out, len_out)


cdef class CheckpointJob:
    """The file I/O of one checkpoint of both indexes (docs/design.md, "Index checkpoints in
    the background"). PositionIndex.image and StreamIndex.snapshot fill it with the writer's
    lock held; `run` writes it (a background thread after a segment roll, else the caller);
    PositionIndex.adopt and StreamIndex.adopt map what it wrote, with the lock held again.

    Invariants:
        - the bytes it writes do not change until it is done: its own copy of the position
          entries, and the snapshot's streams (their names, mapped base and delta arrays stay
          where they are until the snapshot is adopted or dropped: the Log joins the job
          before anything rebases or clears the stream index);
        - when it fails (`error`), no temporary file is left and the indexes stay as they
          are (bases and deltas); the checkpoint files on disk are the previous ones.

    Thread-safety: `run` in one thread at a time; it touches nothing but its own fields, the
    memory its snapshot points at (read only) and the FileIO layer (which any thread may call).
    """

    def __cinit__(self, FileIO io, uint64_t through):
        self.io = io
        self.through = through
        self.p_entries = NULL
        self.s_snap = NULL
        self.s_map = NULL
        self.s_unmap = NULL
        self.done = False
        self.error = None
        self.thread = None
        self.cancelled = False

    def __dealloc__(self):
        free(self.p_entries)
        free(self.s_snap)
        if self.s_map != NULL:
            munmap(self.s_map, self.s_map_len)
        if self.s_unmap != NULL:
            munmap(self.s_unmap, self.s_unmap_len)

    cdef bint unstarted(self):
        """Whether it has a thread whose start() never returned (a signal handler raised in
        it): the thread may or may not run."""
        return self.thread is not None and not self.thread._started.is_set()

    def wait(self):
        """Wait for the thread running this job; False when it never started (its start()
        was interrupted): the job is then cancelled, and does nothing should the thread run
        after all. An exception raised while waiting (a signal handler's) is raised once the
        thread is done: it reads memory its caller may free next.

        Example:
            >>> CheckpointJob(FileIO(), 0).wait()  # no thread: ran in the caller
            True
        """
        t = self.thread
        if t is None:
            return True
        if not t._started.is_set():
            # Cancel first, then look again: a thread that sets `_started` after this look
            # calls run after it too, and run sees `cancelled`.
            self.cancelled = True
            if not t._started.is_set():
                return False
        pending = None
        while True:
            try:
                t.join()
                break
            except BaseException as exc:
                pending = exc
        if pending is not None:
            raise pending
        return True

    def run(self):
        """Write both checkpoint files; any failure is kept in `error` (checkpoints are
        derived: a failed one costs the next open a longer scan, nothing else)."""
        if self.cancelled:
            self.done = True
            return
        if self.s_unmap != NULL:
            # The base the last adoption retired: its file was replaced, so this last unmap
            # frees it (its pages and blocks: tens of milliseconds for a large one), here
            # rather than in the appender's path.
            with nogil:
                munmap(self.s_unmap, self.s_unmap_len)
            self.s_unmap = NULL
        try:
            if self.p_path is not None:
                self._write_positions()
            if self.s_snap != NULL:
                self._write_streams()
        except BaseException as exc:
            self.error = exc
            for path in (self.p_path, self.s_path):
                if path is not None:
                    try:
                        os.unlink(path + ".tmp")
                    except OSError:
                        pass
        finally:
            self.done = True

    cdef int _write_positions(self) except -1:
        cdef FileIO io = self.io
        cdef int fd
        cdef const char *hdr = self.p_header
        if self.p_in_place:
            # Entries first, synced, then the header's count: a reader (or a crash) sees the
            # old count or the new one, each with its entries in place.
            fd = io.open(self.p_path, O_WRONLY | O_CLOEXEC, 0o600)
            try:
                io.pwrite_all(fd, self.p_entries, self.p_bytes, self.p_offset)
                io.fdatasync(fd)
                io.pwrite_all(fd, hdr, INDEX_HEADER_BYTES, 0)
            finally:
                io.close(fd)
            return 0
        tmp = self.p_path + ".tmp"
        fd = io.create_new(tmp)
        try:
            io.pwrite_all(fd, hdr, INDEX_HEADER_BYTES, 0)
            io.pwrite_all(fd, self.p_entries, self.p_bytes, INDEX_HEADER_BYTES)
            io.fdatasync(fd)
        finally:
            io.close(fd)
        io.rename(tmp, self.p_path)
        return 0

    cdef int _write_streams(self) except -1:
        """Write the stream index's file from the snapshot (the copying without the GIL: the
        appender goes on): its head (header, slots, chunk table, directory, names) built in
        memory, then the positions through a buffer of POSITION_CHUNK_BYTES, so that the
        file's bulk never has to be resident (peak RSS). Adoption maps the file."""
        cdef FileIO io = self.io
        cdef unsigned char *head = NULL
        cdef uint64_t head_len = 0, at, filled
        cdef uint32_t crc = 0
        cdef int rc, fd
        cdef PositionCursor cur
        with nogil:
            rc = _build_stream_head(self.s_snap, self.s_n, self.s_names_bytes, &head, &head_len,
                                    &crc)
        if rc != 0:
            raise MemoryError(f"cannot allocate {head_len} bytes for the stream index checkpoint")
        # Fresh pages, given back at the end (malloc would keep them in this thread's arena).
        cdef uint64_t *buf = <uint64_t *>_pages(POSITION_CHUNK_BYTES)
        if buf == NULL:
            munmap(head, head_len)
            raise MemoryError()
        memset(&cur, 0, sizeof(cur))
        cur.drop_map = self.s_drop_map
        cur.drop_len = self.s_drop_len
        try:
            hdr = index_header(SIDX_MAGIC, self.s_store_id, self.s_through, self.s_n,
                               self.s_names_bytes | (<uint64_t>crc << 32), self.s_anchor)
            memcpy(head, <const char *>hdr, INDEX_HEADER_BYTES)
            tmp = self.s_path + ".tmp"
            fd = io.create_new(tmp)
            try:
                io.pwrite_all(fd, head, head_len, 0)
                at = head_len
                while True:
                    with nogil:
                        filled = _next_positions(self.s_snap, self.s_n, &cur, buf,
                                                 POSITION_CHUNK_BYTES // 8)
                    if filled == 0:
                        break
                    io.pwrite_all(fd, buf, filled * 8, at)
                    at += filled * 8
                if at != head_len + self.s_through * 8:
                    raise OSError(f"stream index checkpoint {self.s_path}: the snapshot holds "
                                  f"{(at - head_len) // 8} positions, not {self.s_through}")
                io.fdatasync(fd)
            finally:
                io.close(fd)
            io.rename(tmp, self.s_path)
        finally:
            munmap(head, head_len)
            munmap(buf, POSITION_CHUNK_BYTES)
        return self._map_streams(hdr, crc)

    cdef int _map_streams(self, bytes hdr, uint32_t crc) except -1:
        """Map the file just written and check it against the snapshot (here, not in the
        appender's path): adoption then only re-points the streams at it."""
        cdef void *m = NULL
        cdef uint64_t n = 0
        cdef int rc
        cdef const unsigned char *h = map_streams(self.s_path, self.s_store_id, &m, &n)
        if h == NULL:
            raise OSError(f"stream index checkpoint {self.s_path} did not read back")
        if memcmp(h, <const char *>hdr, INDEX_HEADER_BYTES) != 0:
            rc = CHL_EBADFILE
        else:
            with nogil:
                rc = chl_snap_check_file(h + INDEX_HEADER_BYTES, n - INDEX_HEADER_BYTES,
                                         self.s_snap, self.s_n, self.s_names_bytes,
                                         self.s_through, crc)
        if rc != CHL_OK:
            munmap(m, n)
            raise OSError(f"stream index checkpoint {self.s_path} did not read back")
        self.s_map = m
        self.s_map_len = n
        return 0


cdef struct PositionCursor:
    uint64_t stream                   # the snapshot entry being copied
    uint64_t k                        # how many of its positions are copied
    uint64_t copied                   # bytes copied from the base since the last drop
    const void *drop_map
    uint64_t drop_len


cdef uint64_t _next_positions(const chl_snap_entry *e, uint64_t n, PositionCursor *cur,
                              uint64_t *buf, uint64_t cap) noexcept nogil:
    """Copy the snapshot's next positions (each stream's base then delta, streams in order)
    into buf, at most cap of them; returns how many (0: all copied)."""
    cdef uint64_t got = 0, m
    cdef const chl_snap_entry *s
    while got < cap and cur.stream < n:
        s = &e[cur.stream]
        if cur.k < s.base_count:
            m = min(s.base_count - cur.k, cap - got)
            memcpy(buf + got, s.base + cur.k, m * 8)
            cur.copied += m * 8
            if cur.copied >= DROP_EVERY_BYTES and cur.drop_map != NULL:
                # What was copied from the base's mapping (a file's: never anything else)
                # need not stay resident (peak RSS); a later read faults it back in from the
                # page cache.
                madvise(<void *>cur.drop_map, cur.drop_len, MADV_DONTNEED)
                cur.copied = 0
        else:
            m = min(s.base_count + s.delta_count - cur.k, cap - got)
            memcpy(buf + got, s.delta + (cur.k - s.base_count), m * 8)
        got += m
        cur.k += m
        if cur.k == s.base_count + s.delta_count:
            cur.stream += 1
            cur.k = 0
    return got


cdef inline void *_pages(size_t n) noexcept nogil:
    """n bytes of fresh zeroed pages (munmap them), or NULL."""
    cdef void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    return NULL if p == MAP_FAILED else p


cdef int _build_stream_head(const chl_snap_entry *e, uint64_t n_live, uint64_t names_bytes,
                            unsigned char **out, uint64_t *out_len,
                            uint32_t *out_crc) noexcept nogil:
    """The head of a stream index checkpoint's file (layout: the module's docstring; all but
    the positions, which follow it) from snapshot `e`, into fresh pages (*out, *out_len:
    munmap them); its bytes 0..64, the header, are left for the caller (they need *out_crc).
    -1 when out of memory."""
    cdef uint64_t n_slots = chl_streams_file_slots(n_live)
    cdef uint64_t n_chunks = (n_live + CHL_DIR_CHUNK - 1) // CHL_DIR_CHUNK, c, j, k0, k1
    cdef uint64_t n_blocks = (n_slots + CHL_SLOT_BLOCK - 1) // CHL_SLOT_BLOCK
    cdef uint64_t crc_table_bytes = (n_blocks * 4 + 7) // 8 * 8
    cdef uint64_t at_slots = INDEX_HEADER_BYTES
    cdef uint64_t at_crcs = at_slots + n_slots * 4
    cdef uint64_t at_chunks = at_crcs + crc_table_bytes
    cdef uint64_t at_dir = at_chunks + n_chunks * CHL_CHUNK_RECORD_BYTES
    cdef uint64_t at_names = at_dir + n_live * 32
    cdef uint64_t size = (at_names + names_bytes + 7) // 8 * 8
    out_len[0] = size
    # Zeroed: the padding after the names needs no writing.
    cdef unsigned char *b = <unsigned char *>_pages(size)
    if b == NULL:
        return -1
    cdef uint64_t name0, first = 0, name_off = 0
    cdef uint32_t crc, ccrc
    cdef const chl_snap_entry *s
    chl_snap_fill_file_slots(e, n_live, <uint32_t *>(b + at_slots), n_slots)
    # The directory and names, stream by stream in snapshot (id) order; each chunk's start
    # and the CRC of its records then its names.
    for c in range(n_chunks):
        k0 = c * CHL_DIR_CHUNK
        k1 = min(n_live, k0 + CHL_DIR_CHUNK)
        st64(b + at_chunks + c * CHL_CHUNK_RECORD_BYTES, first)
        st32(b + at_chunks + c * CHL_CHUNK_RECORD_BYTES + 8, <uint32_t>name_off)
        ccrc = 0
        name0 = name_off
        for j in range(k0, k1):
            s = &e[j]
            _dir_record(b + at_dir + 32 * j, s.hash, s.base_count + s.delta_count, first,
                        name_off, s.name_len)
            ccrc = chl_crc32c_extend(ccrc, b + at_dir + 32 * j, 32)
            memcpy(b + at_names + name_off, s.name, s.name_len)
            first += s.base_count + s.delta_count
            name_off += s.name_len
        ccrc = chl_crc32c_extend(ccrc, b + at_names + name0, name_off - name0)
        st32(b + at_chunks + c * CHL_CHUNK_RECORD_BYTES + 12, ccrc)
    # Each block of slots has its CRC in the slot CRC table; the header's CRC covers that
    # table (zero-padded to 8 bytes) and the chunk table.
    for c in range(n_blocks):
        k0 = c * CHL_SLOT_BLOCK
        k1 = min(n_slots, k0 + CHL_SLOT_BLOCK)
        st32(b + at_crcs + 4 * c, chl_crc32c_extend(0, b + at_slots + k0 * 4, (k1 - k0) * 4))
    crc = chl_crc32c_extend(0, b + at_crcs, crc_table_bytes)
    crc = chl_crc32c_extend(crc, b + at_chunks, n_chunks * CHL_CHUNK_RECORD_BYTES)
    out[0] = b
    out_crc[0] = crc
    return 0


cdef inline void _dir_record(unsigned char *ent, uint64_t hash, uint64_t count, uint64_t first,
                             uint64_t name_off, uint32_t name_len) noexcept nogil:
    st64(ent, hash)
    st64(ent + 8, count)
    st64(ent + 16, first)
    st32(ent + 24, <uint32_t>name_off)
    st32(ent + 28, name_len)
