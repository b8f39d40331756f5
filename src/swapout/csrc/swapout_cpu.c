/* Fused swapout for the CPU: Y = Theta1*X + Theta2*F, masks from Philox4x32-10.
 *
 * Masks are never stored. Element e of a call keyed by `seed` takes one 32-bit Philox word; its low
 * 16 bits decide Theta1 (kept when below t1 = round(theta1 * 65536)) and its high 16 bits Theta2.
 * The backward pass recomputes the same words from the same seed.
 *
 * Philox4x32-10 is from Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3"
 * (SC 2011). Words are assigned to elements tile by tile so that the generator vectorises: tile t
 * holds 4*LANES elements, lane k of the tile runs counter t*LANES + k, and word w of that counter
 * goes to element t*4*LANES + w*LANES + k, so a tile's words, read in order, follow its elements.
 */
#include <stdint.h>
#include <string.h>

#define LANES 16
#define TILE (4 * LANES)

static inline void philox_tile(uint64_t tile, uint64_t seed, uint32_t out[4][LANES]) {
    uint32_t c0[LANES], c1[LANES], c2[LANES], c3[LANES];
    for (int k = 0; k < LANES; k++) {
        uint64_t ctr = tile * LANES + (uint64_t)k;
        c0[k] = (uint32_t)ctr; c1[k] = (uint32_t)(ctr >> 32); c2[k] = 0; c3[k] = 0;
    }
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        for (int k = 0; k < LANES; k++) {
            uint64_t p0 = (uint64_t)0xD2511F53u * c0[k];
            uint64_t p1 = (uint64_t)0xCD9E8D57u * c2[k];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[k] ^ k0;
            uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3[k] ^ k1;
            c1[k] = (uint32_t)p1; c3[k] = (uint32_t)p0; c0[k] = n0; c2[k] = n2;
        }
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    memcpy(out[0], c0, sizeof c0); memcpy(out[1], c1, sizeof c1);
    memcpy(out[2], c2, sizeof c2); memcpy(out[3], c3, sizeof c3);
}

/* Forward: y = m1*x + m2*f. Backward: gx = m1*g, gf = m2*g. A tile's word j belongs to element
 * tile*TILE + j; the last tile stops at n. */
#define DEFINE_KERNELS(T, SUFFIX)                                                                   \
void swapout_fwd_##SUFFIX(const T *restrict x, const T *restrict f, T *restrict y, int64_t n,       \
                          uint64_t seed, uint32_t t1, uint32_t t2, int threads) {                   \
    int64_t tiles = (n + TILE - 1) / TILE;                                                          \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                               \
    for (int64_t t = 0; t < tiles; t++) {                                                           \
        uint32_t r[4][LANES];                                                                       \
        philox_tile((uint64_t)t, seed, r);                                                          \
        const uint32_t *w = &r[0][0];                                                               \
        int64_t base = t * TILE, len = n - base < TILE ? n - base : TILE;                           \
        const T *xs = x + base, *fs = f + base;                                                     \
        T *ys = y + base;                                                                           \
        for (int64_t j = 0; j < len; j++)                                                           \
            ys[j] = ((w[j] & 0xFFFFu) < t1 ? xs[j] : (T)0) + ((w[j] >> 16) < t2 ? fs[j] : (T)0);    \
    }                                                                                               \
}                                                                                                   \
void swapout_bwd_##SUFFIX(const T *restrict g, T *restrict gx, T *restrict gf, int64_t n,           \
                          uint64_t seed, uint32_t t1, uint32_t t2, int threads) {                   \
    int64_t tiles = (n + TILE - 1) / TILE;                                                          \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                               \
    for (int64_t t = 0; t < tiles; t++) {                                                           \
        uint32_t r[4][LANES];                                                                       \
        philox_tile((uint64_t)t, seed, r);                                                          \
        const uint32_t *w = &r[0][0];                                                               \
        int64_t base = t * TILE, len = n - base < TILE ? n - base : TILE;                           \
        const T *gs = g + base;                                                                     \
        T *xs = gx + base, *fs = gf + base;                                                         \
        for (int64_t j = 0; j < len; j++) {                                                         \
            xs[j] = (w[j] & 0xFFFFu) < t1 ? gs[j] : (T)0;                                           \
            fs[j] = (w[j] >> 16) < t2 ? gs[j] : (T)0;                                               \
        }                                                                                           \
    }                                                                                               \
}

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)

/* The masks themselves, one byte each (bit 0: Theta1, bit 1: Theta2), for tests and inspection. */
void swapout_masks(uint8_t *out, int64_t n, uint64_t seed, uint32_t t1, uint32_t t2, int threads) {
    int64_t tiles = (n + TILE - 1) / TILE;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t t = 0; t < tiles; t++) {
        uint32_t r[4][LANES];
        philox_tile((uint64_t)t, seed, r);
        const uint32_t *w = &r[0][0];
        int64_t base = t * TILE, len = n - base < TILE ? n - base : TILE;
        for (int64_t j = 0; j < len; j++)
            out[base + j] = (uint8_t)(((w[j] & 0xFFFFu) < t1) | (((w[j] >> 16) < t2) << 1));
    }
}
