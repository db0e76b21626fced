/* xxHash (BSD-2-Clause, Debian's libxxhash-dev) compiled into the hasher: XXH_INLINE_ALL makes
 * every function static inline, so there is no link-time dependency on libxxhash. */
#ifndef SCANROOT_XXH_INLINE_H
#define SCANROOT_XXH_INLINE_H
#define XXH_INLINE_ALL
#include <xxhash.h>
#endif
