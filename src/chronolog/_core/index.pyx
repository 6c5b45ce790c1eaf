"""The derived indexes of the log: position -> frame, and stream -> positions by version.

Both are rebuilt from the segments whenever missing, damaged or stale (DESIGN invariant 1).
In memory each is a read-only base (a mapping of its checkpoint file) plus a delta of what
was appended since. A checkpoint is prepared with the writer's lock held (the position
entries the file lacks are copied; the live streams are snapshotted), written by a
CheckpointJob (which builds the stream index's file from the snapshot, outside the lock),
then adopted: each index maps its file as the base, and the entries it covers leave the
deltas. The files' format and the job: checkpoint.pyx.
"""
import os

from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy, memmove
from posix.mman cimport munmap

from chronolog._core.format cimport ld32, ld64
from chronolog._core.checkpoint cimport (
    INDEX_HEADER_BYTES, CheckpointJob, map_positions, map_streams, positions_header)
from chronolog._core.streams cimport (
    CHL_OK, CHL_ENOMEM, chl_streams_new, chl_streams_free, chl_streams_clear, chl_streams_attach,
    chl_snap_entry, chl_streams_snapshot, chl_streams_rebase_snapshot)

cdef uint64_t NOT_LOADED = 0xFFFFFFFFFFFFFFFF


cdef class PositionIndex:
    """position -> (segment ordinal << 32 | frame offset), dense from position 0.

    Invariants:
        - entries [0, base_count) come from the mapped checkpoint, the rest from `delta`;
        - every entry names a checked frame that holds its position.

    Thread-safety: not thread-safe; the Log calls it with the GIL held.
    """

    def __dealloc__(self):
        self.clear()

    cdef uint64_t count(self) noexcept:
        return self.base_count + self.delta_count

    cdef uint64_t get(self, uint64_t position) noexcept:
        if position < self.base_count:
            return self.base[position]
        return self.delta[position - self.base_count]

    cdef uint32_t roff_at(self, uint64_t position) noexcept:
        """1 + the offset of the position's record in its segment (an uncompressed frame), or
        0 when not known here (a compressed frame, or an entry from the checkpoint not read
        yet). In memory only: what the writer encoded or a read found, so that random reads
        skip the position entry, the frame header and the offset table. (Segments are below
        4 GiB: a frame body is at most CHL_MAX_BODY_BYTES.)"""
        return self.roff[position] if position < self.roff_cap else 0

    cdef int _grow_roff(self, uint64_t need) except -1:
        """Room for `need` record offsets, the new ones unknown (0). For a large checkpoint the
        zero pages cost nothing until a read fills one."""
        cdef uint64_t cap = self.roff_cap * 2 if self.roff_cap else 65536
        cdef uint32_t *r
        while cap < need:
            cap *= 2
        # calloc, then copy: the unknown tail stays untouched zero pages (realloc and memset
        # would make every slot of the doubled capacity resident).
        r = <uint32_t *>calloc(cap, 4)
        if r == NULL:
            raise MemoryError()
        if self.roff != NULL:
            memcpy(r, self.roff, self.roff_cap * 4)
            free(self.roff)
        self.roff = r
        self.roff_cap = cap
        return 0

    cdef int set_roff(self, uint64_t first, const unsigned char *table, uint64_t n,
                      uint64_t body_at) except -1:
        """Record offsets of positions [first, first + n) from the offset table of a frame
        whose body starts `body_at` bytes into its segment."""
        cdef uint64_t i
        if first + n > self.roff_cap:
            self._grow_roff(first + n)
        for i in range(n):
            self.roff[first + i] = <uint32_t>(body_at + ld32(table + 4 * i) + 1)
        return 0

    cdef void set_one_roff(self, uint64_t position, uint32_t value) noexcept:
        """Remember one record offset a read found (a hint: out of memory, it is skipped)."""
        if position >= self.roff_cap:
            if position >= self.count():
                return
            try:
                self._grow_roff(self.count())
            except MemoryError:
                return
        self.roff[position] = value

    cdef const uint64_t *slot(self, uint64_t position) noexcept:
        """Where get(position) reads (for a prefetch): position < count() is the caller's."""
        if position < self.base_count:
            return self.base + position
        return self.delta + (position - self.base_count)

    cdef int push_n(self, uint64_t entry, uint64_t n) except -1:
        cdef uint64_t cap
        cdef uint64_t *d
        if self.delta_count + n > self.delta_cap:
            cap = self.delta_cap * 2 if self.delta_cap else 4096
            while cap < self.delta_count + n:
                cap *= 2
            d = <uint64_t *>realloc(self.delta, cap * 8)
            if d == NULL:
                raise MemoryError()
            self.delta = d
            self.delta_cap = cap
        cdef uint64_t i
        for i in range(n):
            self.delta[self.delta_count + i] = entry
        self.delta_count += n
        return 0

    cdef void clear(self) noexcept:
        if self.map != NULL:
            munmap(self.map, self.map_len)
        self.map = NULL
        self.map_len = 0
        self.base = NULL
        self.base_count = 0
        free(self.delta)
        self.delta = NULL
        self.delta_count = 0
        self.delta_cap = 0
        free(self.roff)
        self.roff = NULL
        self.roff_cap = 0

    cdef uint64_t load(self, str path, bytes store_id) except? 0xFFFFFFFFFFFFFFFF:
        """Map a checkpoint; return how many entries it holds (0 when absent or unsound)."""
        self.clear()
        cdef void *m = NULL
        cdef uint64_t n = 0
        cdef const unsigned char *h = map_positions(path, store_id, &m, &n)
        if h == NULL:
            return 0
        cdef uint64_t count = ld64(h + 32)
        if INDEX_HEADER_BYTES + count * 8 > n or count > (n >> 3):
            munmap(m, n)
            return 0
        self.map = m
        self.map_len = n
        self.base = <const uint64_t *>(h + INDEX_HEADER_BYTES)
        self.base_count = count
        return count

    cdef int image(self, CheckpointJob job, str path, bytes store_id) except -1:
        """Give `job` a copy of what the checkpoint at `path` needs: the entries after the
        file's count appended in place when the file on disk is this index's base, else
        every entry for a new file; and its header."""
        cdef uint64_t total = self.count()
        cdef bint in_place = self.map != NULL and os.path.exists(path)
        cdef uint64_t start = self.base_count if in_place else 0
        cdef unsigned char *buf = <unsigned char *>malloc((total - start) * 8 + 8)
        if buf == NULL:
            raise MemoryError()
        if start < self.base_count:
            memcpy(buf, self.base + start, (self.base_count - start) * 8)
        if self.delta_count:
            memcpy(buf + (self.base_count - start) * 8, self.delta, self.delta_count * 8)
        job.p_path = path
        job.p_entries = buf
        job.p_bytes = (total - start) * 8
        job.p_offset = INDEX_HEADER_BYTES + start * 8
        job.p_in_place = in_place
        job.p_header = positions_header(store_id, total)
        return 0

    cdef int adopt(self, CheckpointJob job) except -1:
        """The job wrote its checkpoint: map it as the base (its header's count and last entry
        checked); the entries it covers leave the delta, later ones stay."""
        cdef void *m = NULL
        cdef uint64_t n = 0
        cdef uint64_t through = job.through, k, cap
        cdef uint64_t *d
        cdef const unsigned char *h = map_positions(job.p_path, job.p_header[16:32], &m, &n)
        if h == NULL:
            raise OSError(f"position index checkpoint {job.p_path} did not read back")
        cdef const uint64_t *e = <const uint64_t *>(h + INDEX_HEADER_BYTES)
        if (ld64(h + 32) != through or INDEX_HEADER_BYTES + through * 8 > n
                or through < self.base_count or through > self.count()
                or (through > self.base_count
                    and e[through - 1] != self.delta[through - 1 - self.base_count])):
            munmap(m, n)
            raise OSError(f"position index checkpoint {job.p_path} did not read back")
        k = through - self.base_count
        self.delta_count -= k
        if self.delta_count:
            memmove(self.delta, self.delta + k, self.delta_count * 8)
        cap = 4096
        while cap < self.delta_count:
            cap *= 2
        if cap < self.delta_cap:  # give the moved entries' memory back
            d = <uint64_t *>realloc(self.delta, cap * 8)
            if d != NULL:
                self.delta = d
                self.delta_cap = cap
        if self.map != NULL:
            munmap(self.map, self.map_len)
        self.map = m
        self.map_len = n
        self.base = e
        self.base_count = through
        return 0


cdef class StreamIndex:
    """stream name -> stream id -> positions by version (the C table of chl_streams.h).

    Invariants:
        - a stream with no committed events (count 0) does not exist for any reader;
        - for every stream, positions by version are strictly increasing.

    `lazy` (default False) attaches a checkpoint checking only its slots and chunk table:
    directory chunks are checked, and stream entries filled, on first access (open then
    touches nothing per stream). Only for a caller that reads entries of ids it did not get
    from find/intern through chl_streams_at, and that checks `t.unsound` before trusting an
    answer (chl_streams.h; the Log does both).

    Thread-safety: not thread-safe; the Log calls it with the GIL held.
    """

    def __cinit__(self):
        self.lazy = False
        self.t = chl_streams_new()
        if self.t == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self.t != NULL:
            chl_streams_free(self.t)
        if self.map != NULL:
            munmap(self.map, self.map_len)
        if self.retired != NULL:
            munmap(self.retired, self.retired_len)

    cdef void clear(self) noexcept:
        chl_streams_clear(self.t)
        if self.map != NULL:
            munmap(self.map, self.map_len)
        if self.retired != NULL:
            munmap(self.retired, self.retired_len)
        self.retired = NULL
        self.map = NULL
        self.map_len = 0
        self.base_through = 0

    cdef uint64_t load(self, str path, bytes store_id) except? 0xFFFFFFFFFFFFFFFF:
        """Map a checkpoint into an empty table; return the positions it covers (and set
        `anchor` from its header), or NOT_LOADED when it is absent or unsound.

        O(streams) in bytes only (the CRC and one sequential copy of the directory into
        the stream array): the file's slot table is the hash index, nothing is re-hashed."""
        self.clear()
        cdef void *m = NULL
        cdef uint64_t n = 0
        cdef const unsigned char *h = map_streams(path, store_id, &m, &n)
        if h == NULL:
            return NOT_LOADED
        cdef uint64_t through = ld64(h + 32)
        cdef int rc = chl_streams_attach(self.t, h + INDEX_HEADER_BYTES, n - INDEX_HEADER_BYTES,
                                         ld64(h + 40), ld32(h + 48), through, ld32(h + 52),
                                         self.lazy)
        if rc != CHL_OK:
            munmap(m, n)
            if rc == CHL_ENOMEM:
                raise MemoryError()
            return NOT_LOADED
        self.map = m
        self.map_len = n
        self.base_through = through
        self.anchor = ld32(h + 56)
        return through

    cdef int snapshot(self, CheckpointJob job, str path, bytes store_id, uint64_t through,
                      uint32_t anchor) except -1:
        """Give `job` what it needs to write the checkpoint of every stream with events
        through `through` (docs/design.md, "Index checkpoints in the background"): a snapshot
        of the live streams, O(streams), taken with the lock held; the job builds the file
        from it outside the lock, and adopt() makes that file the base. Nothing for `job` to
        write (s_snap NULL) when the names do not fit the format or the table is unsound (the
        Log rebuilds)."""
        if self.t.unsound:
            return 0
        cdef uint64_t n = 0, names_bytes = 0
        cdef chl_snap_entry *e = chl_streams_snapshot(self.t, &n, &names_bytes)
        if e == NULL:
            raise MemoryError()
        if names_bytes >= 0xFFFFFFFF or self.t.unsound:
            free(e)
            return 0
        job.s_snap = e  # (a job is made per checkpoint: it holds no snapshot yet)
        job.s_unmap = self.retired
        job.s_unmap_len = self.retired_len
        self.retired = NULL
        job.s_n = n
        job.s_names_bytes = names_bytes
        job.s_through = through
        job.s_anchor = anchor
        job.s_path = path
        job.s_store_id = store_id
        job.s_drop_map = self.map
        job.s_drop_len = self.map_len
        job.s_owner = self
        return 0

    cdef int adopt(self, CheckpointJob job) except -1:
        """The job wrote this index's checkpoint, mapped and checked it: make it the base,
        keeping in memory only what was appended since the snapshot; else raise OSError (the
        table stays as it is, base and deltas, and the next checkpoint writes it all again).
        The previous base's mapping is retired: the next job unmaps it."""
        if job.s_snap == NULL or job.s_owner is not self or job.s_map == NULL:
            return 0
        cdef int rc = chl_streams_rebase_snapshot(
            self.t, <const unsigned char *>job.s_map + INDEX_HEADER_BYTES,
            job.s_map_len - INDEX_HEADER_BYTES, job.s_snap, job.s_n, job.s_names_bytes,
            job.s_through)
        if rc == CHL_ENOMEM:
            raise MemoryError()
        if rc != CHL_OK:
            raise OSError(f"stream index checkpoint {job.s_path} does not match the index")
        if self.retired != NULL:
            munmap(self.retired, self.retired_len)
        self.retired = self.map
        self.retired_len = self.map_len
        self.map = job.s_map
        self.map_len = job.s_map_len
        job.s_map = NULL
        self.base_through = job.s_through
        self.anchor = job.s_anchor
        free(job.s_snap)
        job.s_snap = NULL
        return 0
