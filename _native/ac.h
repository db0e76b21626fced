/* Aho-Corasick over bytes as a dense DFA: one table lookup per input byte, no GIL, no allocation
 * while matching. Built once per scan from the content checks' literal markers (a few dozen
 * patterns, a few hundred states: the 256-wide table stays well inside L2).
 *
 * Hits are reported in (end offset, pattern id) order, the order the pure-Python twin
 * (matcher_py) sorts into, so that both cap the list at the same place.
 */
#ifndef SCANROOT_AC_H
#define SCANROOT_AC_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint32_t pattern;   /* index into the patterns given to ac_build */
    uint64_t start;     /* absolute offset of the pattern's first byte in the file */
} ac_hit;

typedef struct {
    uint32_t nstates;
    uint32_t npatterns;
    uint32_t *delta;       /* nstates * 256 transitions */
    uint32_t *out_start;   /* per state: first index into out_pattern */
    uint32_t *out_count;   /* per state: how many patterns end here (own and via failure links) */
    uint32_t *out_pattern; /* pattern ids, ascending within a state */
    uint32_t *lengths;     /* per pattern */
    uint32_t max_length;
    /* Prefilter: bit (a << 8 | b) is set when some pattern starts with the bytes a, b (or with a,
     * for a one-byte pattern). From the root state, positions whose pair is clear cannot start a
     * match, so they are skipped with one independent L1 lookup each instead of a dependent DFA
     * step: most bytes of most files never leave the root. */
    uint64_t pairs[1024];
} ac_automaton;

static inline void ac_free(ac_automaton *a) {
    free(a->delta);
    free(a->out_start);
    free(a->out_count);
    free(a->out_pattern);
    free(a->lengths);
    memset(a, 0, sizeof(*a));
}

static inline int ac_cmp_u32(const void *x, const void *y) {
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

/* 0 on success, -1 when out of memory or a pattern is empty. */
static inline int ac_build(ac_automaton *a, const uint8_t *const *patterns, const size_t *lengths,
                    uint32_t n) {
    size_t total = 1, i, j;
    uint32_t *trie = NULL, *fail = NULL, *queue = NULL, *own = NULL, *own_next = NULL;
    uint32_t *own_head = NULL, states = 1, head = 0, tail = 0;
    memset(a, 0, sizeof(*a));
    for (i = 0; i < n; i++) {
        if (lengths[i] == 0) return -1;
        total += lengths[i];
    }
    trie = malloc(total * 256 * sizeof(uint32_t));
    fail = calloc(total, sizeof(uint32_t));
    queue = malloc(total * sizeof(uint32_t));
    own_head = malloc(total * sizeof(uint32_t));
    own = malloc((n + 1) * sizeof(uint32_t));
    own_next = malloc((n + 1) * sizeof(uint32_t));
    a->lengths = malloc((n + 1) * sizeof(uint32_t));
    if (!trie || !fail || !queue || !own_head || !own || !own_next || !a->lengths) goto oom;
    memset(trie, 0xff, total * 256 * sizeof(uint32_t));   /* 0xffffffff: no edge yet */
    memset(own_head, 0xff, total * sizeof(uint32_t));
    for (i = 0; i < n; i++) {                             /* the trie */
        uint32_t s = 0;
        for (j = 0; j < lengths[i]; j++) {
            uint32_t *edge = &trie[(size_t)s * 256 + patterns[i][j]];
            if (*edge == 0xffffffffu) *edge = states++;
            s = *edge;
        }
        if (lengths[i] == 1) {
            for (j = 0; j < 256; j++) {
                size_t pair = (size_t)patterns[i][0] << 8 | j;
                a->pairs[pair >> 6] |= (uint64_t)1 << (pair & 63);
            }
        } else {
            size_t pair = (size_t)patterns[i][0] << 8 | patterns[i][1];
            a->pairs[pair >> 6] |= (uint64_t)1 << (pair & 63);
        }
        own[i] = (uint32_t)i;                             /* pattern i ends at state s */
        own_next[i] = own_head[s];
        own_head[s] = (uint32_t)i;
        a->lengths[i] = (uint32_t)lengths[i];
        if (lengths[i] > a->max_length) a->max_length = (uint32_t)lengths[i];
    }
    for (j = 0; j < 256; j++) {                           /* BFS: failure links and the DFA */
        uint32_t t = trie[j];
        if (t == 0xffffffffu) {
            trie[j] = 0;
        } else {
            fail[t] = 0;
            queue[tail++] = t;
        }
    }
    while (head < tail) {
        uint32_t s = queue[head++];
        for (j = 0; j < 256; j++) {
            uint32_t *edge = &trie[(size_t)s * 256 + j];
            if (*edge == 0xffffffffu) {
                *edge = trie[(size_t)fail[s] * 256 + j];
            } else {
                fail[*edge] = trie[(size_t)fail[s] * 256 + j];
                queue[tail++] = *edge;
            }
        }
    }
    /* Output sets: a state's own patterns plus its failure state's (already complete: BFS order). */
    a->out_start = malloc(states * sizeof(uint32_t));
    a->out_count = calloc(states, sizeof(uint32_t));
    if (!a->out_start || !a->out_count) goto oom;
    {
        size_t cap = 64, used = 0;
        uint32_t order_index;
        a->out_pattern = malloc(cap * sizeof(uint32_t));
        if (!a->out_pattern) goto oom;
        a->out_start[0] = 0;
        for (order_index = 0; order_index <= tail; order_index++) {
            uint32_t s = order_index == 0 ? 0 : queue[order_index - 1];
            uint32_t f = fail[s], p, k, need;
            size_t first = used;
            need = (s == 0 ? 0 : a->out_count[f]);
            for (p = own_head[s]; p != 0xffffffffu; p = own_next[p]) need++;
            if (used + need > cap) {
                uint32_t *grown;
                while (used + need > cap) cap *= 2;
                grown = realloc(a->out_pattern, cap * sizeof(uint32_t));
                if (!grown) goto oom;
                a->out_pattern = grown;
            }
            for (p = own_head[s]; p != 0xffffffffu; p = own_next[p]) a->out_pattern[used++] = p;
            if (s != 0)
                for (k = 0; k < a->out_count[f]; k++)
                    a->out_pattern[used++] = a->out_pattern[a->out_start[f] + k];
            a->out_start[s] = (uint32_t)first;
            a->out_count[s] = (uint32_t)(used - first);
            qsort(a->out_pattern + first, used - first, sizeof(uint32_t), ac_cmp_u32);
        }
    }
    a->delta = trie;
    a->nstates = states;
    a->npatterns = n;
    free(fail);
    free(queue);
    free(own_head);
    free(own);
    free(own_next);
    return 0;
oom:
    free(trie);
    free(fail);
    free(queue);
    free(own_head);
    free(own);
    free(own_next);
    ac_free(a);
    return -1;
}

/* Feed `n` bytes that start at absolute offset `base`; `*state` carries over between calls.
 * Stores at most `max_hits` hits (counting on from `*stored`) and counts all of them in `*total`. */
static inline void ac_feed(const ac_automaton *a, uint32_t *state, const uint8_t *buf, size_t n,
                           uint64_t base, ac_hit *hits, size_t max_hits, size_t *stored,
                           uint64_t *total) {
    uint32_t s = *state;
    const uint32_t *delta = a->delta;
    const uint32_t *count = a->out_count;
    const uint64_t *pairs = a->pairs;
    size_t i;
    for (i = 0; i < n; i++) {
        if (s == 0) {
            /* Skip what cannot start a match; the last byte of a buffer goes to the DFA, whose
             * state carries it into the next buffer. */
            while (i + 1 < n) {
                size_t pair = (size_t)buf[i] << 8 | buf[i + 1];
                if (pairs[pair >> 6] >> (pair & 63) & 1) break;
                i++;
            }
        }
        s = delta[(size_t)s * 256 + buf[i]];
        if (count[s]) {
            uint32_t k, first = a->out_start[s];
            for (k = 0; k < count[s]; k++) {
                uint32_t p = a->out_pattern[first + k];
                if (*stored < max_hits) {
                    hits[*stored].pattern = p;
                    hits[*stored].start = base + i + 1 - a->lengths[p];
                    (*stored)++;
                }
                (*total)++;
            }
        }
    }
    *state = s;
}

#endif
