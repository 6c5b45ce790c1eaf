# The UTF-8 checks of csrc/chl_utf8.h (header-only): append_batch's size pass refuses names
# that are not UTF-8, verify() reports records that hold such names.
cdef extern from "chl_utf8.h" nogil:
    bint chl_all_ascii(const char *p, size_t n)
    bint chl_utf8_valid(const char *p, size_t n)


cdef inline bint utf8_name(const unsigned char *p, size_t n) noexcept nogil:
    """Whether the n bytes at p are well-formed UTF-8 (the ASCII test first: the common case)."""
    return chl_all_ascii(<const char *>p, n) or chl_utf8_valid(<const char *>p, n)
