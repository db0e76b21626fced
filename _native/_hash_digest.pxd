# cython: language_level=3
"""The hasher's one-pass read: every wanted digest (OpenSSL, XXH3) and the content DFA per read."""

from _native._hashjob cimport Job, Parent, Request, Scratch
from _native.openssl cimport EVP_MD_CTX


cdef void hash_one(Job* job, Parent* parent, Request* request, Scratch* scratch,
                   EVP_MD_CTX** contexts) noexcept nogil
