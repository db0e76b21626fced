# cython: language_level=3
"""libcrypto (OpenSSL 3) EVP digest declarations used by the hasher."""


cdef extern from "<openssl/evp.h>" nogil:
    ctypedef struct EVP_MD
    ctypedef struct EVP_MD_CTX
    ctypedef struct ENGINE
    ctypedef struct OSSL_LIB_CTX

    # Fetched once: OpenSSL 3 re-fetches a legacy EVP_md5() on every DigestInit (a lock + a
    # lookup per file), a fetched EVP_MD does not.
    EVP_MD* EVP_MD_fetch(OSSL_LIB_CTX* ctx, const char* algorithm, const char* properties)
    void EVP_MD_free(EVP_MD* md)

    EVP_MD_CTX* EVP_MD_CTX_new()
    void EVP_MD_CTX_free(EVP_MD_CTX* ctx)
    int EVP_DigestInit_ex(EVP_MD_CTX* ctx, const EVP_MD* type, ENGINE* impl)
    int EVP_DigestUpdate(EVP_MD_CTX* ctx, const void* data, size_t count)
    int EVP_DigestFinal_ex(EVP_MD_CTX* ctx, unsigned char* md, unsigned int* size)
