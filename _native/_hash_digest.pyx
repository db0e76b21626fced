# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The hasher's one-pass read: every wanted digest (OpenSSL, XXH3) and the content DFA per read."""

from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport calloc, qsort

from _native._hash_open cimport open_rep
from _native._hashjob cimport (
    CONTENT, FIRST_HITS, MAX_WINDOWS, MD5, READ_BUFFER, SHA1, SHA256, XXH3, Content, Job, Parent,
    Request, Scratch, Span, charge, fail, read_next,
)
from _native.ac cimport ac_feed, ac_hit
from _native.openssl cimport (
    EVP_DigestFinal_ex, EVP_DigestInit_ex, EVP_DigestUpdate, EVP_MD, EVP_MD_CTX, EVP_MD_fetch,
)
from _native.posix cimport EINTR, ENOMEM, close, errno, malloc, memcpy, realloc, ssize_t
from _native.xxh cimport (
    XXH128_canonical_t, XXH128_canonicalFromHash, XXH3_128bits_digest, XXH3_128bits_reset,
    XXH3_128bits_update,
)

cdef const EVP_MD* _md5 = EVP_MD_fetch(NULL, b"MD5", NULL)
cdef const EVP_MD* _sha1 = EVP_MD_fetch(NULL, b"SHA1", NULL)
cdef const EVP_MD* _sha256 = EVP_MD_fetch(NULL, b"SHA256", NULL)
if _md5 == NULL or _sha1 == NULL or _sha256 == NULL:
    raise ImportError("libcrypto has no MD5/SHA1/SHA256 (FIPS-only provider?)")
cdef int _match(Job* job, Scratch* scratch, uint32_t* state, const unsigned char* data,
                size_t count, uint64_t base, size_t* stored, uint64_t* total) noexcept nogil:
    """Feed one read to the DFA; 0 or ENOMEM. Hits go to scratch.hits, grown up to max_hits: a
    feed that filled it while hits were dropped is replayed from the saved state, larger."""
    cdef uint32_t saved_state = state[0]
    cdef size_t saved_stored = stored[0]
    cdef uint64_t saved_total = total[0]
    cdef size_t room, size
    cdef void* grown
    while True:
        room = scratch.hits_size if scratch.hits_size < job.max_hits else job.max_hits
        ac_feed(job.automaton, state, data, count, base, scratch.hits, room, stored, total)
        if room == job.max_hits or total[0] - saved_total == stored[0] - saved_stored:
            return 0
        size = scratch.hits_size * 2 if scratch.hits_size else FIRST_HITS
        size = size if size < job.max_hits else job.max_hits
        grown = realloc(scratch.hits, size * sizeof(ac_hit))
        if grown == NULL:
            return ENOMEM
        scratch.hits = <ac_hit*>grown
        grown = realloc(scratch.spans, size * sizeof(Span))
        if grown == NULL:
            return ENOMEM
        scratch.spans = <Span*>grown
        scratch.hits_size = size
        state[0], stored[0], total[0] = saved_state, saved_stored, saved_total


cdef int _by_span(const void* a, const void* b) noexcept nogil:
    cdef const Span* x = <const Span*>a
    cdef const Span* y = <const Span*>b
    if x.low != y.low:
        return -1 if x.low < y.low else 1
    return -1 if x.high < y.high else (1 if x.high > y.high else 0)


cdef int _cut_windows(Job* job, Scratch* scratch, Content* content, uint64_t size) noexcept nogil:
    """Windows around the captured hits of a file held whole in scratch.whole; 0 or ENOMEM.
    Same rule as hashreq_py.content_windows: spans sorted by offset, overlapping or adjacent ones
    merged, the first MAX_WINDOWS kept."""
    cdef size_t count = 0, i, total = 0
    cdef int n = 0
    cdef uint64_t start
    cdef Span* spans = scratch.spans
    for i in range(content.stored):
        if job.capture[content.hits[i].pattern]:
            start = content.hits[i].start
            spans[count].low = start - job.window_before if start > job.window_before else 0
            spans[count].high = start + job.window_after if size - start > job.window_after else size
            count += 1
    if count == 0:
        return 0
    qsort(spans, count, sizeof(Span), _by_span)
    for i in range(count):
        if n and spans[i].low <= content.window_start[n - 1] + content.window_length[n - 1]:
            if spans[i].high > content.window_start[n - 1] + content.window_length[n - 1]:
                content.window_length[n - 1] = spans[i].high - content.window_start[n - 1]
        elif n == MAX_WINDOWS:
            break  # sorted: every later span starts past the last window too
        else:
            content.window_start[n] = spans[i].low
            content.window_length[n] = spans[i].high - spans[i].low
            n += 1
    for i in range(<size_t>n):
        total += content.window_length[i]
    content.window_data = <unsigned char*>malloc(total + 1)
    if content.window_data == NULL:
        return ENOMEM
    total = 0
    for i in range(<size_t>n):
        memcpy(content.window_data + total, scratch.whole + content.window_start[i],
               content.window_length[i])
        total += content.window_length[i]
    content.windows = n
    return 0


cdef int _digest_fd(Job* job, int fd, Request* request, Scratch* scratch,
                    EVP_MD_CTX** contexts) noexcept nogil:
    """Read fd to EOF once, feeding every wanted digest (and the matcher, for CONTENT); 0 or an
    errno (EIO for an EVP failure, ENOMEM when a content buffer could not grow)."""
    cdef int want = request.want
    cdef ssize_t count
    cdef unsigned int size
    cdef bint ok = True
    cdef Content* content = request.content
    cdef bint scan = content != NULL and <uint64_t>request.size <= job.content_limit
    cdef bint whole = scan and job.capture != NULL and <uint64_t>request.size <= job.window_file_limit
    cdef uint64_t offset = 0
    cdef uint32_t state = 0
    cdef size_t stored = 0, room, grow
    cdef uint64_t total = 0
    cdef unsigned char* data
    cdef void* grown
    cdef int err
    if want & MD5:
        ok = ok and EVP_DigestInit_ex(contexts[0], _md5, NULL) == 1
    if want & SHA1:
        ok = ok and EVP_DigestInit_ex(contexts[1], _sha1, NULL) == 1
    if want & SHA256:
        ok = ok and EVP_DigestInit_ex(contexts[2], _sha256, NULL) == 1
    if want & XXH3:
        ok = ok and XXH3_128bits_reset(scratch.xxh3) == 0
    if not ok:
        return 5  # EIO
    if not scan and not want & (MD5 | SHA1 | SHA256 | XXH3):
        # Wanted only to be searched, and over content_limit: nothing to read it for (its
        # lstat size is enough to report it skipped).
        return 0
    while True:
        data = scratch.buffer
        room = READ_BUFFER
        if whole and offset < job.window_file_limit:
            # Kept whole: read into the whole-file buffer, grown (up to the limit) as needed.
            room = READ_BUFFER if job.window_file_limit - offset > READ_BUFFER else <size_t>(job.window_file_limit - offset)
            if offset + room > scratch.whole_size:
                grow = scratch.whole_size * 2
                if grow < offset + room:
                    grow = offset + room
                if grow < <size_t>request.size + READ_BUFFER:
                    grow = <size_t>request.size + READ_BUFFER  # the lstat size and a read to spare
                if grow > job.window_file_limit:
                    grow = job.window_file_limit
                grown = realloc(scratch.whole, grow)
                if grown == NULL:
                    return ENOMEM
                scratch.whole = <unsigned char*>grown
                scratch.whole_size = grow
            data = scratch.whole + offset
        count = read_next(fd, request, data, room, offset)
        if count < 0:
            if errno == EINTR:
                continue
            return errno
        if count == 0:
            break
        charge(job, scratch, <size_t>count)
        if whole and data == scratch.buffer:
            whole = False  # grew past window_file_limit since lstat: hits, but no windows
        if request.head_len == 0:
            request.head_len = 4 if count > 4 else <size_t>count
            memcpy(request.head, data, request.head_len)
        if want & MD5:
            ok = ok and EVP_DigestUpdate(contexts[0], data, count) == 1
        if want & SHA1:
            ok = ok and EVP_DigestUpdate(contexts[1], data, count) == 1
        if want & SHA256:
            ok = ok and EVP_DigestUpdate(contexts[2], data, count) == 1
        if want & XXH3:
            ok = ok and XXH3_128bits_update(scratch.xxh3, data, count) == 0
        if not ok:
            return 5
        if scan:
            err = _match(job, scratch, &state, data, count, offset, &stored, &total)
            if err:
                return err
        offset += count
    if want & MD5:
        ok = ok and EVP_DigestFinal_ex(contexts[0], request.md5, &size) == 1
    if want & SHA1:
        ok = ok and EVP_DigestFinal_ex(contexts[1], request.sha1, &size) == 1
    if want & SHA256:
        ok = ok and EVP_DigestFinal_ex(contexts[2], request.sha256, &size) == 1
    if want & XXH3:
        XXH128_canonicalFromHash(<XXH128_canonical_t*>request.xxh3, XXH3_128bits_digest(scratch.xxh3))
    if not ok:
        return 5
    if scan:
        content.hits = <ac_hit*>malloc(stored * sizeof(ac_hit) + 1)
        if content.hits == NULL:
            return ENOMEM
        if stored:
            memcpy(content.hits, scratch.hits, stored * sizeof(ac_hit))
        content.stored = stored
        content.total = total
        if whole:
            err = _cut_windows(job, scratch, content, offset)
            if err:
                return err
        content.scanned = True
    return 0


cdef void hash_one(Job* job, Parent* parent, Request* request, Scratch* scratch,
                   EVP_MD_CTX** contexts) noexcept nogil:
    cdef int fd
    cdef int err
    if request.want & CONTENT and job.automaton != NULL:
        request.content = <Content*>calloc(1, sizeof(Content))
        if request.content == NULL:
            fail(request, ENOMEM)
            return
    fd = open_rep(job, parent, request)
    if fd < 0:
        return
    err = _digest_fd(job, fd, request, scratch, contexts)
    close(fd)
    if err:
        fail(request, err)


